#!/usr/bin/python3
"""Tensor transports against peers' data planes, in one run (issue 4).

Starts a private redis-server on a free loopback port (no persistence),
runs transport_bench under mpiexec -n 3 --repeat times, stops Redis, and
prints medians (µs per round trip) with ratios:
  - Tandem inline / shm / hdf5 through the echo service,
  - raw MPI ping-pong between the same ranks (the limit),
  - memcpy of the bytes twice (the least a shared-memory round trip does),
  - Redis SET+GET through hiredis (SmartSim's data plane),
  - HTTP POST echo through cpp-httplib with TCP_NODELAY (Triton/vLLM REST).

  bench/transport.py --build build
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


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    mpi_env.setup()
    bench = os.path.abspath(os.path.join(args.build, "bench", "transport_bench"))
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work:
        with redis_server(work) as port:
            runs = {}
            for _ in range(args.repeat):
                out = subprocess.run(["mpiexec", "--oversubscribe", "-n", "3", bench, str(port)],
                                     check=True, capture_output=True, text=True, cwd=work).stdout
                for line in out.splitlines():
                    if line.startswith("{"):
                        r = json.loads(line)
                        runs.setdefault((r["kind"], r["bytes"]), []).append(r["median_us"])

    def m(kind, size):
        return statistics.median(runs[(kind, size)])

    sizes = sorted({size for _, size in runs})
    # Sustained memcpy bandwidth: from the largest size, far beyond any cache.
    big = sizes[-1]
    bandwidth = 2 * big / m("memcpy_x2", big)  # bytes per µs
    print("| size | raw MPI | Tandem inline | Tandem shm | Tandem hdf5 | memcpy x2 | Redis SET+GET "
          "| HTTP POST | inline vs Redis / HTTP | shm vs Redis | shm / memcpy x2 "
          "| shm / (2 x size at memcpy bandwidth) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        label = f"{size // 1024} KiB" if size < (1 << 20) else f"{size >> 20} MiB"
        inl, shm = m("tandem_inline", size), m("tandem_shm", size)
        red = m("redis_set_get", size)
        http = m("http_post_echo", size) if ("http_post_echo", size) in runs else float("nan")
        report.ratio("transport", f"shm round trip {label}", shm, red, "Redis SET+GET", "µs",
                     False)
        print(f"| {label} | {m('raw_mpi', size):,.1f} | {inl:,.1f} | {shm:,.1f} | "
              f"{m('tandem_hdf5', size):,.0f} | {m('memcpy_x2', size):,.1f} | {red:,.1f} | "
              f"{http:,.1f} | {red / inl:.1f}x / {http / inl:.1f}x | {red / shm:.1f}x | "
              f"{shm / max(m('memcpy_x2', size), 1e-9):.2f}x | {shm / (2 * size / bandwidth):.2f}x |")
    print(f"\nsustained memcpy bandwidth ({big >> 20} MiB copies): {bandwidth / 1e3:.1f} GB/s")


if __name__ == "__main__":
    main()
