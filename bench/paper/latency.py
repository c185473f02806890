#!/usr/bin/python3
"""The seed paper's latency breakdown on Tandem (issue 22, part 2).

arXiv 2503.13343 splits a request's time into comm_1 (transit and queueing
to the service), recv, parse, reply (the service's work) and comm_2 (the
way back), over a grid of services x clients. Here each cell is one `tandem
run`: S services ("svc0".."svcS-1", one rank each) and C client tasks, each
sending --requests one-row requests in turn to service (index mod S).
`tandem report --json` gives, from the trace, per request:

  comm_1 = transit_out + queue_wait: client send -> the request's batch
           starts on the replica (Tandem's recv and parse happen inside it:
           the replica takes the message in and decodes it before queueing)
  reply  = compute: batch start -> reply sent
  comm_2 = transit_back: reply sent -> client has it

and the three add up to the total, request by request. Each cell's figure
is the mean over every traced request of every service.

Kinds of service:
  echo  a local no-op (the paper's local no-op service)
  llm   a local LLM-like service: `sleep` with the paper's 4.44 s mean and
        0.55 s spread, both divided by --llm-scale (default 100: 44.4 ms
        and 5.5 ms) so that the grid fits the time budget, answering one
        request at a time (max_batch = 1) as the paper's service does.
  remote  a remote no-op: a bridge rank per service in front of a KServe
        endpoint of its own on 127.0.0.1 (tests/support/kserve_test_server.py)
        that waits 50 ms a request, a stand-in for the paper's 25 ms of
        network each way. Tandem's comm_1 and comm_2 are then the client's
        MPI legs to and from the bridge; the endpoint's round trip is the
        bridge's work, in reply. Its queue wait is
        set beside an M/D/c-style prediction: C closed-loop clients over S
        servers, computed by a small simulation of the same load.

  bench/paper/latency.py --build build --out paper-out [--services 1,2,4,8,16]
      [--clients 1,2,4,8,16] [--requests 20] [--kinds echo,llm]

Writes OUT/latency.json (every cell) and OUT/latency-<kind>.svg (stacked
bars of the breakdown per cell) and OUT/queue-wait.svg (llm: the queue wait
against services, measured and predicted).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import mpi_env  # noqa: E402

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]
LLM_MEAN_S, LLM_SD_S = 4.44, 0.55  # the paper's LLM-like service, per request
REMOTE_DELAY_S = 0.050  # the paper's remote service: about 25 ms each way


def workflow(kind, services, clients, requests, lib, scale, ports=()):
    lines = [f'[job]\nname = "paper-{kind}"\nlibraries = ["{lib}"]\n']
    for s in range(services):
        lines.append(f'[[service]]\nname = "svc{s}"\n')
        if kind == "remote":
            # A bridge rank in front of an endpoint of its own on 127.0.0.1
            # that waits REMOTE_DELAY_S both ways together.
            lines.append('backend = "remote"\nprotocol = "kserve-v2"\nmodel_name = "double"\n'
                         f'url = "http://127.0.0.1:{ports[s]}"\n')
        elif kind == "echo":
            lines.append('backend = "echo"\n')
        else:
            # One request at a time, as the paper's service answers: a
            # batch would answer a queue of them in one service time.
            lines.append('backend = "sleep"\nmax_batch = 1\n'
                         f"delay_us = {round(LLM_MEAN_S * 1e6 / scale)}\n"
                         f"delay_sd_us = {round(LLM_SD_S * 1e6 / scale)}\n")
    lines.append(f'[[task]]\nname = "client"\nfunction = "paper_client"\ncount = {clients}\n'
                 f"args = {{ services = {services}, requests = {requests} }}\n")
    return "".join(lines)


def start_endpoints(count, work):
    """`count` KServe test servers, each adding REMOTE_DELAY_S to every
    request; their processes and ports."""
    server = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "support",
                          "kserve_test_server.py")
    procs, ports = [], []
    for i in range(count):
        port_file = os.path.join(work, f"endpoint-{i}.port")
        if os.path.exists(port_file):
            os.remove(port_file)
        procs.append(subprocess.Popen([sys.executable, server, "--port", "0", "--port-file",
                                       port_file, "--delay", str(REMOTE_DELAY_S)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(200):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        with open(port_file) as f:
            ports.append(int(f.read()))
    return procs, ports


def run_cell(tandem, lib, kind, services, clients, requests, scale, work):
    name = f"{kind}-s{services}-c{clients}"
    flow = os.path.join(work, name + ".toml")
    procs, ports = start_endpoints(services, work) if kind == "remote" else ([], [])
    with open(flow, "w") as f:
        f.write(workflow(kind, services, clients, requests, lib, scale, ports))
    run_dir = os.path.join(work, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    ranks = 1 + services + clients
    try:
        subprocess.run(MPIEXEC + ["-n", str(ranks), tandem, "run", flow, "--run-dir", run_dir,
                                  "--log-level", "warn"], check=True, capture_output=True,
                       timeout=600)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    report = json.loads(subprocess.run([tandem, "report", run_dir, "--json"], check=True,
                                       capture_output=True, text=True).stdout)
    parts = {k: 0.0 for k in ("comm_1", "compute", "comm_2", "total", "queue_wait",
                              "transit_out")}
    count = 0
    for svc in report["services"]:
        lat = svc["latency"]
        n = lat["total"]["count"]
        count += n
        for k in parts:
            parts[k] += lat[k]["mean_ms"] * n
    cell = {k: v / count for k, v in parts.items()} if count else dict(parts)
    cell.update(kind=kind, services=services, clients=clients, requests=count)
    return cell


def predicted_queue_wait_ms(services, clients, mean_ms, sd_ms, requests, seed=1):
    """Closed loop, as the clients run: each client sends its next request
    as soon as the last is answered, to service (index mod services), which
    serves its queue one request at a time (FIFO). The mean wait before
    service starts, by simulation of the same load."""
    rng = random.Random(seed)
    free_at = [0.0] * services
    now = [0.0] * clients
    waits = []
    for _ in range(requests):
        # Whoever sends next is the client whose previous answer came first.
        for c in sorted(range(clients), key=lambda c: now[c]):
            s = c % services
            start = max(now[c], free_at[s])
            waits.append(start - now[c])
            took = max(0.0, rng.gauss(mean_ms, sd_ms))
            free_at[s] = start + took
            now[c] = start + took
    return statistics.fmean(waits)


def plot(cells, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind in sorted({c["kind"] for c in cells}):
        mine = [c for c in cells if c["kind"] == kind]
        labels = [f"{c['services']}s/{c['clients']}c" for c in mine]
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(mine)), 4))
        bottom = [0.0] * len(mine)
        for key, colour in (("comm_1", "#4c72b0"), ("compute", "#dd8452"),
                            ("comm_2", "#55a868")):
            values = [c[key] for c in mine]
            ax.bar(labels, values, bottom=bottom, label=key if key != "compute" else "reply",
                   color=colour)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel("ms per request (mean)")
        ax.set_title(f"Latency breakdown, {kind} service (services/clients)")
        ax.tick_params(axis="x", labelrotation=90)
        if kind == "echo":
            ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"latency-{kind}.svg"))
        plt.close(fig)
    llm = [c for c in cells if c["kind"] == "llm" and "predicted_wait_ms" in c]
    if llm:
        fig, ax = plt.subplots(figsize=(6, 4))
        for clients in sorted({c["clients"] for c in llm}):
            row = sorted((c for c in llm if c["clients"] == clients), key=lambda c: c["services"])
            xs = [c["services"] for c in row]
            ax.plot(xs, [c["queue_wait"] for c in row], "o-", label=f"{clients} clients")
            ax.plot(xs, [c["predicted_wait_ms"] for c in row], "k:", alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("services")
        ax.set_ylabel("queue wait, ms (dotted: simulated)")
        ax.set_title("LLM-like service: queue wait against services")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "queue-wait.svg"))
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="paper-out")
    ap.add_argument("--services", default="1,2,4,8,16")
    ap.add_argument("--clients", default="1,2,4,8,16")
    ap.add_argument("--requests", type=int, default=20, help="per client")
    ap.add_argument("--kinds", default="echo,llm,remote")
    ap.add_argument("--llm-scale", type=float, default=100.0)
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(os.path.join(args.build, "launcher", "tandem"))
    lib = os.path.abspath(os.path.join(args.build, "bench", "libbench_paper.so"))
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = os.path.join(out, "runs")
    os.makedirs(work, exist_ok=True)
    cells = []
    for kind in args.kinds.split(","):
        for services in (int(v) for v in args.services.split(",")):
            for clients in (int(v) for v in args.clients.split(",")):
                cell = run_cell(tandem, lib, kind, services, clients, args.requests,
                                args.llm_scale, work)
                if kind == "llm":
                    cell["predicted_wait_ms"] = predicted_queue_wait_ms(
                        services, clients, LLM_MEAN_S * 1e3 / args.llm_scale,
                        LLM_SD_S * 1e3 / args.llm_scale, args.requests)
                cells.append(cell)
                print(json.dumps(cell), flush=True)
    with open(os.path.join(out, "latency.json"), "w") as f:
        json.dump({"llm_scale": args.llm_scale, "cells": cells}, f, indent=1)
    plot(cells, out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
