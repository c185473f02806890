#!/usr/bin/python3
"""MPI programs as tasks, against their launcher run by hand in the same run.

1. Launch latency of a 4-rank program: from the worker starting the attempt
   (the journal's started_us) to every rank past MPI_Init (bench/mpi_hello.c
   writes the time after a barrier), against the same launcher started
   from a shell (the time before the start to the same mark).
2. Throughput: a bag of 2-rank mpi_hello programs on W workers (so W/2 at
   once), tasks per second over the makespan, against W/2 shell loops
   that each start the launcher one program after another.

Under Slurm (SLURM_JOB_ID set) the launcher is srun, both for Tandem and
for the baseline (srun --overlap in the job's own allocation); elsewhere a
nested mpirun. Medians of --repeat runs.

  bench/mpi_tasks.py --build build [--repeat 5] [--tasks 40] [--workers 4]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import mpi_env
import report

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]


def now_us():
    return int(time.time() * 1e6)


def under_slurm():
    return bool(os.environ.get("SLURM_JOB_ID")) and shutil.which("srun") is not None


def launcher_argv(ranks):
    """The launcher as a person would start it by hand (the baseline)."""
    if under_slurm():
        return ["srun", "--overlap", f"--ntasks={ranks}", "--cpu-bind=none", "--quiet"]
    return ["mpirun", "-n", str(ranks), "--oversubscribe", "--bind-to", "none"]


def clean_env():
    """The environment a nested launcher needs: without the outer job's wiring."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMIX_", "OMPI_COMM_WORLD", "OMPI_MCA_ess", "OMPI_MCA_orte",
                                "OMPI_MCA_pmix"))}
    return env


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def run_tandem(tandem, np, flow, run_dir):
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run(MPIEXEC + ["-n", str(np), tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn", "--no-trace"],
                   check=True, capture_output=True)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "journal.jsonl")) as f:
        journal = [json.loads(line) for line in f if line.strip()]
    return summary, journal


def latency(tandem, hello, work, repeat):
    tandem_ms, shell_ms = [], []
    for i in range(repeat):
        marks = os.path.join(work, f"marks-{i}")
        flow = write(os.path.join(work, "latency.toml"), f'''[job]
name = "latency"
[layout]
workers = 4
[[task]]
name = "hello"
command = ["{hello}", "{marks}"]
ranks = 4
''')
        _, journal = run_tandem(tandem, 5, flow, os.path.join(work, "lat-run"))
        started = journal[-1]["started_us"]
        with open(marks) as f:
            tandem_ms.append((int(f.read().split()[-1]) - started) / 1000)
        os.remove(marks)
        t0 = now_us()
        subprocess.run(launcher_argv(4) + [hello, marks], check=True, env=clean_env(),
                       capture_output=True)
        with open(marks) as f:
            shell_ms.append((int(f.read().split()[-1]) - t0) / 1000)
        os.remove(marks)
    return statistics.median(tandem_ms), statistics.median(shell_ms)


def throughput(tandem, hello, work, tasks, workers, repeat):
    tandem_rate, shell_rate = [], []
    lanes = max(1, workers // 2)
    for _ in range(repeat):
        flow = write(os.path.join(work, "bag.toml"), f'''[job]
name = "bag"
[layout]
workers = {workers}
[[task]]
name = "hello"
command = ["{hello}"]
ranks = 2
count = {tasks}
''')
        summary, _ = run_tandem(tandem, workers + 1, flow, os.path.join(work, "bag-run"))
        if summary["tasks"]["done"] != tasks:
            sys.exit(f"mpi_tasks: only {summary['tasks']['done']} of {tasks} done")
        tandem_rate.append(tasks / summary["makespan_s"])

        def lane(n):
            for _ in range(n):
                subprocess.run(launcher_argv(2) + [hello], check=True, env=clean_env(),
                               capture_output=True)

        per_lane = [tasks // lanes + (1 if k < tasks % lanes else 0) for k in range(lanes)]
        t0 = time.monotonic()
        threads = [threading.Thread(target=lane, args=(n,)) for n in per_lane]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shell_rate.append(tasks / (time.monotonic() - t0))
    return statistics.median(tandem_rate), statistics.median(shell_rate), lanes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(os.path.join(args.build, "launcher", "tandem"))
    hello = os.path.abspath(os.path.join(args.build, "bench", "mpi_hello"))
    name = "srun" if under_slurm() else "mpirun"
    with tempfile.TemporaryDirectory(prefix="tandem-mpi-tasks-") as work:
        lat_t, lat_s = latency(tandem, hello, work, args.repeat)
        rate_t, rate_s, lanes = throughput(tandem, hello, work, args.tasks, args.workers,
                                           args.repeat)
    print(f"## MPI programs as tasks ({name}), medians of {args.repeat}\n")
    print("| figure | Tandem | by hand | Tandem / by hand |")
    print("|---|---:|---:|---:|")
    print(f"| launch of a 4-rank program to all ranks past MPI_Init (ms) | {lat_t:.1f} | "
          f"{lat_s:.1f} | {lat_t / lat_s:.2f} |")
    print(f"| 2-rank programs per second, {args.workers} workers ({lanes} at once) vs "
          f"{lanes} {name} loop(s) | {rate_t:.1f} | {rate_s:.1f} | {rate_t / rate_s:.2f} |")
    report.ratio("mpi_tasks", f"launch of a 4-rank program ({name})", lat_t, lat_s,
                 f"{name} by hand", "ms", False)
    report.ratio("mpi_tasks", f"2-rank programs/s, {lanes} at once ({name})", rate_t, rate_s,
                 f"{lanes} {name} loop(s)", "tasks/s", True)


if __name__ == "__main__":
    main()
