#!/usr/bin/python3
"""Two builds of Tandem side by side, in one run: did a change move a figure?

For a change that must leave performance alone (a refactor), it measures
both builds on the same machine at the same time, alternating run by run so
that drift in the machine's speed falls on both alike:

  - null function tasks per second through `tandem run` (2 workers), the
    coordinator's and workers' hot path;
  - the echo service's round trip at 8 B and 1 KiB (serving_bench latency,
    each run a median over thousands of round trips), the request path.

Each figure is the median of --repeat runs; the ratio is after / before.
Add `--taskset 0` to run everything on one core (the slow kind of machine).

  bench/compare_builds.py --before /tmp/old-build --after build --repeat 5
"""
import argparse
import json
import os
import statistics
import tempfile

import mpi_env
import pilot_throughput


def echo_latency(build):
    """The echo service's median round trip (µs) by size, from serving_bench."""
    out = pilot_throughput.mpiexec(3, [os.path.join(build, "bench", "serving_bench"), "latency",
                                       "8,1024"])
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["bytes"]: r["median_us"] for r in rows if r["kind"] == "tandem_echo"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="build directory of the baseline")
    ap.add_argument("--after", required=True, help="build directory of the change")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--null-tasks", type=int, default=200000)
    ap.add_argument("--taskset", help="CPU list for taskset -c (e.g. 0)")
    args = ap.parse_args()
    mpi_env.setup()
    # Every MPI job of both builds goes through pilot_throughput.mpiexec.
    pilot_throughput.MPIEXEC_PREFIX = ["taskset", "-c", args.taskset] if args.taskset else []
    builds = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    rates = {k: [] for k in builds}
    lat = {k: {8: [], 1024: []} for k in builds}
    start = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tandem-compare-", dir=start) as work:
        os.chdir(work)  # the runs' files go here
        for _ in range(args.repeat):
            for name, build in builds.items():
                tandem = os.path.join(build, "launcher", "tandem")
                rates[name].append(pilot_throughput.tandem_rate(tandem, work, 2, "null",
                                                                args.null_tasks))
                for size, us in echo_latency(build).items():
                    lat[name][size].append(us)
        os.chdir(start)
    where = f", under taskset -c {args.taskset}" if args.taskset else ""
    print(f"Medians of {args.repeat} alternating runs{where}:\n")
    print("| figure | before | after | after / before |")
    print("|---|---:|---:|---:|")
    b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(f"| null tasks/s, 2 workers | {b:,.0f} | {a:,.0f} | {a / b:.3f} |")
    for size in (8, 1024):
        b, a = statistics.median(lat["before"][size]), statistics.median(lat["after"][size])
        print(f"| echo round trip {size} B (µs) | {b:.2f} | {a:.2f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
