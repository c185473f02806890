#!/usr/bin/python3
"""What surviving faults costs, each against a baseline measured in the same run.

1. Group commit: null function tasks per second with the journal made
   durable every 0.1 s (journal_sync_interval, the default) against no
   fdatasync at all (0). Runs alternate on and off; medians of twice
   --repeat, with the range.
2. Isolation: the cost of one task on one worker for a null function task
   run in place, the same run isolated (isolate = true: fork, pipe, wait)
   and an executable task (/bin/true: posix_spawn, pipes, wait).
3. A rank's death: the seconds from SIGKILL of a worker to the relaunched
   job (tandem supervise ... --resume) running a task again, against the
   seconds from launching a fresh job to its first task.

The run directories go under --workdir (default: the current directory),
so that fdatasync reaches a real disk.

  bench/faults.py --tandem build/launcher/tandem
  taskset -c 0 bench/faults.py --tandem build/launcher/tandem
"""
import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import mpi_env
import report

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def run_tandem(tandem, np, flow, run_dir, extra=()):
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.run(MPIEXEC + ["-n", str(np), tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn", "--no-trace"] + list(extra),
                   check=True, capture_output=True)
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def group_commit(tandem, work, n, repeat):
    rates = {"on": [], "off": []}
    for _ in range(repeat):
        for mode, interval in (("on", 0.1), ("off", 0)):
            flow = write(os.path.join(work, f"gc-{mode}.toml"),
                         f'[job]\nname = "gc"\njournal_sync_interval = {interval}\n'
                         f'[[task]]\nname = "t"\nfunction = "tandem.null"\ncount = {n}\n')
            s = run_tandem(tandem, 3, flow, os.path.join(work, f"gc-{mode}"))
            assert s["tasks"]["done"] == n
            rates[mode].append(s["tasks_per_s"])
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {"on_per_s": on, "off_per_s": off, "ratio": on / off,
            "on_range": [min(rates["on"]), max(rates["on"])],
            "off_range": [min(rates["off"]), max(rates["off"])]}


def per_task_us(tandem, work, n, repeat):
    kinds = {
        "function": 'function = "tandem.null"',
        "isolated": 'function = "tandem.null"\nisolate = true',
        "command": 'command = ["/bin/true"]',
    }
    out = {}
    for kind, body in kinds.items():
        flow = write(os.path.join(work, f"iso-{kind}.toml"),
                     f'[job]\nname = "iso"\n[[task]]\nname = "t"\n{body}\ncount = {n}\n')
        rates = []
        for _ in range(repeat):
            s = run_tandem(tandem, 2, flow, os.path.join(work, f"iso-{kind}"))
            assert s["tasks"]["done"] == n
            rates.append(s["tasks_per_s"])
        out[kind] = 1e6 / statistics.median(rates)  # one worker: µs per task
    return out


def first_start_after(journal, t_us):
    starts = []
    with open(journal) as f:
        for line in f:
            d = json.loads(line)
            if d.get("started_us", 0) > t_us:
                starts.append(d["started_us"])
    return min(starts) if starts else None


def cold_start_s(tandem, work, flow):
    run_dir = os.path.join(work, "cold")
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.time()
    subprocess.run(MPIEXEC + ["-n", "3", tandem, "run", flow, "--run-dir", run_dir,
                              "--log-level", "warn", "--no-trace"], check=True,
                   capture_output=True)
    return (first_start_after(os.path.join(run_dir, "journal.jsonl"), t0 * 1e6) / 1e6) - t0


def death_to_running_s(tandem, work, flow):
    run_dir = os.path.join(work, "death")
    shutil.rmtree(run_dir, ignore_errors=True)
    job = subprocess.Popen([tandem, "supervise", "--max-relaunches", "1", "--"] + MPIEXEC +
                           ["-n", "3", tandem, "run", flow, "--run-dir", run_dir,
                            "--log-level", "warn", "--no-trace"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = os.path.join(run_dir, "journal.jsonl")
    deadline = time.time() + 60
    while time.time() < deadline:
        if os.path.exists(journal) and sum(1 for _ in open(journal)) >= 4:
            break
        time.sleep(0.02)
    with open(os.path.join(run_dir, "ranks", "rank-00001.rec"), "rb") as f:
        pid = struct.unpack_from("i", f.read(), 16)[0]  # the pid field of rank_record::Page
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    job.wait(timeout=120)
    # The relaunched job's own start: the other worker may still have
    # started tasks of the dying job after the kill.
    with open(os.path.join(run_dir, "history.jsonl")) as f:
        relaunched_us = [json.loads(line) for line in f][-1]["started_us"]
    first = first_start_after(journal, max(relaunched_us, t_kill * 1e6))
    assert first, "the relaunched job ran nothing"
    return first / 1e6 - t_kill


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--null-tasks", type=int, default=200000)
    ap.add_argument("--isolated-tasks", type=int, default=2000)
    ap.add_argument("--workdir", default=os.getcwd())
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    mpi_env.setup()
    tandem = os.path.abspath(args.tandem)
    with tempfile.TemporaryDirectory(prefix="tandem-faults-", dir=args.workdir) as work:
        # Null-task rates vary by a fifth from run to run here: twice the runs.
        gc = group_commit(tandem, work, args.null_tasks, 2 * args.repeat)
        print(f"group commit: on {gc['on_per_s']:,.0f}/s, off {gc['off_per_s']:,.0f}/s, "
              f"ratio {gc['ratio']:.3f}", file=sys.stderr)
        iso = per_task_us(tandem, work, args.isolated_tasks, args.repeat)
        print(f"per task: {iso}", file=sys.stderr)
        flow = write(os.path.join(work, "sleepy.toml"),
                     '[job]\nname = "death"\n[[task]]\nname = "t"\nfunction = "tandem.sleep"\n'
                     'count = 60\nretries = 1\nargs = { seconds = 0.05 }\n')
        cold = statistics.median(cold_start_s(tandem, work, flow) for _ in range(args.repeat))
        death = statistics.median(death_to_running_s(tandem, work, flow)
                                  for _ in range(args.repeat))
    report.ratio("faults", "null tasks/s, journal_sync_interval = 0.1", gc["on_per_s"],
                 gc["off_per_s"], "no fdatasync", "tasks/s", True)
    print("| what | figure | baseline in the same run | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| null tasks/s, journal_sync_interval = 0.1 | {gc['on_per_s']:,.0f} "
          f"({gc['on_range'][0]:,.0f}-{gc['on_range'][1]:,.0f}) | {gc['off_per_s']:,.0f} "
          f"({gc['off_range'][0]:,.0f}-{gc['off_range'][1]:,.0f}; no fdatasync) | "
          f"{gc['ratio']:.3f} |")
    print(f"| µs per isolated null function task | {iso['isolated']:.0f} | "
          f"{iso['function']:.1f} (in place) | {iso['isolated'] / iso['function']:.0f}x |")
    print(f"| µs per isolated null function task | {iso['isolated']:.0f} | "
          f"{iso['command']:.0f} (`/bin/true` command task) | "
          f"{iso['isolated'] / iso['command']:.2f} |")
    print(f"| s from SIGKILL of a worker to a task running in the relaunched job | {death:.2f} | "
          f"{cold:.2f} (launch to first task, fresh job) | {death / cold:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"group_commit": gc, "per_task_us": iso, "death_to_running_s": death,
                       "cold_start_s": cold}, f, indent=2)


if __name__ == "__main__":
    main()
