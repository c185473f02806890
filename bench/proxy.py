#!/usr/bin/python3
"""Executable tasks to a service: the direct path and the worker's proxy
(issues 8 and 16), in one run.

Round trip of the echo service for 1 KiB and 1 MiB:
  - from an executable task on the direct path to the replica on its node,
    and through its worker's proxy (TANDEM_DIRECT=0), with the C API
    (bench/proxy_bench.c, a task of `tandem run`);
  - from the C++ client in-process (serving_bench latency: an MPI rank of
    the job, the limit the proxy adds to);
  - Redis SET+GET of the same bytes on loopback through hiredis, from the
    same task process (SmartSim's path);
  - a bare Unix-socket round trip of 1 KiB between the task and a child it
    forks: one process wake-up each way, the floor for the direct path.
Medians over thousands of trips per run, median of --repeat runs.

  bench/proxy.py --build build
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import mpi_env
import report
from redis_server import redis_server


def lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--np", type=int, default=3,
                    help="ranks of the job (past 3, idle workers: oversubscription)")
    args = ap.parse_args()
    mpi_env.setup()
    build = os.path.abspath(args.build)
    tandem = os.path.join(build, "launcher", "tandem")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work, \
            redis_server(work) as port:
        with open(os.path.join(work, "proxy.toml"), "w") as f:
            f.write(f'[job]\nname = "proxy-bench"\nrun_root = "{work}/runs"\n'
                    '[[service]]\nname = "echo"\nbackend = "echo"\n'
                    f'[[task]]\nname = "bench"\ncommand = ["{build}/bench/proxy_bench", "{port}"]\n')
        for k in range(args.repeat):
            run_dir = os.path.join(work, f"run{k}")
            subprocess.run(["mpiexec", "--oversubscribe", "-n", str(args.np), tandem, "run",
                            "proxy.toml",
                            "--run-dir", run_dir, "--log-level", "warn", "--no-trace"],
                           check=True, cwd=work)
            with open(os.path.join(run_dir, "tasks", "bench", "0.out")) as f:
                for r in lines(f.read()):
                    runs.setdefault((r["kind"], r["bytes"]), []).append(r["median_us"])
            out = subprocess.run(["mpiexec", "--oversubscribe", "-n", str(args.np),
                                  os.path.join(build, "bench", "serving_bench"), "latency",
                                  "1024,1048576"], check=True, capture_output=True, text=True,
                                 cwd=work, env=dict(os.environ, TANDEM_BENCH_TRACE="0")).stdout
            for r in lines(out):
                if r["kind"] == "tandem_echo":
                    runs.setdefault(("inprocess", r["bytes"]), []).append(r["median_us"])

    def m(kind, size):
        return statistics.median(runs[(kind, size)])

    sock = m("socket", 1024)
    print(f"Echo round trip, median of {args.repeat} runs (µs); a bare Unix-socket round trip "
          f"of 1 KiB between two processes: {sock:.1f} µs\n")
    print("| bytes | C++ client in-process | C API, direct path | C API through the proxy | "
          "Redis SET+GET | Redis / direct | proxy / direct | direct / socket round trip |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in (1024, 1 << 20):
        inp, dire, prox, red = (m("inprocess", size), m("direct", size), m("proxy", size),
                                m("redis", size))
        report.ratio("proxy", f"C API on the direct path, {size:,} B", dire, red,
                     "Redis SET+GET", "µs", False, "≥ 1.8x" if size == 1024 else "≥ 10x")
        report.ratio("proxy", f"C API through the proxy, {size:,} B", prox, red,
                     "Redis SET+GET", "µs", False)
        per_socket = f"{dire / sock:.2f}" if size == 1024 else ""
        if size == 1024:
            # The goal is "within 1.3x of the socket": recorded as the
            # socket's time over ours, so 1 / 1.3 = 0.77 or more meets it.
            report.ratio("proxy", "C API on the direct path vs a bare socket, 1,024 B", dire,
                         sock, "Unix-socket round trip", "µs", False, "≥ 0.77x (within 1.3x)")
        print(f"| {size:,} | {inp:.1f} | {dire:.1f} | {prox:.1f} | {red:.1f} | "
              f"{red / dire:.1f}x | {prox / dire:.1f}x | {per_socket} |")


if __name__ == "__main__":
    main()
