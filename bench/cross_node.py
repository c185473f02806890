#!/usr/bin/env python3
"""Request round trips within a node and across two fake nodes of this
machine, against a raw MPI ping-pong across them and Redis SET+GET, in one
run (issue 15). Loopback TCP stands in for a real interconnect: the
cross-node figures say what Tandem adds on top of the wire, not what a
cluster's fabric gives.

  sudo python3 bench/cross_node.py [--build build] [--taskset]

Needs root (the fake nodes of tests/cluster/) and redis-server.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import report  # noqa: E402
from redis_server import redis_server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

JOB = """[job]
name = "cross-node"
[job.monitor]
trace = false
[[service]]
name = "far"      # rank 1, node 0
backend = "echo"
[[service]]
name = "near"     # rank 2, node 1, with the client (rank 3)
backend = "echo"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--taskset", action="store_true", help="all ranks on core 0")
    args = ap.parse_args()
    bench = os.path.join(os.path.abspath(args.build), "bench", "cross_node_bench")
    with tempfile.TemporaryDirectory() as work, redis_server(work) as port:
        job = os.path.join(work, "job.toml")
        with open(job, "w") as f:
            f.write(JOB)
        pin = "taskset -c 0 " if args.taskset else ""
        script = (f"source {ROOT}/tests/cluster/cluster.sh && cluster_check >&2 && "
                  f"cluster_command 2 2 {bench} {job} {port} && cd {work} && "
                  f"{pin}\"${{cluster_cmd[@]}}\"")
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    m = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            m[(d["kind"], d["bytes"])] = d["median_us"]
    print(f"{'size':>8} {'raw MPI x-node':>15} {'same node':>10} {'cross node':>11} "
          f"{'Redis':>8}  x-node/same  x-node/raw  Redis/x-node   (median us)")
    for size in (1024, 1 << 20):
        raw, same, cross, red = (m[(k, size)] for k in (
            "raw_mpi_cross_node", "tandem_same_node", "tandem_cross_node", "redis_set_get"))
        label = "1 KiB" if size == 1024 else "1 MiB"
        report.ratio("cross_node", f"echo across fake nodes {label}", cross, red,
                     "Redis SET+GET", "µs", False)
        print(f"{label:>8} {raw:15.1f} {same:10.1f} {cross:11.1f} {red:8.1f}  "
              f"{cross / same:11.2f} {cross / raw:11.2f} {red / cross:13.2f}")


if __name__ == "__main__":
    main()
