#!/usr/bin/python3
"""Task throughput of Tandem's pilot against mpi4py.futures, in one run.

For 1, 2 and 4 workers (one more rank for the coordinator or the pool's
master) it measures null function tasks per second and /bin/true executable
tasks per second through `tandem run`, and the same work through
mpi4py.futures.MPIPoolExecutor with chunksize 1 and 64. Each figure is the
median of --repeat runs. Tandem's rate is done tasks over the makespan in
summary.json (start-up excluded, every task's state and times journaled);
mpi4py's is measured around map() after a warm-up. For /bin/true it also
runs Tandem with two command slots per worker, and prints the machine's
ceiling for spawning processes (bench/spawn_ceiling.cpp), which no task
runner can pass.

Wake-ups cost different amounts on different machines, so the null tasks
are measured under three conditions (--conditions), each against
mpi4py.futures under the same condition:

  free            the ranks share the machine's cores as the OS likes;
  one-core        every rank under `taskset -c 0` (a slow machine's wake-ups
                  on any machine);
  oversubscribed  4 ranks per core (--oversubscribe sets the factors), so
                  4 x cores - 1 workers.

/bin/true tasks are measured in the free condition only: their rate is set
by the spawn ceiling, not by dispatch.

  bench/pilot_throughput.py --tandem build/launcher/tandem \
      --spawn-ceiling build/bench/spawn_ceiling
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import mpi_env
import report

HERE = os.path.dirname(os.path.abspath(__file__))


# Put before mpiexec, e.g. ["taskset", "-c", "0"] (bench/compare_builds.py).
MPIEXEC_PREFIX = []


def mpiexec(np, args):
    cmd = MPIEXEC_PREFIX + ["mpiexec", "--oversubscribe", "-n", str(np)] + args
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def tandem_rate(tandem, workdir, workers, kind, n, slots=1):
    flow = os.path.join(workdir, f"{kind}.toml")
    task = ('function = "tandem.null"' if kind == "null" else 'command = ["/bin/true"]')
    with open(flow, "w") as f:
        f.write(f'[job]\nname = "bench"\n[layout]\nworker_slots = {slots}\n'
                f'[[task]]\nname = "t"\n{task}\ncount = {n}\n')
    run_dir = os.path.join(workdir, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    mpiexec(workers + 1, [tandem, "run", flow, "--run-dir", run_dir, "--log-level", "warn"])
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["tasks"]["done"] == n, summary["tasks"]
    return summary["tasks_per_s"]


def mpi4py_rate(workers, kind, n, chunksize):
    out = mpiexec(workers + 1, ["/usr/bin/python3", "-m", "mpi4py.futures",
                                os.path.join(HERE, "mpi4py_pool.py"), kind, str(n),
                                str(chunksize)])
    return float(out.strip().splitlines()[-1])


def median_of(repeat, fn):
    return statistics.median(fn() for _ in range(repeat))


@contextmanager
def prefixed(prefix):
    """Runs every mpiexec of the block under @p prefix (e.g. taskset)."""
    global MPIEXEC_PREFIX
    saved = MPIEXEC_PREFIX
    MPIEXEC_PREFIX = prefix
    try:
        yield
    finally:
        MPIEXEC_PREFIX = saved


def conditions(names, workers, factors):
    """(label, mpiexec prefix, worker counts, with /bin/true) per condition."""
    cores = len(os.sched_getaffinity(0))
    out = []
    for name in names:
        if name == "free":
            out.append((f"{cores} cores", [], workers, True))
        elif name == "one-core":
            out.append(("taskset -c 0", ["taskset", "-c", "0"], workers, False))
        elif name == "oversubscribed":
            for f in factors:
                out.append((f"{f * cores} ranks on {cores} cores", [], [f * cores - 1], False))
        else:
            raise SystemExit(f"unknown condition {name!r} (free, one-core, oversubscribed)")
    return out


def measure(args, workdir, label, w, kind, n, n_cs1):
    t = median_of(args.repeat, lambda: tandem_rate(args.tandem, workdir, w, kind, n))
    t2 = None
    if kind == "true":
        t2 = median_of(args.repeat, lambda: tandem_rate(args.tandem, workdir, w, kind, n, slots=2))
    c1 = median_of(args.repeat, lambda: mpi4py_rate(w, kind, n_cs1, 1))
    c64 = median_of(args.repeat, lambda: mpi4py_rate(w, kind, n, 64))
    row = {"condition": label, "workers": w, "kind": kind, "tandem": t, "tandem_2_slots": t2,
           "mpi4py_cs1": c1, "mpi4py_cs64": c64, "ratio": t / max(c1, c64)}
    report.ratio("pilot", f"{'null function' if kind == 'null' else '/bin/true'} tasks, "
                 f"{w} worker(s), {label}", t, max(c1, c64), "best mpi4py.futures", "tasks/s",
                 True, "≥ 2x" if kind == "null" else "")
    print(f"  {label}, {w} worker(s) {kind:5s}: tandem {t:12.0f}/s  mpi4py cs=1 {c1:10.0f}/s"
          f"  cs=64 {c64:10.0f}/s  ratio {row['ratio']:.2f}x", file=sys.stderr)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", required=True, help="the tandem executable")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--conditions", nargs="+", default=["free", "one-core", "oversubscribed"])
    ap.add_argument("--oversubscribe", type=int, nargs="+", default=[4],
                    help="ranks per core in the oversubscribed condition (default 4)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--null-tasks", type=int, default=200000)
    ap.add_argument("--exe-tasks", type=int, default=3000, help="0: no /bin/true tasks")
    ap.add_argument("--spawn-ceiling", help="the spawn_ceiling executable (optional)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--workdir", default=os.getcwd(),
                    help="where the run directories go (default: the current directory); "
                         "executable tasks create two files each, so this must be a fast "
                         "filesystem")
    args = ap.parse_args()
    mpi_env.setup()

    rows = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-", dir=args.workdir) as workdir:
        for label, prefix, worker_counts, with_true in conditions(args.conditions, args.workers,
                                                                  args.oversubscribe):
            kinds = [("null", args.null_tasks, min(args.null_tasks, 20000))]
            if with_true and args.exe_tasks > 0:
                kinds.append(("true", args.exe_tasks, args.exe_tasks))
            with prefixed(prefix):
                for w in worker_counts:
                    for kind, n, n_cs1 in kinds:
                        rows.append(measure(args, workdir, label, w, kind, n, n_cs1))
    ceiling = None
    if args.spawn_ceiling:
        out = subprocess.run([args.spawn_ceiling], check=True, capture_output=True, text=True)
        ceiling = float(out.stdout.strip().splitlines()[-1].split()[-1])

    print("| condition | workers | tasks | Tandem (tasks/s) | mpi4py.futures chunksize=1 | "
          "mpi4py.futures chunksize=64 | Tandem / best mpi4py | Tandem, 2 slots per worker |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        kind = "null function" if r["kind"] == "null" else "`/bin/true`"
        two = f"{r['tandem_2_slots']:,.0f}" if r["tandem_2_slots"] else "-"
        print(f"| {r['condition']} | {r['workers']} | {kind} | {r['tandem']:,.0f} | "
              f"{r['mpi4py_cs1']:,.0f} | {r['mpi4py_cs64']:,.0f} | {r['ratio']:.1f}x | {two} |")
    if ceiling:
        print(f"\nspawn ceiling of this machine (posix_spawn + waitpid of /bin/true, "
              f"best of 1-8 threads, no scheduler): {ceiling:,.0f}/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    worst = min(r["ratio"] for r in rows)
    print(f"\nlowest ratio: {worst:.2f}x (goal: at least 2x)")


if __name__ == "__main__":
    main()
