#!/usr/bin/python3
"""Two builds of Tandem side by side, in one run: did a change move a figure?

It measures both builds on the same machine at the same time, alternating
run by run so that drift in the machine's speed falls on both alike:

  - null function tasks per second through `tandem run` at 1, 2 and 4
    workers under the conditions of bench/pilot_throughput.py (free cores,
    `taskset -c 0`, 4 ranks per core): the coordinator's and workers' hot
    path;
  - the echo service's round trip at 8 B and 1 KiB (serving_bench latency,
    each run a median over thousands of round trips) in the shared idle
    mode with Open MPI yielding, every build's default on this machine: the
    request path;
  - the C API's echo round trip at 1 KiB and 1 MiB (bench/proxy_bench.c
    as a task; its Redis half is left out): the path a task takes by
    default (the direct path where the build has one, else the proxy) and
    through the worker's proxy.

Each figure is the median of --repeat runs; the ratio is after / before
(above 1 is better for rates, below 1 for times).

  bench/compare_builds.py --before /tmp/old-build --after build --repeat 3
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import mpi_env
import pilot_throughput


def lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def echo_latency(build):
    """The echo service's median round trip (µs) by size, from serving_bench."""
    env = dict(os.environ, TANDEM_BENCH_IDLE="shared", OMPI_MCA_mpi_yield_when_idle="1")
    out = subprocess.run(["mpiexec", "--oversubscribe", "-n", "3",
                          os.path.join(build, "bench", "serving_bench"), "latency", "8,1024"],
                         check=True, capture_output=True, text=True, env=env).stdout
    return {r["bytes"]: r["median_us"] for r in lines(out) if r["kind"] == "tandem_echo"}


def proxy_latency(build, work):
    """The C API's median round trips (µs) by path and size: "default" (the
    direct path where the build has one) and "proxy"."""
    flow = os.path.join(work, "proxy.toml")
    with open(flow, "w") as f:
        # Without a Redis port proxy_bench measures the proxy alone.
        f.write(f'[job]\nname = "compare-proxy"\n'
                '[[service]]\nname = "echo"\nbackend = "echo"\n'
                f'[[task]]\nname = "bench"\ncommand = ["{build}/bench/proxy_bench"]\n')
    run_dir = os.path.join(work, "proxy-run")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    subprocess.run(["mpiexec", "--oversubscribe", "-n", "3", os.path.join(build, "launcher",
                                                                          "tandem"),
                    "run", flow, "--run-dir", run_dir, "--log-level", "warn", "--no-trace"],
                   check=True, capture_output=True)
    with open(os.path.join(run_dir, "tasks", "bench", "0.out")) as f:
        got = {(r["kind"], r["bytes"]): r["median_us"] for r in lines(f.read())}
    out = {}
    for (kind, size), us in got.items():
        if kind == "proxy":
            out[("proxy", size)] = us
            out.setdefault(("default", size), us)
        elif kind == "direct":
            out[("default", size)] = us
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="build directory of the baseline")
    ap.add_argument("--after", required=True, help="build directory of the change")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--null-tasks", type=int, default=200000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--conditions", nargs="+", default=["free", "one-core", "oversubscribed"])
    args = ap.parse_args()
    mpi_env.setup()
    builds = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    figures = {}  # (name, build) -> values

    def add(name, build, value):
        figures.setdefault((name, build), []).append(value)

    conditions = pilot_throughput.conditions(args.conditions, args.workers, [4])
    start = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tandem-compare-", dir=start) as work:
        os.chdir(work)  # the runs' files go here
        for _ in range(args.repeat):
            for label, prefix, worker_counts, _ in conditions:
                with pilot_throughput.prefixed(prefix):
                    for w in worker_counts:
                        for b, build in builds.items():
                            tandem = os.path.join(build, "launcher", "tandem")
                            add(f"null tasks/s, {w} worker(s), {label}", b,
                                pilot_throughput.tandem_rate(tandem, work, w, "null",
                                                             args.null_tasks))
            for b, build in builds.items():
                for size, us in echo_latency(build).items():
                    add(f"echo round trip {size} B, shared (µs)", b, us)
                for (path, size), us in sorted(proxy_latency(build, work).items()):
                    what = "by default" if path == "default" else "through the proxy"
                    add(f"C API {what} {size:,} B (µs)", b, us)
        os.chdir(start)
    print(f"Medians of {args.repeat} alternating runs:\n")
    print("| figure | before | after | after / before |")
    print("|---|---:|---:|---:|")
    names = list(dict.fromkeys(name for name, _ in figures))
    for name in names:
        b = statistics.median(figures[(name, "before")])
        a = statistics.median(figures[(name, "after")])
        fmt = "{:,.0f}" if "tasks/s" in name else "{:.2f}"
        print(f"| {name} | {fmt.format(b)} | {fmt.format(a)} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
