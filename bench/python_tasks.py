#!/usr/bin/python3
"""Python function tasks (issue 18) against their baselines, in one run.

1. Null Python function tasks per second (`python = "module:function"`, a
   function that returns None) with 1, 2 and 4 workers, against
   mpi4py.futures' MPIPoolExecutor.map with chunksize 1 and 64 (one more
   rank for its master) and against Tandem's executable tasks running
   `python3 -c pass`. Tandem's rate is done tasks over the makespan in
   summary.json (start-up excluded, every task journaled); mpi4py's is
   measured around map() after a warm-up. Goals: >= 2x the best
   mpi4py.futures figure, >= 50x the executable path.
2. A Python task's round trip of a 1 KiB request to the echo service
   (ctx.client, over the worker's MPI client), against a C++ function
   task's (tandem::Client) in the same job, one after the other. Goal:
   within +5 us. Also the ctypes path (TANDEM_PYTHON_NATIVE=0), the
   client without tandem._native.

Each figure is the median of --repeat runs. --condition one-core runs
every job under `taskset -c 0` (a slow machine's wake-ups on any machine).

  bench/python_tasks.py --build build
  bench/python_tasks.py --build build --condition one-core
  bench/python_tasks.py --build build --workers 1 --round-trip-np 6   # idle workers
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import mpi_env
import report

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = []

TASKS_PY = '''
import statistics
import time

import numpy as np


def null(ctx):
    return None


def round_trips(ctx):
    client = ctx.client
    client.wait_ready("echo")
    x = {"x": np.zeros(ctx.args["bytes"] // 4, np.float32)}
    for _ in range(200):
        client.infer("echo", x)
    times = []
    for _ in range(ctx.args["trips"]):
        t0 = time.perf_counter_ns()
        client.infer("echo", x)
        times.append(time.perf_counter_ns() - t0)
    return {"median_us": statistics.median(times) / 1000}
'''


def mpiexec(np, args, env=None):
    cmd = PREFIX + ["mpiexec", "--oversubscribe", "-n", str(np)] + args
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def tandem_run(tandem, work, flow_text, np, env=None):
    flow = os.path.join(work, "flow.toml")
    with open(flow, "w") as f:
        f.write(flow_text)
    run_dir = os.path.join(work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    mpiexec(np, [tandem, "run", flow, "--run-dir", run_dir, "--log-level", "warn"], env)
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    journal = [json.loads(line) for line in open(os.path.join(run_dir, "journal.jsonl"))]
    return summary, journal


def task_rate(tandem, work, workers, task, n):
    summary, _ = tandem_run(tandem, work, f'[job]\nname = "bench"\n[[task]]\nname = "t"\n'
                                           f'{task}\ncount = {n}\n', workers + 1)
    assert summary["tasks"]["done"] == n, summary["tasks"]
    return summary["tasks_per_s"]


def mpi4py_rate(workers, n, chunksize):
    out = mpiexec(workers + 1, ["/usr/bin/python3", "-m", "mpi4py.futures",
                                os.path.join(HERE, "mpi4py_pool.py"), "null", str(n),
                                str(chunksize)])
    return float(out.strip().splitlines()[-1])


def round_trips(tandem, build, work, trips, native=True, np=3):
    lib = os.path.join(build, "bench", "libpython_tasks_bench.so")
    flow = (f'[job]\nname = "bench"\nlibraries = ["{lib}"]\n'
            f'[[service]]\nname = "echo"\nbackend = "echo"\n'
            f'[[task]]\nname = "python"\npython = "bench_tasks:round_trips"\n'
            f'args = {{ bytes = 1024, trips = {trips} }}\n'
            f'[[task]]\nname = "cxx"\nfunction = "cxx_round_trips"\nafter = ["python"]\n'
            f'args = {{ bytes = 1024, trips = {trips} }}\n')
    env = dict(os.environ, TANDEM_PYTHON_NATIVE="1" if native else "0")
    _, journal = tandem_run(tandem, work, flow, np, env)
    by = {e["task"]: e for e in journal}
    assert all(by[t]["state"] == "DONE" for t in ("python", "cxx")), journal
    return by["python"]["result"]["median_us"], by["cxx"]["result"]["median_us"]


def median(repeat, fn):
    return statistics.median(fn() for _ in range(repeat))


def main():
    global PREFIX
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--null-tasks", type=int, default=200000)
    ap.add_argument("--exe-tasks", type=int, default=1000)
    ap.add_argument("--trips", type=int, default=5000)
    ap.add_argument("--condition", choices=["free", "one-core"], default="free")
    ap.add_argument("--round-trip-np", type=int, default=3,
                    help="ranks of the round-trip job (past 3: idle workers, more ranks than cores)")
    args = ap.parse_args()
    mpi_env.setup()
    if args.condition == "one-core":
        PREFIX = ["taskset", "-c", "0"]
    build = os.path.abspath(args.build)
    tandem = os.path.join(build, "launcher", "tandem")
    label = f"{len(os.sched_getaffinity(0))} cores" if args.condition == "free" else "taskset -c 0"
    rows = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as work:
        with open(os.path.join(work, "bench_tasks.py"), "w") as f:
            f.write(TASKS_PY)
        print(f"Python function tasks, {label} (medians of {args.repeat} runs)")
        for w in args.workers:
            py = median(args.repeat, lambda: task_rate(tandem, work, w, 'python = "bench_tasks:null"',
                                                       args.null_tasks))
            exe = median(args.repeat, lambda: task_rate(
                tandem, work, w, 'command = ["/usr/bin/python3", "-c", "pass"]', args.exe_tasks))
            c1 = median(args.repeat, lambda: mpi4py_rate(w, args.null_tasks // 10, 1))
            c64 = median(args.repeat, lambda: mpi4py_rate(w, args.null_tasks, 64))
            best = max(c1, c64)
            rows.append({"workers": w, "python_tasks": py, "exe_python": exe, "mpi4py_cs1": c1,
                         "mpi4py_cs64": c64})
            print(f"  {w} worker(s): Python tasks {py:10.0f}/s | mpi4py.futures cs=1 {c1:9.0f}/s "
                  f"cs=64 {c64:9.0f}/s -> {py / best:5.2f}x | python3 -c pass {exe:7.0f}/s -> "
                  f"{py / exe:6.0f}x")
            report.ratio("python", f"null Python tasks, {w} worker(s), {label}", py, best,
                         "best mpi4py.futures", "tasks/s", True, ">= 2x")
            report.ratio("python", f"null Python tasks vs python3 -c pass, {w} worker(s), {label}",
                         py, exe, "executable tasks", "tasks/s", True, ">= 50x")
        pys, cxxs, ctypes_pys = [], [], []
        for _ in range(args.repeat):
            p, c = round_trips(tandem, build, work, args.trips, np=args.round_trip_np)
            pys.append(p)
            cxxs.append(c)
            ctypes_pys.append(round_trips(tandem, build, work, args.trips, native=False,
                                          np=args.round_trip_np)[0])
        p, c, pc = statistics.median(pys), statistics.median(cxxs), statistics.median(ctypes_pys)
        label += f", {args.round_trip_np} ranks"
        print(f"1 KiB echo round trip from a task, {label}: Python {p:.1f} us, C++ {c:.1f} us "
              f"(+{p - c:.1f} us; goal +5); Python over ctypes only {pc:.1f} us")
        report.ratio("python", f"1 KiB round trip, Python task vs C++ task, {label}", p, c,
                     "C++ client, same job", "us", False, "within +5 us")
    json.dump({"condition": label, "rates": rows,
               "round_trip_us": {"python": p, "cxx": c, "python_ctypes": pc}}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
