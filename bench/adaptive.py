#!/usr/bin/python3
"""Adaptive workflows: a steering task's rounds against mpi4py.futures'.

A round is: submit 100 null tasks, wait for all of them. Tandem's steering
task (bench/steering_tasks.cpp) submits them in one call (each submission
journaled durably before the call returns) and waits with ctx.wait;
mpi4py.futures' driver calls submit() 100 times and collects them with
as_completed. Same ranks for both (--np: Tandem's coordinator and workers,
one of which runs the steering task; mpi4py's master and workers). Medians
over the rounds after the first, of --repeat runs.

Then whether submissions slow the pilot: null tasks per second through the
pilot with and without a steering task that submits as fast as it can
(--static, --pressure).

  bench/adaptive.py --build build [--np 4] [--rounds 50] [--per-round 100] [--repeat 3]
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

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]


def rounds_of(path):
    with open(path) as f:
        rows = [tuple(float(v) for v in line.split()) for line in f if line.strip()]
    return rows[1:]  # the first round warms up


def run_tandem(tandem, np, work, name, text):
    """`tandem run` of the workflow `text` (after its [job] table) on np
    ranks; its run directory."""
    flow = os.path.join(work, f"{name}.toml")
    with open(flow, "w") as f:
        f.write(f'[job]\nname = "{name}"\n{text}')
    run_dir = os.path.join(work, f"{name}-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run(MPIEXEC + ["-n", str(np), tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn", "--no-trace"], check=True,
                   capture_output=True)
    return run_dir


def tandem_rounds(tandem, lib, np, rounds, per_round, work):
    run_dir = run_tandem(tandem, np, work, "adaptive", f'''libraries = ["{lib}"]
[[task]]
name = "think"
function = "bench_thinker"
steering = true
args = {{ rounds = {rounds}, per_round = {per_round} }}
[[task]]
name = "null"
function = "tandem.null"
count = 0
''')
    return rounds_of(os.path.join(run_dir, "tasks", "think", "rounds.txt"))


def mpi4py_rounds(np, rounds, per_round, work):
    out = subprocess.run(MPIEXEC + ["-n", str(np), "/usr/bin/python3", "-m", "mpi4py.futures",
                                    os.path.join(HERE, "mpi4py_rounds.py"), str(rounds),
                                    str(per_round)],
                         check=True, capture_output=True, text=True).stdout
    path = os.path.join(work, "mpi4py.txt")
    with open(path, "w") as f:
        f.write(out)
    return rounds_of(path)


def pilot_rate(tandem, lib, np, static, pressure, work):
    """The pilot's own null tasks per second, from a clock task that runs
    first to one that runs after all of them, with a steering task that
    submits `pressure` more null tasks meanwhile (calls of 1000, no wait
    between them) or, for 0, none and one rank fewer: the same workers run
    the work either way. Also the submissions per second it saw."""
    thinker = f'''
[[task]]
name = "press"
function = "bench_pressure"
steering = true
priority = 20
args = {{ total = {pressure}, per_call = 1000 }}
[[task]]
name = "sub"
function = "tandem.null"
count = 0
''' if pressure else ""
    ranks = np + (1 if pressure else 0)
    run_dir = run_tandem(tandem, ranks, work, "pressure", f'''libraries = ["{lib}"]
[[task]]
name = "start"
function = "bench_clock"
priority = 10
[[task]]
name = "work"
function = "tandem.null"
count = {static}
after = ["start"]
[[task]]
name = "end"
function = "bench_clock"
after = ["work"]
{thinker}''')

    def clock(task):
        with open(os.path.join(run_dir, "tasks", task, "0.txt")) as f:
            return int(f.read()) / 1e6

    rate = static / (clock("end") - clock("start"))
    submitted = 0.0
    if pressure:
        with open(os.path.join(run_dir, "tasks", "press", "pressure.txt")) as f:
            submitted = float(f.read())
    return rate, submitted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--np", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--per-round", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--static", type=int, default=2000000,
                    help="null tasks of the pilot's own for the pressure test")
    ap.add_argument("--pressure", type=int, default=100000,
                    help="null tasks a steering task submits meanwhile")
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(os.path.join(args.build, "launcher", "tandem"))
    lib = os.path.abspath(os.path.join(args.build, "bench", "libbench_steering.so"))
    t_rows, m_rows = [], []
    quiet, waiting, pressed, submitted = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tandem-adaptive-") as work:
        for _ in range(args.repeat):
            t_rows += tandem_rounds(tandem, lib, args.np, args.rounds, args.per_round, work)
            m_rows += mpi4py_rounds(args.np, args.rounds, args.per_round, work)
            quiet.append(pilot_rate(tandem, lib, args.np, args.static, 0, work)[0])
            # 1,000 submitted at once, queued behind the pilot's own: the
            # steering task waits the whole run.
            waiting.append(pilot_rate(tandem, lib, args.np, args.static, 1000, work)[0])
            rate, subs = pilot_rate(tandem, lib, args.np, args.static, args.pressure, work)
            pressed.append(rate)
            submitted.append(subs)
    n = args.per_round
    t_round = statistics.median(r[1] for r in t_rows)
    m_round = statistics.median(r[1] for r in m_rows)
    t_submit = n / statistics.median(r[0] for r in t_rows)
    m_submit = n / statistics.median(r[0] for r in m_rows)
    print(f"## Adaptive rounds ({args.np} ranks, {n} null tasks a round), medians of "
          f"{len(t_rows)} rounds\n")
    print("| figure | Tandem | mpi4py.futures | Tandem / mpi4py |")
    print("|---|---:|---:|---:|")
    print(f"| round: submit {n}, wait for all (ms) | {t_round * 1e3:.2f} | {m_round * 1e3:.2f} | "
          f"{t_round / m_round:.2f} |")
    print(f"| rounds per second | {1 / t_round:.0f} | {1 / m_round:.0f} | "
          f"{m_round / t_round:.1f}x |")
    print(f"| submissions per second (the submit calls) | {t_submit:,.0f} | {m_submit:,.0f} | "
          f"{t_submit / m_submit:.2f} |")
    q, wt, p, sub = (statistics.median(v) for v in (quiet, waiting, pressed, submitted))
    print(f"\n## The pilot under submissions ({args.static:,} null tasks on {args.np - 1} "
          f"workers; a steering task on a worker of its own submits {args.pressure:,} more), "
          f"medians of {len(quiet)} runs\n")
    print("| figure | value |")
    print("|---|---:|")
    print(f"| the pilot's null tasks per second, no steering task | {q:,.0f} |")
    print(f"| the same while a steering task waits (1,000 submitted) | {wt:,.0f} ({wt / q:.2f}) |")
    print(f"| the same while a steering task submits flat out | {p:,.0f} ({p / q:.2f}) |")
    print(f"| submissions per second it made meanwhile (calls of 1000) | {sub:,.0f} |")
    report.ratio("adaptive", "pilot tasks/s while a steering task submits", p, q,
                 "no steering task", "tasks/s", True)
    report.ratio("adaptive", f"round of {n} null tasks", t_round * 1e3, m_round * 1e3,
                 "mpi4py.futures", "ms", False)
    report.ratio("adaptive", "submissions per second", t_submit, m_submit, "mpi4py.futures",
                 "submissions/s", True)


if __name__ == "__main__":
    main()
