#!/usr/bin/python3
"""Deadlines under overload (issue 38): an overloaded `sleep` service, with
and without deadlines, in one job; and replay's request rate against the
live service's.

The job: the coordinator, one replica of service "slow" (a `sleep` model of
--delay-ms a request, max_batch = 1: its capacity is 1000 / delay-ms
requests a second) and --senders application ranks. For each load (1.5x,
2x and 4x the capacity) and each of "no deadline" and "deadline_ms =
--deadline-ms", the senders together send open-loop at that rate for
--seconds, each request one row, and time every request from the call to
its outcome. Reported per case: the p50 and p99 latency of the requests
answered (for "no deadline", every request; with deadlines, the ones
answered, which the client delivers only within the deadline), the
goodput (answers within the deadline per second of sending, for both), and
the share that expired (DeadlineExceeded).

Replay: the same workflow with `record = true` on an `echo` service answers
--replay-requests requests closed-loop from one rank; then the job runs
again with the service replaced by its replay (`backend = "replay"`), and
the request rates are compared (medians of --repeat runs of each, the
live service without `record`, which would cost it a copy and a flush per
batch).

The client delivers a reply only if it came before the deadline (later
ones are dropped), so "answered" with a deadline means answered in time as
the library sees it; the p50/p99 and "in time" columns are timed in this
Python driver, which notices a reply only when its polling loop comes
round, so they include that delay; the "lib" columns are the same
requests' latencies as the client library saw them, from the run's trace
(request_send to reply_receive).

  /usr/bin/python3 bench/deadlines.py --build build [--seconds 2] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import mpi_env

MPIEXEC = ["mpiexec", "--oversubscribe", "--mca", "btl", "self,vader"]

# The application: runs inside the job, on every rank.
APP = r'''
import json, sys, time
import numpy as np
from mpi4py import MPI
import tandem

mode, out, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with tandem.Session(MPI.COMM_WORLD, sys.argv[4]) as s:
    if s.is_app:
        comm, c = s.app_comm, s.client
        me, n = comm.Get_rank(), comm.Get_size()
        x = np.ones((1, 4), dtype=np.float32)
        results = []
        if mode == "load":
            c.wait_ready("slow", 60)
            for load in arg["loads"]:
                for deadline in (0, arg["deadline_ms"]):
                    comm.Barrier()
                    gap = n / (load * arg["capacity"])
                    start = time.monotonic()
                    nxt, out_q, done = start, [], []
                    while time.monotonic() - start < arg["seconds"] or out_q:
                        now = time.monotonic()
                        if now >= nxt and now - start < arg["seconds"]:
                            out_q.append((c.infer_async("slow", x, deadline_ms=deadline), now))
                            nxt += gap
                        # Without deadlines the replies come in order and
                        # thousands wait: look at the oldest only, so that
                        # sending keeps its pace. With deadlines some come
                        # back at once (shed): look at all (a few dozen).
                        look = len(out_q) if deadline else 64
                        waiting = []
                        for r, t0 in out_q[:look]:
                            if r.test():
                                t1 = time.monotonic()
                                try:
                                    r.wait()
                                    done.append((1000 * (t1 - t0), True))
                                except tandem.DeadlineExceeded:
                                    done.append((1000 * (t1 - t0), False))
                            else:
                                waiting.append((r, t0))
                        out_q = waiting + out_q[look:]
                        time.sleep(50e-6)
                    every = comm.gather(done, root=0)
                    ranks = comm.gather(MPI.COMM_WORLD.Get_rank(), root=0)
                    if me == 0:
                        flat = [d for part in every for d in part]
                        results.append({"load": load, "deadline_ms": deadline,
                                        "seconds": arg["seconds"], "outcomes": flat,
                                        "sent": {r: len(p) for r, p in zip(ranks, every)}})
        else:  # closed-loop requests from app rank 0, for the replay comparison
            c.wait_ready("echo", 60)
            if me == 0:
                rng = np.random.default_rng(7)
                xs = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(arg["requests"])]
                for v in xs[:50]:
                    c.infer("echo", v)  # warm-up, not timed
                t0 = time.perf_counter()
                for v in xs:
                    y = c.infer("echo", v)
                results.append({"rate": len(xs) / (time.perf_counter() - t0)})
        if me == 0:
            json.dump(results, open(out, "w"))
'''


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def run_job(a, workflow_text, mode, arg, work, name, extra=()):
    wf = os.path.join(work, f"{name}.toml")
    with open(wf, "w") as f:
        f.write(workflow_text)
    app = os.path.join(work, "app.py")
    with open(app, "w") as f:
        f.write(APP)
    out = os.path.join(work, f"{name}.json")
    env = dict(os.environ, PYTHONPATH=os.path.join(a.build, "python"))
    cmd = MPIEXEC + ["-n", str(2 + a.senders), sys.executable, app, mode, out, json.dumps(arg),
                     wf] + list(extra)
    subprocess.run(cmd, check=True, env=env, cwd=work, timeout=900,
                   stdout=subprocess.DEVNULL if not a.verbose else None)
    return json.load(open(out))


def library_latencies(work, results):
    """Per case, the answered requests' latencies as the client library saw
    them, from the trace: request_send to reply_receive (a version > 0 is an
    answer). A client numbers its requests from 1 in the order it sends
    them, and every case's requests of a rank follow the case before's."""
    import glob
    import h5py
    (trace,) = glob.glob(os.path.join(work, "runs", "deadline-bench*", "trace.h5"))
    with h5py.File(trace) as f:
        send = f["request_send"][:]
        recv = f["reply_receive"][:]
    sent_at = {(int(e["rank"]), int(e["request"])): int(e["t_ns"]) for e in send}
    answered_at = {(int(e["rank"]), int(e["request"])): int(e["t_ns"])
                   for e in recv if e["version"] > 0}
    first = {}
    out = []
    for r in results:
        lat = []
        for rank, n in r["sent"].items():
            rank = int(rank)
            start = first.get(rank, 1)
            for rid in range(start, start + n):
                if (rank, rid) in answered_at:
                    lat.append((answered_at[(rank, rid)] - sent_at[(rank, rid)]) / 1e6)
            first[rank] = start + n
        out.append(lat)
    return out


def overload(a, work):
    capacity = 1000 / a.delay_ms
    text = f'''[job]
name = "deadline-bench"
run_root = "{work}/runs"
[[service]]
name = "slow"
backend = "sleep"
delay_us = {int(a.delay_ms * 1000)}
max_batch = 1
'''
    arg = {"loads": [1.5, 2, 4], "deadline_ms": a.deadline_ms, "capacity": capacity,
           "seconds": a.seconds}
    rows = []
    results = run_job(a, text, "load", arg, work, "overload")
    traced = library_latencies(work, results)
    for r, lib in zip(results, traced):
        outcomes = r["outcomes"]
        answered = [ms for ms, ok in outcomes if ok]
        in_time = [ms for ms in answered if ms <= a.deadline_ms]
        rows.append({
            "load": r["load"], "deadline_ms": r["deadline_ms"] or None,
            "requests": len(outcomes), "answered": len(answered),
            "p50_ms": percentile(answered, 50), "p99_ms": percentile(answered, 99),
            "goodput_per_s": len(answered if r["deadline_ms"] else in_time) / r["seconds"],
            "goodput_share_of_capacity":
                len(answered if r["deadline_ms"] else in_time) / r["seconds"] / capacity,
            "in_time_as_timed_here": len(in_time),
            "library_p50_ms": percentile(lib, 50), "library_p99_ms": percentile(lib, 99),
            "library_max_ms": max(lib) if lib else float("nan"),
            "expired_share": 1 - len(answered) / max(1, len(outcomes)),
        })
    return capacity, rows


def replay_rate(a, work):
    base = f'''[job]
name = "replay-bench"
run_root = "{work}/runs"
[[service]]
name = "echo"
'''
    arg = {"requests": a.replay_requests}
    # The recording, made by a run of its own: recording costs the live
    # service a copy and a flush per batch, which is not what is compared.
    before = set(os.listdir(os.path.join(work, "runs")))
    run_job(a, base + 'backend = "echo"\nrecord = true\n', "replay", arg, work, "recording")
    (run,) = set(os.listdir(os.path.join(work, "runs"))) - before
    recorded = os.path.join(work, "runs", run, "services", "echo")
    live, replayed = [], []
    for _ in range(a.repeat):
        live.append(run_job(a, base + 'backend = "echo"\n', "replay", arg, work, "live")[0]["rate"])
        replay = base + f'backend = "replay"\nrecording = "{recorded}"\n'
        replayed.append(run_job(a, replay, "replay", arg, work, "replayed")[0]["rate"])
    return statistics.median(live), statistics.median(replayed)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--senders", type=int, default=2)
    p.add_argument("--delay-ms", type=float, default=2.0)
    p.add_argument("--deadline-ms", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--replay-requests", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3, help="runs of each replay case (medians)")
    p.add_argument("--json")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    mpi_env.setup()
    with tempfile.TemporaryDirectory(prefix="tandem-deadlines-") as work:
        capacity, rows = overload(a, work)
        live, replayed = replay_rate(a, work)
    print(f"sleep service: {a.delay_ms} ms a request, capacity {capacity:.0f}/s; "
          f"{a.senders} senders, {a.seconds} s per case")
    print(f"{'load':>5} {'deadline':>9} {'requests':>9} {'answered':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'in time':>8} {'goodput/s':>10} {'of cap.':>8} {'expired':>8} "
          f"{'lib p50':>8} {'lib p99':>8} {'lib max':>8}")
    for r in rows:
        d = f"{r['deadline_ms']:g} ms" if r["deadline_ms"] else "none"
        print(f"{r['load']:>5}x {d:>9} {r['requests']:>9} {r['answered']:>9} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['in_time_as_timed_here']:>8} {r['goodput_per_s']:>10.0f} "
              f"{100 * r['goodput_share_of_capacity']:>7.0f}% {100 * r['expired_share']:>7.1f}% "
              f"{r['library_p50_ms']:>8.1f} {r['library_p99_ms']:>8.1f} {r['library_max_ms']:>8.1f}")
    print(f"replay: {replayed:.0f} requests/s against the live echo service's {live:.0f}/s "
          f"(ratio {replayed / live:.2f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"capacity": capacity, "cases": rows, "replay_rate": replayed,
                       "live_rate": live}, f, indent=2)


if __name__ == "__main__":
    main()
