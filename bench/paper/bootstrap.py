#!/usr/bin/python3
"""The seed paper's bootstrap experiment on Tandem (issue 22, part 1).

The time from `mpirun` to every service READY, and to the first task
dispatched, for 1, 2, 4, 8 and 16 services, each run a `tandem run` of N
services (one rank each) and one null task. Its phases come from the
trace, as `tandem report` gives them (`startup` in --json):

  launcher + MPI_Init   the slowest rank's process age when Tandem started
  roles ready           every rank knows its role (the communicators split)
  model load            the slowest replica's model load
  all READY             the last service READY
  first task            the first task dispatched

all but the first from rank 0 entering Tandem. Tandem's own overhead is
the time from there to all READY less the model load: what a service costs
before it answers, however slow its model; the launcher and MPI_Init are
mpirun's, reported beside it.

The `process` backend's model server is tests/support/kserve_test_server.py,
a small Python KServe v2 server: its start-up is that service's "model
load".

  bench/paper/bootstrap.py --build build --out paper-out [--services 1,2,4,8,16]
      [--backends echo,torchscript,process] [--model build/tests/models/mlp.pt]
      [--repeat 3]

Writes OUT/bootstrap.json and OUT/bootstrap.svg (stacked bars per count).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import mpi_env  # noqa: E402

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]
KSERVE_SERVER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "support",
                             "kserve_test_server.py")
PHASES = ("mpi_start_s", "roles_ready_s", "model_load_s", "all_ready_s", "run_start_s")


def workflow(backend, services, model):
    text = '[job]\nname = "paper-bootstrap"\n'
    for s in range(services):
        text += f'[[service]]\nname = "svc{s}"\nbackend = "{backend}"\n'
        if backend == "process":
            # A local KServe v2 server the job starts: READY once it answers.
            text += (f'command = ["{sys.executable}", "{KSERVE_SERVER}", "--port", "{{port}}"]\n'
                     'model_name = "double"\n')
        if backend == "torchscript":
            text += (f'model = "{model}"\ndevice = "cpu"\n'
                     'inputs = [{ name = "x", dtype = "FP32", shape = [-1, 64] }]\n'
                     'outputs = [{ name = "y", dtype = "FP32", shape = [-1, 16] }]\n')
    text += '[[task]]\nname = "null"\nfunction = "tandem.null"\n'
    return text


def run_once(tandem, backend, services, model, work):
    flow = os.path.join(work, f"{backend}-{services}.toml")
    with open(flow, "w") as f:
        f.write(workflow(backend, services, model))
    run_dir = os.path.join(work, f"{backend}-{services}")
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run(MPIEXEC + ["-n", str(services + 2), tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn"], check=True, capture_output=True,
                   timeout=600)
    wall = time.monotonic() - t0
    startup = json.loads(subprocess.run([tandem, "report", run_dir, "--json"], check=True,
                                        capture_output=True, text=True).stdout)["startup"]
    row = {k: startup[k] for k in PHASES}
    row["mpirun_wall_s"] = wall
    # From mpirun: the launcher and MPI_Init, then Tandem's own phases.
    row["to_all_ready_s"] = row["mpi_start_s"] + row["all_ready_s"]
    row["to_first_task_s"] = row["mpi_start_s"] + row["run_start_s"]
    # Tandem's own: from rank 0 entering Tandem to all READY, less the
    # model load (the launcher and MPI_Init are mpirun's).
    row["overhead_s"] = row["all_ready_s"] - row["model_load_s"]
    return row


def plot(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({r["backend"] for r in rows})
    fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 4), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["services"])
        labels = [str(r["services"]) for r in mine]
        parts = [("launcher + MPI_Init", [r["mpi_start_s"] for r in mine]),
                 ("roles ready", [r["roles_ready_s"] for r in mine]),
                 ("model load", [r["model_load_s"] for r in mine]),
                 ("to all READY", [max(0.0, r["all_ready_s"] - r["roles_ready_s"] -
                                       r["model_load_s"]) for r in mine])]
        bottom = [0.0] * len(mine)
        for name, values in parts:
            ax.bar(labels, values, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xlabel("services")
        ax.set_ylabel("seconds from mpirun (median)")
        ax.set_title(f"Bootstrap, {backend}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bootstrap.svg"))
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="paper-out")
    ap.add_argument("--services", default="1,2,4,8,16")
    ap.add_argument("--backends", default="echo,torchscript,process")
    ap.add_argument("--model", default=None, help="TorchScript file (default: the tests' mlp.pt)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(os.path.join(args.build, "launcher", "tandem"))
    model = os.path.abspath(args.model or os.path.join(args.build, "tests", "models", "mlp.pt"))
    out = os.path.abspath(args.out)
    work = os.path.join(out, "bootstrap-runs")
    os.makedirs(work, exist_ok=True)
    rows = []
    for backend in args.backends.split(","):
        for services in (int(v) for v in args.services.split(",")):
            runs = [run_once(tandem, backend, services, model, work) for _ in range(args.repeat)]
            row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            row.update(backend=backend, services=services, runs=len(runs))
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(out, "bootstrap.json"), "w") as f:
        json.dump(rows, f, indent=1)
    plot(rows, out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
