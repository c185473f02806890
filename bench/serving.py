#!/usr/bin/python3
"""Serving benchmarks in one run (issue 3).

(a) Round-trip latency of the echo service for 8 B, 1 KiB, 64 KiB and 1 MiB
    against a raw MPI ping-pong of the same bytes between the same two ranks,
    medians of --repeat runs of serving_bench latency (each itself a median
    over thousands of round trips), in both idle modes:
      shared     `[job] idle = "shared"`, Open MPI yielding on every empty
                 poll (OMPI_MCA_mpi_yield_when_idle=1), as with more ranks
                 than cores;
      dedicated  `[job] idle = "dedicated"`, Open MPI spinning
                 (OMPI_MCA_mpi_yield_when_idle=0), as with a core per rank:
                 the client and the replica have a core each, and the
                 session's coordinator, never on a request's path, sleeps.
(b) Rows per second of the MLP (64-256-256-16, TorchScript) served by one
    rank to 1, 4 and 8 clients, each keeping two requests of --rows rows in
    flight, against direct libtorch calls (torch_direct, one thread) at the
    mean batch size the batcher formed.

  bench/serving.py --build build --model build/tests/models/mlp.pt
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import mpi_env
import report


def run(cmd, cwd, env=None):
    full = dict(os.environ, **(env or {}))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd,
                         env=full).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def mpiexec(np, args, cwd, env=None):
    return run(["mpiexec", "--oversubscribe", "-n", str(np)] + args, cwd, env)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    mpi_env.setup()
    bench = os.path.abspath(os.path.join(args.build, "bench"))
    model = os.path.abspath(args.model)

    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work:
        modes = {"shared": {"TANDEM_BENCH_IDLE": "shared", "OMPI_MCA_mpi_yield_when_idle": "1"},
                 "dedicated": {"TANDEM_BENCH_IDLE": "dedicated",
                               "OMPI_MCA_mpi_yield_when_idle": "0"}}
        lat = {}
        for _ in range(args.repeat):
            for mode, env in modes.items():
                for r in mpiexec(3, [f"{bench}/serving_bench", "latency"], work, env):
                    lat.setdefault((mode, r["kind"], r["bytes"]), []).append(r["median_us"])
        print("Round trip, median (µs):\n")
        print("| idle mode | bytes | raw MPI ping-pong | Tandem echo service | Tandem - raw | "
              "ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode in modes:
            for size in (8, 1024, 65536, 1 << 20):
                raw = statistics.median(lat[(mode, "raw_mpi", size)])
                tan = statistics.median(lat[(mode, "tandem_echo", size)])
                if size == 1024:
                    report.ratio("serving", f"echo round trip 1 KiB, {mode} mode", tan, raw,
                                 "raw MPI ping-pong", "µs", False,
                                 "≤ +3 µs" if mode == "dedicated" else "")
                print(f"| {mode} | {size:,} | {raw:.2f} | {tan:.2f} | {tan - raw:+.2f} | "
                      f"{tan / raw:.2f}x |")
        print(f"\nMLP throughput, {args.rows} rows per request (rows/s):\n")
        print("| clients | Tandem | mean batch formed | direct libtorch at that batch | "
              "Tandem / direct |")
        print("|---:|---:|---:|---:|---:|")
        for clients in (1, 4, 8):
            out = mpiexec(clients + 2, [f"{bench}/serving_bench", "throughput", model,
                                        str(args.rows), str(args.seconds)], work)
            rate = next(r for r in out if r["kind"] == "tandem_mlp")["rows_per_s"]
            batch = next(r for r in out if r["kind"] == "tandem_mlp_batches")["mean_batch_rows"]
            b = max(1, round(batch))
            direct = run([f"{bench}/torch_direct", model, str(b), str(args.seconds)],
                         work)[0]["rows_per_s"]
            report.ratio("serving", f"MLP rows/s, {clients} client(s)", rate, direct,
                         "direct libtorch at that batch", "rows/s", True, "≥ 0.9x")
            print(f"| {clients} | {rate:,.0f} | {batch:.1f} | {direct:,.0f} | "
                  f"{rate / direct:.0%} |")


if __name__ == "__main__":
    main()
