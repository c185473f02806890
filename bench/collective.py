#!/usr/bin/python3
"""Collective inference against its alternatives, in one run per cell
(issue 37): the spmd-coupling pattern, N application ranks each with k rows
of the MLP's 64 inputs, one inference per step (bench/collective_bench.cpp):

  a  every rank calls infer() for its own rows
  b  infer_all(): the node's ranks send one request together
  c  every rank runs its own libtorch copy of the model (TorchFort/FTorch)
  d  Redis, SmartSim-style: SET every rank's tensor, one rank runs the
     model over all of them, every rank GETs its result

for N in --ranks and k in --rows. N + 2 MPI ranks (the coordinator and the
replica besides), oversubscribed past 2. Prints a table of median step
times and the ratios the issue asks for: a/b (goal >= 3 at 16 x 8), b/c
(goal <= 1.5) with one model copy per node against N, d/b (goal >= 10).

  bench/collective.py --build build [--ranks 4,8,16] [--rows 1,8,64]
      [--steps 200] [--json out.json]

Needs redis-server (scripts/setup-deps installs it) and the TorchScript
backend; the model is the tests' mlp.pt.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_env  # noqa: E402
from redis_server import redis_server  # noqa: E402

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]

JOB = """[job]
name = "collective-bench"
[job.monitor]
trace = false
[[service]]
name = "mlp"
backend = "torchscript"
model = "{model}"
max_batch = 4096
inputs = [{{ name = "x", dtype = "FP32", shape = [-1, 64] }}]
outputs = [{{ name = "y", dtype = "FP32", shape = [-1, 16] }}]
"""


def make_light_model(path):
    """A single Linear(64, 16) as TorchScript: about 1,000 multiply-adds a
    row, against the MLP's 86,000."""
    import torch
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Linear(64, 16).eval()).save(path)


def run_cell(bench, job, model, ranks, rows, steps, port, work):
    out = subprocess.run(MPIEXEC + ["-n", str(ranks + 2), bench, job, model, str(rows),
                                    str(steps), str(port)],
                         capture_output=True, text=True, timeout=600, cwd=work)
    if out.returncode != 0:
        raise SystemExit(f"collective_bench failed ({ranks} ranks, {rows} rows):\n"
                         f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return {json.loads(line)["mode"]: json.loads(line)
            for line in out.stdout.splitlines() if line.startswith("{")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--ranks", default="4,8,16")
    ap.add_argument("--rows", default="1,8,64")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", default=None, help="write every cell here")
    ap.add_argument("--model", default=None,
                    help="TorchScript file, rows of 64 in, 16 out (default: the tests' mlp.pt)")
    ap.add_argument("--light", action="store_true",
                    help="a one-layer model (64 -> 16) instead: the requests' cost, not the model's")
    args = ap.parse_args()
    mpi_env.setup()
    build = os.path.abspath(args.build)
    bench = os.path.join(build, "bench", "collective_bench")
    model = os.path.abspath(args.model or os.path.join(build, "tests", "models", "mlp.pt"))
    cells = []
    with tempfile.TemporaryDirectory() as work, redis_server(work) as port:
        if args.light:
            model = os.path.join(work, "linear.pt")
            make_light_model(model)
        job = os.path.join(work, "job.toml")
        with open(job, "w") as f:
            f.write(JOB.format(model=model))
        for ranks in (int(v) for v in args.ranks.split(",")):
            for rows in (int(v) for v in args.rows.split(",")):
                m = run_cell(bench, job, model, ranks, rows, args.steps, port, work)
                cell = {"ranks": ranks, "rows": rows, **{f"{k}_us": v["median_us"]
                                                          for k, v in m.items()},
                        **{f"{k}_p90_us": v["p90_us"] for k, v in m.items()},
                        "model_copy_mib": m["c"]["model_copy_kib"] / 1024}
                cells.append(cell)
                print(json.dumps(cell), flush=True)
    print()
    print("| ranks | rows | a: infer each | b: infer_all | c: own libtorch | d: Redis "
          "| a/b | b/c | d/b |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print(f"| {c['ranks']} | {c['rows']} | {c['a_us']:.0f} | {c['b_us']:.0f} | "
              f"{c['c_us']:.0f} | {c['d_us']:.0f} | {c['a_us'] / c['b_us']:.2f} | "
              f"{c['b_us'] / c['c_us']:.2f} | {c['d_us'] / c['b_us']:.1f} |")
    copy = max(c["model_copy_mib"] for c in cells)
    print(f"\nmedian step time in us; one model copy costs a rank {copy:.1f} MiB resident: "
          f"b holds 1 per node (the replica's), c holds one per rank")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cells, f, indent=1)


if __name__ == "__main__":
    main()
