"""Checks the online-training example's run: several model versions each
served requests, and the surrogate error the members measured with the last
version is below their error with the first by the given factor.
  check_online_training.py RUN_DIR FACTOR"""
import json, sys
import numpy as np
run, factor = sys.argv[1], float(sys.argv[2])
summary = json.load(open(f"{run}/summary.json"))
versions = summary["services"]["closure"]["replicas"][0]["versions"]
switches = sorted(v["served_from_unix_s"] for v in versions[1:])
d = np.loadtxt(f"{run}/series/closure_error.csv", delimiter=",", ndmin=2)
first = d[d[:, 0] < switches[0], 1]
last = d[d[:, 0] > switches[-1], 1]
print(f"{len(versions)} versions; error with version 1: mean {first.mean():.4f} ({len(first)} points); "
      f"with the last: mean {last.mean():.4f} ({len(last)} points); {first.mean() / last.mean():.1f}x lower")
assert len(versions) >= 3 and all(v["requests"] > 0 for v in versions), versions
assert len(first) >= 5 and len(last) >= 5, (len(first), len(last))
assert last.mean() * factor < first.mean(), (first.mean(), last.mean())
