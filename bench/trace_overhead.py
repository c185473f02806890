#!/usr/bin/python3
"""Tracing on versus off on the serving benchmark (issue 7), same run.

Alternates runs of bench/serving_bench with the trace on and off
(TANDEM_BENCH_TRACE=1/0, i.e. [job.monitor] trace), --repeat times each:

(a) echo round trip at 8 B and 1 KiB (each run's median over thousands of
    round trips), the path where a few nanoseconds per event show most;
(b) MLP rows per second with 4 clients (TorchScript), when --model is given.

Reports the median of the runs' figures and the overhead of tracing as the
median of the paired ratios (each traced run against the untraced run next
to it), which cancels the drift between runs on a shared machine.

  bench/trace_overhead.py --build build [--model build/tests/models/mlp.pt]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import mpi_env
import report


def mpiexec(np, args, cwd, traced):
    env = dict(os.environ, TANDEM_BENCH_TRACE="1" if traced else "0")
    out = subprocess.run(["mpiexec", "--oversubscribe", "-n", str(np)] + args, check=True,
                         capture_output=True, text=True, cwd=cwd, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--model")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--model-repeat", type=int, default=7, help="MLP runs per setting")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    mpi_env.setup()
    bench = os.path.abspath(os.path.join(args.build, "bench", "serving_bench"))

    latency = {True: {}, False: {}}
    rows = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work:
        for _ in range(args.repeat):
            for traced in (True, False):
                for r in mpiexec(3, [bench, "latency", "8,1024,65536"], work, traced):
                    if r["kind"] == "tandem_echo":
                        latency[traced].setdefault(r["bytes"], []).append(r["median_us"])
                if args.model and _ < args.model_repeat:
                    out = mpiexec(6, [bench, "throughput", os.path.abspath(args.model),
                                      str(args.rows), str(args.seconds)], work, traced)
                    rows[traced].append(
                        next(r for r in out if r["kind"] == "tandem_mlp")["rows_per_s"])

    def paired(on, off):
        return statistics.median(a / b for a, b in zip(on, off)) - 1

    print(f"Echo round trip, median of {args.repeat} runs (µs):\n")
    print("| bytes | trace off | trace on | overhead (median of paired ratios) |")
    print("|---:|---:|---:|---:|")
    for size in (8, 1024, 65536):
        off, on = latency[False][size], latency[True][size]
        if size == 1024:
            report.ratio("trace", "echo round trip 1 KiB, trace on", statistics.median(on),
                         statistics.median(off), "trace off", "µs", False)
        print(f"| {size:,} | {statistics.median(off):.2f} | {statistics.median(on):.2f} | "
              f"{paired(on, off):+.1%} |")
    if args.model:
        off, on = rows[False], rows[True]
        print(f"\nMLP, 4 clients, {args.rows} rows per request, median of {len(off)} runs "
              "(rows/s):\n")
        print("| trace off | trace on | overhead (median of paired ratios) |")
        print("|---:|---:|---:|")
        print(f"| {statistics.median(off):,.0f} | {statistics.median(on):,.0f} | "
              f"{-paired(on, off):+.1%} |")


if __name__ == "__main__":
    main()
