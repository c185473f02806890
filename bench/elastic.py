#!/usr/bin/python3
"""Elastic services (issue 21): one job, two phases, every split of its ranks.

The job has --np ranks: the coordinator, and np - 1 ranks shared between
the workers and the replicas of service "surrogate". The workload:

  simulate  --sim-tasks tasks of --sim-s seconds each, no requests
            (a simulation-heavy phase);
  infer     after it, --infer-tasks tasks that each send --requests
            one-row requests with --window in flight (an inference-heavy
            phase); a replica answers one request per --delay-ms (a
            `sleep` model, so that the split, not the 2 cores, decides).

Both kinds of work wait without using a core, so that the split of the
ranks is what the makespan measures, not this machine's two cores.

Static splits: `replicas = k` for every k from 1 to np - 2 (one worker at
least). Elastic: `replicas = { min = 1, max = np - 2 }`. All in one run;
medians over --repeat runs of each. Per phase: the time from the first task
of the phase to its last, from the journal. Moves: decision to READY, less
the wait for the worker to finish its task, against the model's load time
(--load-ms) plus 50 ms. The split over time goes to --plot (SVG).

  /usr/bin/python3 bench/elastic.py --build build [--np 8] [--repeat 3] [--plot docs/elastic-split.svg]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

import mpi_env
import report

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]


def workflow(lib, replicas, a):
    service_keys = f"replicas = {replicas}"
    rule = ""
    if replicas == "elastic+rule":
        # The manual lever: the user knows the phases and asks for a split
        # when the simulations end.
        rule = (f'[[scale]]\nafter = "simulate"\nservice = "surrogate"\n'
                f"replicas = {a.rule_replicas}\n")
    if isinstance(replicas, str):  # "elastic" or "elastic+rule"
        service_keys = (f"replicas = {{ min = 1, max = {a.np - 2} }}\n"
                        f"target_queue_ms = {a.target_ms}\nscale_dwell_s = {a.dwell_s}")
    return f'''[job]
name = "elastic-bench"
libraries = ["{lib}"]
[[service]]
name = "surrogate"
backend = "sleep"
delay_us = {int(a.delay_ms * 1000)}
load_us = {int(a.load_ms * 1000)}
max_batch = 1
{service_keys}
[[task]]
name = "simulate"
function = "tandem.sleep"
count = {a.sim_tasks}
args = {{ seconds = {a.sim_s} }}
[[task]]
name = "infer"
function = "elastic_client"
count = {a.infer_tasks}
after = ["simulate"]
args = {{ service = "surrogate", requests = {a.requests}, window = {a.window} }}
{rule}'''


def phases(run_dir):
    """(makespan, simulate phase, infer phase) in seconds, from the journal."""
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "journal.jsonl"))]
    rows = [r for r in rows if r.get("state") == "DONE"]
    sim = [r for r in rows if r["task"] == "simulate"]
    inf = [r for r in rows if r["task"] == "infer"]
    start = min(r["started_us"] for r in sim)
    sim_end = max(r["ended_us"] for r in sim)
    end = max(r["ended_us"] for r in inf)
    return (end - start) / 1e6, (sim_end - start) / 1e6, (end - sim_end) / 1e6


def run_once(tandem, lib, replicas, a, work, tag):
    flow = os.path.join(work, f"{tag}.toml")
    with open(flow, "w") as f:
        f.write(workflow(lib, replicas, a))
    run_dir = os.path.join(work, f"{tag}-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run(["timeout", "600"] + MPIEXEC + ["-n", str(a.np), tandem, "run", flow,
                                                   "--run-dir", run_dir, "--log-level", "warn"],
                   check=True, capture_output=True)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    requests = summary["services"]["surrogate"]["requests"]
    if requests != a.infer_tasks * a.requests:
        raise SystemExit(f"{tag}: {requests} requests answered, not {a.infer_tasks * a.requests}")
    return phases(run_dir), summary


def plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e = summary["elastic"]["surrogate"]
    points = sorted(e["replicas_over_time"])
    t = [p[0] for p in points]
    t = t + [max(summary["makespan_s"], t[-1])]
    n = [p[1] for p in points]
    n = n + [n[-1]]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.step(t, n, where="post", label="replicas serving")
    total = summary["world_size"] - 1
    ax.step(t, [total - k for k in n], where="post", label="workers (ranks not serving)")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("ranks")
    ax.set_title("Elastic split: simulate, then infer")
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--np", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--sim-tasks", type=int, default=150)
    p.add_argument("--sim-s", type=float, default=0.1)
    p.add_argument("--infer-tasks", type=int, default=30)
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--delay-ms", type=float, default=8.0)
    p.add_argument("--load-ms", type=float, default=50.0)
    p.add_argument("--target-ms", type=float, default=20.0)
    p.add_argument("--dwell-s", type=float, default=0.2)
    p.add_argument("--rule-replicas", type=int, default=5,
                   help="the split that [[scale]] asks for when simulate ends (elastic+rule)")
    p.add_argument("--plot", default="")
    p.add_argument("--json", default="")
    a = p.parse_args()
    mpi_env.setup()
    build = os.path.abspath(a.build)
    tandem = os.path.join(build, "launcher", "tandem")
    lib = os.path.join(build, "bench", "libbench_elastic.so")
    work = tempfile.mkdtemp(prefix="tandem-elastic-bench-")
    splits = list(range(1, a.np - 1)) + ["elastic", "elastic+rule"]
    results = {k: [] for k in splits}
    last = {}
    for rep in range(a.repeat):
        for k in splits:
            (total, sim, inf), summary = run_once(tandem, lib, k, a, work, f"r{rep}-{k}")
            results[k].append((total, sim, inf))
            last[k] = summary
    med = {k: tuple(statistics.median(r[i] for r in results[k]) for i in range(3)) for k in splits}
    print(f"{'split':>10} {'makespan s':>11} {'simulate s':>11} {'infer s':>9}")
    for k in splits:
        label = f"{k} repl." if isinstance(k, int) else k
        print(f"{label:>10} {med[k][0]:11.2f} {med[k][1]:11.2f} {med[k][2]:9.2f}")
    static = [k for k in splits if isinstance(k, int)]
    best = min(static, key=lambda k: med[k][0])
    best_sim = min(static, key=lambda k: med[k][1])
    best_inf = min(static, key=lambda k: med[k][2])
    e = med["elastic"]
    moves = last["elastic"]["elastic"]["surrogate"]["moves"]
    grows = [m for m in moves if m["direction"] == "grow"]
    over = [m["seconds"] - m["wait_s"] - m["load_s"] for m in grows]
    print(f"best static split: {best} replicas, {med[best][0]:.2f} s; elastic {e[0]:.2f} s: "
          f"{med[best][0] / e[0]:.2f}x (goal 1.3x)")
    print(f"simulate phase: elastic {e[1]:.2f} s against the best static ({best_sim} repl.) "
          f"{med[best_sim][1]:.2f} s: {e[1] / med[best_sim][1]:.2f} (goal <= 1.15)")
    print(f"infer phase: elastic {e[2]:.2f} s against the best static ({best_inf} repl.) "
          f"{med[best_inf][2]:.2f} s: {e[2] / med[best_inf][2]:.2f} (goal <= 1.15)")
    print(f"moves in the last elastic run: {len(grows)} grows, "
          f"{len(moves) - len(grows)} shrinks; a grow's time past the model's load "
          f"({a.load_ms:.0f} ms) once its worker was free: median "
          f"{statistics.median(over) * 1e3:.1f} ms, max {max(over) * 1e3:.1f} ms (goal <= 50 ms)")
    r = med["elastic+rule"]
    print(f"with [[scale]] after simulate, replicas = {a.rule_replicas}: {r[0]:.2f} s, "
          f"{med[best][0] / r[0]:.2f}x the best static; simulate {r[1] / med[best_sim][1]:.2f}, "
          f"infer {r[2] / med[best_inf][2]:.2f} of the best static phase")
    report.ratio("elastic", "makespan, elastic vs best static split", e[0], med[best][0],
                 f"static {best} replicas", "s", higher_is_better=False, goal="1.3x")
    if a.plot:
        plot(last["elastic"], a.plot)
        print(f"plot: {a.plot}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median": {str(k): v for k, v in med.items()}, "moves": moves}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
