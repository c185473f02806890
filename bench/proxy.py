#!/usr/bin/python3
"""The worker's local proxy (issue 8), in one run.

Round trip of the echo service for 1 KiB and 1 MiB:
  - from an executable task through its worker's proxy with the C API
    (bench/proxy_bench.c, a task of `tandem run`);
  - from the C++ client in-process (serving_bench latency: an MPI rank of
    the job, the limit the proxy adds to);
  - Redis SET+GET of the same bytes on loopback through hiredis, from the
    same task process (SmartSim's path).
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
            subprocess.run(["mpiexec", "--oversubscribe", "-n", "3", tandem, "run", "proxy.toml",
                            "--run-dir", run_dir, "--log-level", "warn", "--no-trace"],
                           check=True, cwd=work)
            with open(os.path.join(run_dir, "tasks", "bench", "0.out")) as f:
                for r in lines(f.read()):
                    runs.setdefault((r["kind"], r["bytes"]), []).append(r["median_us"])
            out = subprocess.run(["mpiexec", "--oversubscribe", "-n", "3",
                                  os.path.join(build, "bench", "serving_bench"), "latency",
                                  "1024,1048576"], check=True, capture_output=True, text=True,
                                 cwd=work, env=dict(os.environ, TANDEM_BENCH_TRACE="0")).stdout
            for r in lines(out):
                if r["kind"] == "tandem_echo":
                    runs.setdefault(("inprocess", r["bytes"]), []).append(r["median_us"])

    def m(kind, size):
        return statistics.median(runs[(kind, size)])

    print(f"Echo round trip, median of {args.repeat} runs (µs):\n")
    print("| bytes | C++ client in-process | C API through the proxy | Redis SET+GET | "
          "proxy - in-process | Redis / proxy |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (1024, 1 << 20):
        inp, prox, red = m("inprocess", size), m("proxy", size), m("redis", size)
        report.ratio("proxy", f"C API through the proxy, {size:,} B", prox, red,
                     "Redis SET+GET", "µs", False, "≥ 3x")
        print(f"| {size:,} | {inp:.1f} | {prox:.1f} | {red:.1f} | {prox - inp:+.1f} | "
              f"{red / prox:.1f}x |")


if __name__ == "__main__":
    main()
