"""Checks a run's trace against what the known workflow must produce, the
Chrome trace's shape, the report's figures against the trace, the metrics
file and the progress lines.

Usage: check_observability.py RUN_DIR REPORT_JSON STDERR_LOG
"""
import collections
import json
import math
import re
import sys

import h5py

run_dir, report_path, stderr_path = sys.argv[1:4]
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)


f = h5py.File(f"{run_dir}/trace.h5", "r")
t = {name: f[name][:] for name in f if f[name].dtype.names}
tracks = [s.decode() for s in f["tracks"][:]]
check(tracks == ["rank 0 coordinator", "rank 1 service double replica 0",
                 "rank 2 worker", "rank 3 worker"], f"track names: {tracks}")
check(f.attrs["dropped_events"] == 0, "no event was dropped")

# Tasks: 10 + 4 + 1 instances, each started and ended once, on the workers.
starts = t["task_start"]
ends = t["task_end"]
check(len(starts) == 15 and len(ends) == 15, f"15 task starts and ends ({len(starts)}, {len(ends)})")
check(set(starts["rank"]) <= {2, 3}, "tasks run on the worker ranks")
check({(r, i, a) for r, i, a in zip(starts["rank"], starts["instance"], starts["attempt"])}
      == {(r, i, a) for r, i, a in zip(ends["rank"], ends["instance"], ends["attempt"])},
      "every task start has its end on the same rank")
outcomes = collections.Counter(ends["outcome"].tolist())
check(outcomes == {0: 14, 1: 1}, f"14 tasks done and 1 failed: {outcomes}")
check(int(t["task_dispatch"]["count"].sum()) == 15, "the dispatches cover the 15 instances")
check(set(t["task_dispatch"]["rank"]) == {0}, "the coordinator dispatches")

# Requests: 30, each sent, queued, batched, replied and received exactly once.
send, recv = t["request_send"], t["reply_receive"]
queue, batch, reply = t["request_queue"], t["request_batch"], t["request_reply"]
for name, table in [("request_send", send), ("reply_receive", recv), ("request_queue", queue),
                    ("request_batch", batch), ("request_reply", reply)]:
    check(len(table) == 30, f"30 {name} events, not {len(table)}")
sent = {(int(r), int(q)) for r, q in zip(send["rank"], send["request"])}
received = {(int(r), int(q)) for r, q in zip(recv["rank"], recv["request"])}
queued = {(int(c), int(q)) for c, q in zip(queue["client"], queue["request"])}
replied = {(int(c), int(q)) for c, q in zip(reply["client"], reply["request"])}
check(len(sent) == 30 and sent == received == queued == replied,
      "every request has its send, queue, reply and receive")
check(all(recv["version"] == 1) and all(reply["version"] == 1),
      "every reply was a success, computed by model version 1")
compute = t["batch_compute"]
check(set(batch["batch"].tolist()) == set(compute["batch"].tolist()),
      "every batch a request joined was computed")
check(int(compute["rows"].sum()) == 60, f"the batches hold the 60 rows: {compute['rows'].sum()}")
check(all(compute["duration_ns"] >= 0), "batch durations are not negative")
# Per request, time runs forward: sent < queued < reply < received.
when = {}
for table, field, key_field in [(send, "sent", "rank"), (recv, "received", "rank"),
                                (queue, "queued", "client"), (reply, "replied", "client")]:
    for row in table:
        when.setdefault((int(row[key_field]), int(row["request"])), {})[field] = int(row["t_ns"])
ordered = all(w["sent"] <= w["queued"] <= w["replied"] <= w["received"] for w in when.values())
check(ordered, "each request's events are in time order across ranks")

# Service lifecycle and start-up phases.
states = [int(r["state"]) for r in sorted(t["service_state"], key=lambda r: r["t_ns"])]
check(states == [1, 2, 3], f"the replica went READY, DRAINING, STOPPED: {states}")
phases = collections.Counter(t["phase"]["phase"].tolist())
check(phases == {0: 4, 1: 4, 2: 1, 3: 1, 4: 1},
      f"phases: every rank starts and gets its role, one model load, run start and end: {phases}")

# The Chrome trace: parses, one named process per rank, in time order per
# track, a complete event per task, matched async request spans.
chrome = json.load(open(f"{run_dir}/trace.json"))
events = chrome["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == "process_name"}
check(names == dict(enumerate(tracks)), f"one process per rank, named by role: {names}")
last = {}
in_order = True
for e in events:
    if "ts" not in e:
        continue
    if e["ts"] < last.get(e["pid"], -math.inf):
        in_order = False
    last[e["pid"]] = e["ts"]
check(in_order, "events are in time order on every track")
tasks_x = [e for e in events if e.get("ph") == "X" and e.get("cat") == "task"]
check(len(tasks_x) == 15, f"15 task spans, not {len(tasks_x)}")
check(sorted(e["name"] for e in tasks_x if e["name"].startswith("nap"))
      == [f"nap[{i}]" for i in range(4)], "task spans are named task[index]")
check(all(e["dur"] >= 0 for e in tasks_x), "task spans have a duration")
begins = collections.Counter((e["pid"], e["id"]) for e in events if e.get("ph") == "b")
finishes = collections.Counter((e["pid"], e["id"]) for e in events if e.get("ph") == "e")
check(begins == finishes and sum(begins.values()) == 60,
      "60 request spans (client and service side), each begun and ended")
naps = [e["dur"] for e in tasks_x if e["name"].startswith("nap")]
check(all(350_000 <= d <= 5_000_000 for d in naps), f"a 0.4 s nap lasts about 0.4 s: {naps}")

# The report agrees with the trace.
report = json.load(open(report_path))
check(report["tasks"]["done"] == 14 and report["tasks"]["failed"] == 1, "report: task counts")
service = report["services"][0]
check(service["name"] == "double" and service["requests"] == 30, "report: the service's requests")
check(service["traced_requests"] == 30, "report: every request traced")
totals = sorted((w["received"] - w["sent"]) / 1e6 for w in when.values())
p50 = totals[math.ceil(0.5 * len(totals)) - 1]
p99 = totals[math.ceil(0.99 * len(totals)) - 1]
lat = service["latency"]
check(abs(lat["total"]["p50_ms"] - p50) < 1e-6 and abs(lat["total"]["p99_ms"] - p99) < 1e-6,
      f"report: total latency p50/p99 {lat['total']} vs the trace's {p50}, {p99}")
check(lat["queue_wait"]["p50_ms"] + lat["compute"]["p50_ms"] <= lat["total"]["p99_ms"] + 1e-9,
      "report: the parts are not larger than the whole")
histogram = collections.Counter(compute["rows"].tolist())
check({int(k): v for k, v in service["batch_rows_histogram"].items()} == histogram,
      f"report: batch-size histogram {service['batch_rows_histogram']} vs trace {histogram}")
check(report["startup"]["first_ready_s"] is not None
      and 0 <= report["startup"]["first_ready_s"] <= report["makespan_s"] + 60,
      "report: the first READY time")
slowest = report["slowest_tasks"]
check(len(slowest) == 10 and slowest[0]["task"] == "nap" and slowest[0]["seconds"] >= 0.35,
      f"report: the slowest tasks are the naps: {slowest[:2]}")

# The metrics file, as Prometheus would read it.
metrics = {}
for line in open(f"{run_dir}/metrics.prom"):
    if line.startswith("#") or not line.strip():
        continue
    name, value = line.rsplit(" ", 1)
    metrics[name] = float(value)
check(metrics.get('tandem_tasks{state="done"}') == 14, "metrics: 14 done")
check(metrics.get('tandem_tasks{state="failed"}') == 1, "metrics: 1 failed")
check(metrics.get("tandem_tasks_total") == 15, "metrics: 15 in all")
check(metrics.get('tandem_service_requests_total{service="double"}') == 30, "metrics: 30 requests")
check(metrics.get('tandem_service_latency_seconds_count{service="double"}') == 30,
      "metrics: 30 latencies in the histogram")
buckets = [v for k, v in metrics.items() if k.startswith("tandem_service_latency_seconds_bucket")]
check(buckets == sorted(buckets), "metrics: histogram buckets are cumulative")

# Progress lines on stderr (a log, not a terminal): counts only grow.
done = [int(m.group(1)) for m in re.finditer(r"progress: tasks (\d+)/15", open(stderr_path).read())]
check(len(done) >= 1 and done == sorted(done), f"progress lines count up: {done}")

for what in failures:
    print(f"FAIL: {what}", file=sys.stderr)
print(f"trace checks: {len(failures)} failed")
sys.exit(1 if failures else 0)
