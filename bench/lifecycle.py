#!/usr/bin/python3
"""A model swap under load (issue 17): how long load_model takes until every
replica serves the new version, and request latency before, during and after
the swap with 1, 4 and 8 clients, each keeping two one-row requests in flight.

The baseline is the same run's steady latency: requests sent in the second
before the swap. The goal is that no request takes more than 2x the steady
p99 because of the swap. The new version is a TorchScript model with 64 MiB
of weights (tests/support/make_models.py, heavy3.pt), so that loading it
takes long enough for many requests to be sent during it; swap = "beside"
(the default) against swap = "pause" (the old version is unloaded first).
Medians of --repeat runs.

  bench/lifecycle.py --build build --models build/tests/models [--taskset]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import mpi_env
import report


def run_once(bench, models, clients, swap, seconds, taskset, work):
    cmd = ["mpiexec", "--oversubscribe", "-n", str(clients + 3),
           os.path.join(bench, "lifecycle_bench"), f"{models}/times2.pt", f"{models}/heavy3.pt",
           swap, str(seconds)]
    if taskset:
        cmd = ["taskset", "-c", "0"] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=work).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    operator = next(x for x in lines if x["role"] == "operator")
    rows = [x for x in lines if x["role"] == "client"]
    merged = {"load_model_ms": operator["load_model_ms"],
              "went_back": sum(x["old_version_after_ack"] for x in rows)}
    for phase in ("before", "during", "after"):
        merged[phase] = {k: statistics.median(x[phase][k] for x in rows)
                         for k in ("p50_ms", "p99_ms", "max_ms")}
        merged[phase]["n"] = sum(x[phase]["n"] for x in rows)
    return merged


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--models", default="build/tests/models")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.5)
    ap.add_argument("--taskset", action="store_true", help="all ranks on core 0")
    args = ap.parse_args()
    mpi_env.setup()
    bench = os.path.abspath(os.path.join(args.build, "bench"))
    models = os.path.abspath(args.models)
    where = "taskset -c 0" if args.taskset else "2 cores"
    print(f"model swap under load ({where}; medians of {args.repeat} runs; times in ms)")
    print(f"{'swap':7} {'clients':>7} {'load_model':>10} | {'p50 before':>10} {'during':>7} "
          f"{'after':>7} | {'p99 before':>10} {'during':>7} {'after':>7} | {'max during':>10} "
          f"{'p99 ratio':>9} | {'n during':>8} old-after-ack")
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work:
        for swap in ("beside", "pause"):
            for clients in (1, 4, 8):
                runs = [run_once(bench, models, clients, swap, args.seconds, args.taskset, work)
                        for _ in range(args.repeat)]
                med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
                load = med(lambda r: r["load_model_ms"])
                p = {ph: {k: med(lambda r, ph=ph, k=k: r[ph][k]) for k in ("p50_ms", "p99_ms",
                                                                           "max_ms")}
                     for ph in ("before", "during", "after")}
                ratio = p["during"]["p99_ms"] / p["before"]["p99_ms"]
                n_during = med(lambda r: r["during"]["n"])
                went_back = sum(r["went_back"] for r in runs)
                print(f"{swap:7} {clients:7d} {load:10.1f} | {p['before']['p50_ms']:10.3f} "
                      f"{p['during']['p50_ms']:7.3f} {p['after']['p50_ms']:7.3f} | "
                      f"{p['before']['p99_ms']:10.3f} {p['during']['p99_ms']:7.3f} "
                      f"{p['after']['p99_ms']:7.3f} | {p['during']['max_ms']:10.3f} "
                      f"{ratio:9.2f} | {n_during:8.0f} {went_back}")
                report.ratio("lifecycle", f"p99 during a swap ({swap}, {clients} clients, {where})",
                             p["during"]["p99_ms"], p["before"]["p99_ms"], "steady p99", "ms",
                             higher_is_better=False, goal="during <= 2x steady")


if __name__ == "__main__":
    main()
