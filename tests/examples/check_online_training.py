"""Checks the online-training example's run: several model versions served
requests (at least three, the first and the last among them: on a loaded
machine the trainer can publish a version that the next one replaces before
any request comes, which is correct serving), and the surrogate error the
members measured with the last version is below their error with the first
by the given factor.
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
served = [v for v in versions if v["requests"] > 0]
assert len(served) >= 3 and versions[0] in served and versions[-1] in served, versions
assert len(first) >= 5 and len(last) >= 5, (len(first), len(last))
assert last.mean() * factor < first.mean(), (first.mean(), last.mean())
