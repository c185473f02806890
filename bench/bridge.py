#!/usr/bin/python3
"""The bridge's overhead (issue 5), in one run: chat-completion requests, 64
in flight, to a loopback endpoint (http_endpoint, cpp-httplib) sent directly
through Tandem's libcurl client from one process, and through a remote
service's bridge rank from an application rank. Medians of --repeat runs.

  bench/bridge.py --build build
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import mpi_env
import report


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100000)
    args = ap.parse_args()
    mpi_env.setup()
    bench = os.path.abspath(os.path.join(args.build, "bench"))
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=os.getcwd()) as work:
        port_file = os.path.join(work, "port")
        endpoint = subprocess.Popen([f"{bench}/http_endpoint", port_file])
        try:
            for _ in range(200):
                if os.path.exists(port_file) and open(port_file).read():
                    break
                time.sleep(0.05)
            port = open(port_file).read().strip()
            for _ in range(args.repeat):
                out = subprocess.run(["mpiexec", "--oversubscribe", "-n", "3",
                                      f"{bench}/bridge_bench", port, str(args.requests)],
                                     check=True, capture_output=True, text=True, cwd=work).stdout
                for line in out.splitlines():
                    if line.startswith("{"):
                        r = json.loads(line)
                        runs.setdefault(r["kind"], []).append(r)
        finally:
            endpoint.terminate()
            endpoint.wait()
    d = runs["direct_libcurl"]
    b = runs["tandem_bridge"]
    d_rps = statistics.median(r["rps"] for r in d)
    b_rps = statistics.median(r["rps"] for r in b)
    d_lat = statistics.median(r["median_latency_us"] for r in d)
    b_lat = statistics.median(r["median_latency_us"] for r in b)
    print("| path | requests/s (median of runs) | all runs | median latency (µs) |")
    print("|---|---:|---|---:|")
    def all_runs(rows):
        return ", ".join("{:,.0f}".format(r["rps"]) for r in rows)

    print(f"| direct libcurl, one process | {d_rps:,.0f} | {all_runs(d)} | {d_lat:,.0f} |")
    print(f"| through the bridge rank | {b_rps:,.0f} | {all_runs(b)} | {b_lat:,.0f} |")
    report.ratio("bridge", "requests/s through the bridge rank", b_rps, d_rps,
                 "direct libcurl", "requests/s", True, "≥ 0.9x")
    print(f"\nbridge / direct: {b_rps / d_rps:.0%} of the requests per second "
          f"(goal: overhead at most 10%)")


if __name__ == "__main__":
    main()
