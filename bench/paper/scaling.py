#!/usr/bin/python3
"""The seed paper's scalability experiment on Tandem (issue 22, part 3).

How inference scales with concurrent clients and service replicas: for each
replica count R one `tandem run` of a TorchScript service with R replicas
(one rank each) and a load generator (bench/paper/loadgen_task.cpp, a task
of --client-ranks ranks) that runs, in the manner of MLPerf LoadGen:

  closed   C clients for C in --clients: C request streams spread over the
           client ranks, each sending its next one-row request as soon as
           its last is answered, for --phase seconds. Throughput and
           p50/p95/p99 latency per (R, C) cell.
  offline  every client rank keeps 256 requests in flight until
           --offline-requests are answered: the most the service does.
  server   Poisson arrivals at a rate, latency counted from when each
           request was due; the highest rate whose p99 stays under
           --p99-bound-ms, by binary search between 0 and the offline
           throughput (--server-steps halvings, --phase seconds each).

The baseline, measured in the same run: the same model called directly
from one Python process with torch (no Tandem, no MPI), one row at a time
and in batches of 64.

  bench/paper/scaling.py --build build --out paper-out [--replicas 1,2,4,8,16]
      [--clients 1,2,4,8,16,32,64] [--client-ranks 4] [--model FILE]

Writes OUT/scaling.json and OUT/scaling-throughput.svg (throughput against
clients, a line per replica count), OUT/scaling-p99.svg (p99 against
clients) and OUT/scaling-scenarios.svg (offline and server per R).
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


def workflow(model, replicas, client_ranks, lib, args):
    return (f'[job]\nname = "paper-scaling"\nlibraries = ["{lib}"]\n'
            f'[[service]]\nname = "model"\nbackend = "torchscript"\nmodel = "{model}"\n'
            f"replicas = {replicas}\n"
            'inputs = [{ name = "x", dtype = "FP32", shape = [-1, 64] }]\n'
            'outputs = [{ name = "y", dtype = "FP32", shape = [-1, 16] }]\n'
            f'[[task]]\nname = "loadgen"\nfunction = "paper_loadgen"\nranks = {client_ranks}\n'
            f'args = {{ service = "model", clients = "{args.clients}", phase_s = {args.phase}, '
            f"offline_requests = {args.offline_requests}, p99_bound_ms = {args.p99_bound_ms}, "
            f"server_steps = {args.server_steps} }}\n")


def run_replicas(tandem, lib, model, replicas, args, work):
    flow = os.path.join(work, f"r{replicas}.toml")
    with open(flow, "w") as f:
        f.write(workflow(model, replicas, args.client_ranks, lib, args))
    run_dir = os.path.join(work, f"r{replicas}")
    shutil.rmtree(run_dir, ignore_errors=True)
    ranks = 1 + replicas + args.client_ranks
    subprocess.run(MPIEXEC + ["-n", str(ranks), tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn"], check=True, capture_output=True,
                   timeout=600)
    with open(os.path.join(run_dir, "tasks", "loadgen", "loadgen.json")) as f:
        result = json.load(f)
    result["replicas"] = replicas
    return result


def direct_baseline(model, repeat=2000):
    """The model called directly from Python, one row and 64 rows at a time:
    the work a request carries, without Tandem or MPI."""
    import torch
    torch.set_num_threads(1)
    m = torch.jit.load(model).eval()
    out = {}
    for rows in (1, 64):
        x = torch.rand(rows, 64)
        times = []
        with torch.no_grad():
            for _ in range(50):
                m(x)
            for _ in range(repeat // (8 if rows > 1 else 1)):
                t = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t)
        median = statistics.median(times)
        out[f"rows{rows}"] = {"median_ms": median * 1e3, "rows_per_s": rows / median}
    return out


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, ylabel, name, title in (
            ("throughput", "requests per second", "scaling-throughput.svg",
             "Throughput against clients (closed loop), a line per replica count"),
            ("p99_ms", "p99 latency, ms", "scaling-p99.svg",
             "p99 latency against clients (closed loop)")):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for r in results:
            xs = [c["clients"] for c in r["closed"]]
            ax.plot(xs, [c[key] for c in r["closed"]], "o-", label=f"{r['replicas']} replicas")
        ax.set_xscale("log", base=2)
        if key == "p99_ms":
            ax.set_yscale("log")
        ax.set_xlabel("clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    labels = [str(r["replicas"]) for r in results]
    xs = range(len(results))
    ax.bar([x - 0.2 for x in xs], [r["offline"]["throughput"] for r in results], 0.4,
           label="offline: most requests/s")
    ax.bar([x + 0.2 for x in xs], [r["server"]["best_rate"] for r in results], 0.4,
           label=f"server: most requests/s with p99 ≤ {results[0]['server']['p99_bound_ms']} ms")
    ax.set_xticks(list(xs), labels)
    ax.set_xlabel("replicas")
    ax.set_ylabel("requests per second")
    ax.set_title("LoadGen-style scenarios per replica count", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling-scenarios.svg"))
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="paper-out")
    ap.add_argument("--replicas", default="1,2,4,8,16")
    ap.add_argument("--clients", default="1,2,4,8,16,32,64")
    ap.add_argument("--client-ranks", type=int, default=4)
    ap.add_argument("--phase", type=float, default=1.0, help="seconds per closed/server phase")
    ap.add_argument("--offline-requests", type=int, default=20000)
    ap.add_argument("--p99-bound-ms", type=float, default=10.0)
    ap.add_argument("--server-steps", type=int, default=6)
    ap.add_argument("--model", default=None, help="TorchScript file (default: the tests' mlp.pt)")
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(os.path.join(args.build, "launcher", "tandem"))
    lib = os.path.abspath(os.path.join(args.build, "bench", "libbench_paper.so"))
    model = os.path.abspath(args.model or os.path.join(args.build, "tests", "models", "mlp.pt"))
    out = os.path.abspath(args.out)
    work = os.path.join(out, "runs")
    os.makedirs(work, exist_ok=True)
    results = []
    for replicas in (int(v) for v in args.replicas.split(",")):
        r = run_replicas(tandem, lib, model, replicas, args, work)
        results.append(r)
        best = max(r["closed"], key=lambda c: c["throughput"])
        print(json.dumps({"replicas": replicas, "best_closed": best, "offline": r["offline"],
                          "server_best_rate": r["server"]["best_rate"]}), flush=True)
    baseline = direct_baseline(model)
    print(json.dumps({"direct": baseline}), flush=True)
    with open(os.path.join(out, "scaling.json"), "w") as f:
        json.dump({"client_ranks": args.client_ranks, "phase_s": args.phase,
                   "direct": baseline, "results": results}, f, indent=1)
    plot(results, out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
