#!/usr/bin/env bash
# Tandem across nodes, on fake nodes of this machine (tests/cluster/cluster.sh):
# the plan against where ranks ran, per-node placement and local-first
# routing, a failed local replica, which transports cross nodes, stale
# shared memory swept on each node, a multi-rank task and executable tasks
# spanning nodes, clock offsets, and a stop and resume across nodes.
# Usage: test_cluster.sh TANDEM TEST_TASKS_LIB PROXY_TASK MODELS_DIR
# Exits 77 (skipped) where fake nodes cannot be made (not root).
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
proxy_task=$(readlink -f "$3")
models=$(readlink -f "$4")
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
source "$here/cluster.sh"
cluster_check || exit 77
source "$here/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-cluster-XXXXXX)
trap 'if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "kept for inspection: $work"; fi' EXIT
cd "$work"
export TANDEM_CLUSTER_DIR=$work/cluster
node0=$(cluster_node_name 0)
node1=$(cluster_node_name 1)

# json FILE EXPR: a value from a JSON file (EXPR in Python, the file is `d`).
json() { "$python" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# --- the plan, placement and routing ---------------------------------------
# 2 nodes x 4 ranks; a service with a replica on every node (no count
# given), 24 tasks sending 5 requests each.
cat > routing.toml << TOML
[job]
name = "routing"
libraries = ["$tasks_lib"]
[[service]]
name = "echo"
backend = "echo"
placement = "per_node"
[[task]]
name = "ask"
function = "test_infer"
count = 24
args = { service = "echo", requests = 5 }
TOML
"$tandem" plan routing.toml --np 8 --ranks-per-node 4 > plan.txt
cluster_mpirun 2 4 "$tandem" run routing.toml --run-dir routing --log-level warn > routing.log 2>&1
check "a per-node workflow on 2 nodes exits 0" test $? -eq 0 || tail -20 routing.log
check "placement.json: ranks 0-3 on $node0, 4-7 on $node1" \
  test "$(json routing/placement.json "' '.join(r['host'] for r in d['ranks'])")" = \
  "$node0 $node0 $node0 $node0 $node1 $node1 $node1 $node1"
check "tandem plan's nodes and roles are the run's" test "$("$python" - routing/placement.json plan.txt << 'PY'
import json, sys
run = json.load(open(sys.argv[1]))["ranks"]
plan = [l.split() for l in open(sys.argv[2]) if len(l.split()) > 2 and l.split()[1].isdigit()]
print(all(int(p[0]) == r["rank"] and int(p[1]) == r["node"] and p[2] == r["role"].split()[0]
          for p, r in zip(plan, run)) and len(plan) == len(run))
PY
)" = True
check "one replica on each node" \
  test "$(json routing/summary.json "[r['node'] for r in d['services']['echo']['replicas']]")" = "[0, 1]"
# Each replica answered exactly the requests of the tasks that ran on its
# node: 5 per task, by the host each task wrote down.
for k in 0 1; do
  host=$(cluster_node_name $k)
  expected=$((5 * $(grep -lx "host $host" routing/tasks/ask/infer.* | wc -l)))
  check "replica $k answered the $expected requests from $host" \
    test "$(json routing/summary.json "d['services']['echo']['replicas'][$k]['requests']")" = "$expected"
done
check "tasks ran on both nodes" test "$(cat routing/tasks/ask/infer.* | grep -c "^host $node1")" -gt 0
check "the trace shows every request going to its own node's replica" test "$("$python" - routing << 'PY'
import h5py, json, sys
run = sys.argv[1]
node = {r["rank"]: r["node"] for r in json.load(open(run + "/placement.json"))["ranks"]}
replica_node = [r["node"] for r in json.load(open(run + "/summary.json"))["services"]["echo"]["replicas"]]
with h5py.File(run + "/trace.h5") as f:
    sends = f["request_send"][:]
print(len(sends) == 120 and all(replica_node[s["replica"]] == node[s["rank"]] for s in sends))
PY
)" = True

# --- a local replica still loading: its node's tasks wait for it -----------
# Node 1's model server becomes ready 3 s after node 0's. wait_ready on node
# 1 must not settle for node 0's READY replica: per_node placement means
# each node's requests stay on it.
server=$(readlink -f "$here/../support/kserve_test_server.py")
cat > slow.toml << TOML
[job]
name = "slow"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "process"
placement = "per_node"
command = ["/bin/sh", "-c", "if [ \\"\$(hostname)\\" = $node1 ]; then d=3; else d=0; fi; exec $python $server --port {port} --ready-after \$d"]
[[task]]
name = "ask"
function = "test_infer"
count = 12
args = { service = "double", factor = 2.0, requests = 3 }
TOML
cluster_mpirun 2 4 "$tandem" run slow.toml --run-dir slow --log-level warn > slow.log 2>&1
check "a replica that loads 3 s later: the run exits 0" test $? -eq 0 || tail -20 slow.log
check "node 1's tasks waited for node 1's replica, none went to node 0's" \
  test "$("$python" - slow << 'PY'
import h5py, json, sys
run = sys.argv[1]
node = {r["rank"]: r["node"] for r in json.load(open(run + "/placement.json"))["ranks"]}
reps = json.load(open(run + "/summary.json"))["services"]["double"]["replicas"]
with h5py.File(run + "/trace.h5") as f:
    sends = f["request_send"][:]
on1 = [s for s in sends if node[s["rank"]] == 1]
print(len(sends) == 36 and len(on1) > 0
      and all(reps[s["replica"]]["node"] == node[s["rank"]] for s in sends))
PY
)" = True
# Executable tasks wait through their worker's proxy, then go direct or
# through the proxy: each replica answered exactly its own node's requests.
sed -e 's/^name = "slow"/name = "slow-exe"/' -e '/^\[\[task\]\]/,$d' slow.toml > slow-exe.toml
cat >> slow-exe.toml << TOML
[[task]]
name = "exe"
command = ["$proxy_task", "check"]
count = 10
TOML
cluster_mpirun 2 4 "$tandem" run slow-exe.toml --run-dir slow-exe --log-level warn > slow-exe.log 2>&1
check "executable tasks and a replica that loads 3 s later: the run exits 0" test $? -eq 0 ||
  tail -20 slow-exe.log
check "node 1's executable tasks waited for node 1's replica too" \
  test "$("$python" - slow-exe << 'PY'
import json, sys
run = sys.argv[1]
node = {r["rank"]: r["node"] for r in json.load(open(run + "/placement.json"))["ranks"]}
workers = sorted((r["rank"] for r in json.load(open(run + "/placement.json"))["ranks"]
                  if r["role"].startswith("worker")))
lines = [json.loads(l) for l in open(run + "/journal.jsonl")]
done = [l for l in lines if l["state"] == "DONE"]
per_node = [sum(node[workers[l["worker"]]] == n for l in done) for n in (0, 1)]
reps = json.load(open(run + "/summary.json"))["services"]["double"]["replicas"]
print(len(done) == 10 and per_node[1] > 0 and [r["requests"] for r in reps] == per_node)
PY
)" = True

# --- a local replica that FAILED: requests go to the other node's ------------
# The model exists only in node 0's scratch directory, so node 1's replica
# cannot load it; node 1's tasks are answered by node 0's replica.
if [ -f "$models/picky.pt" ]; then
  mkdir -p "$TANDEM_CLUSTER_DIR/nodes/$node0/scratch" "$TANDEM_CLUSTER_DIR/local"
  cp "$models/picky.pt" "$TANDEM_CLUSTER_DIR/nodes/$node0/scratch/model.pt"
  cp "$models/picky.pt" "$TANDEM_CLUSTER_DIR/local/model.pt" # for tandem plan/validate here
  cat > failover.toml << TOML
[job]
name = "failover"
libraries = ["$tasks_lib"]
[[service]]
name = "model"
backend = "torchscript"
model = "$TANDEM_CLUSTER_DIR/local/model.pt"
placement = "per_node"
inputs = [{ name = "x", dtype = "FP32", shape = [-1, 4] }]
outputs = [{ name = "y", dtype = "FP32", shape = [-1, 4] }]
[[task]]
name = "ask"
function = "test_infer"
count = 12
args = { service = "model", factor = 2.0, requests = 3 }
TOML
  rm "$TANDEM_CLUSTER_DIR/local/model.pt"
  cluster_mpirun 2 3 "$tandem" run failover.toml --run-dir failover --log-level warn > failover.log 2>&1
  check "with node 1's replica FAILED the run still exits 0" test $? -eq 0 || tail -20 failover.log
  check "node 1's replica is FAILED, saying why" \
    test "$(json failover/summary.json "d['services']['model']['replicas'][1]['state']")" = FAILED
  check "node 0's replica answered all 36 requests" \
    test "$(json failover/summary.json "d['services']['model']['replicas'][0]['requests']")" = 36
  check "tasks on node 1 were among them" test "$(cat failover/tasks/ask/infer.* | grep -c "^host $node1")" -gt 0
else
  echo "note: no TorchScript test model ($models/picky.pt); the failover case is skipped"
fi

# --- transports across nodes ------------------------------------------------
# One replica, on node 0 (spread). Tasks on node 1 send 1 MiB: it must go
# inline (automatic) or through HDF5 files on the shared file system, and
# come back byte for byte; asking for shared memory is a clear error.
cat > transports.toml << TOML
[job]
name = "transports"
libraries = ["$tasks_lib"]
[job.staging]
dir = "$work/staging"
[[service]]
name = "echo"
backend = "echo"
[[task]]
name = "auto"
function = "test_infer"
count = 6
args = { service = "echo", rows = 65536, requests = 2 }
[[task]]
name = "hdf5"
function = "test_infer"
count = 6
args = { service = "echo", rows = 65536, transport = "hdf5" }
[[task]]
name = "shm"
function = "test_infer"
count = 6
args = { service = "echo", rows = 65536, transport = "shm", expect_error = "does not cross nodes" }
TOML
mkdir -p staging
# 2 nodes x 2 ranks: the coordinator and the replica fill node 0, so every
# task runs on node 1's two workers.
cluster_mpirun 2 2 "$tandem" run transports.toml --run-dir transports --log-level warn > transports.log 2>&1
rc=$?
check "1 MiB requests across nodes: the run finishes (exit $rc)" test $rc -eq 0 || tail -20 transports.log
check "every task ran on node 1, away from the replica" \
  test "$(cat transports/tasks/*/infer.* | grep -c "^host $node1")" = 18
check "inline and HDF5 came back byte for byte" \
  test "$(cat transports/tasks/auto/infer.* transports/tasks/hdf5/infer.* | grep -c '^ok')" = 12
check "shared memory across nodes is refused, naming the nodes" \
  test "$(grep -l "error: .*on node 0 and this rank on node 1, and shared memory does not cross nodes" transports/tasks/shm/infer.* | wc -l)" = 6
check "the HDF5 staging files are gone after the run" test -z "$(ls staging)"

# --- stale shared memory is swept on each node, in its own /dev/shm ----------
dead=$(bash -c 'echo $$')
for k in 0 1; do
  touch "$TANDEM_CLUSTER_DIR/nodes/$(cluster_node_name $k)/shm/tandem.$dead.stale$k"
done
cluster_mpirun 2 3 "$tandem" run routing.toml --run-dir sweep --log-level warn > sweep.log 2>&1
check "the run after a crash exits 0" test $? -eq 0
for k in 0 1; do
  check "node $k's stale segment is gone" \
    test ! -e "$TANDEM_CLUSTER_DIR/nodes/$(cluster_node_name $k)/shm/tandem.$dead.stale$k"
done
check "one rank per node swept, each finding its own" \
  test "$(grep -l "removed 1 shared-memory segment" sweep/logs/rank-*.log | wc -l)" = 2
check "no segment of the run is left on either node" \
  test -z "$(find "$TANDEM_CLUSTER_DIR"/nodes/*/shm -mindepth 1)"

# --- a multi-rank task across nodes; executable tasks on every node ---------
cat > span.toml << TOML
[job]
name = "span"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "wide"
function = "test_collective"
ranks = 4
count = 2
[[task]]
name = "exe"
command = ["$proxy_task", "check"]
count = 8
TOML
cluster_mpirun 2 3 "$tandem" run span.toml --run-dir span --log-level warn > span.log 2>&1
check "multi-rank and executable tasks across nodes: exit 0" test $? -eq 0 || tail -20 span.log
check "the 4-rank task's communicator spans both nodes" \
  test "$(grep -c "^host" span/tasks/wide/collective.0) $(sort -u span/tasks/wide/collective.0 | grep -c '^host')" = "4 2"
check "executable tasks on both nodes reached the service through their own worker" \
  test "$("$python" - span << 'PY'
import json, sys
run = sys.argv[1]
node = {r["rank"]: r["node"] for r in json.load(open(run + "/placement.json"))["ranks"]}
workers = sorted((r["rank"] for r in json.load(open(run + "/placement.json"))["ranks"]
                  if r["role"].startswith("worker")))
lines = [json.loads(l) for l in open(run + "/journal.jsonl")]
exe = [l for l in lines if l["task"] == "exe" and l["state"] == "DONE"]
print(len(exe) == 8 and {node[workers[l["worker"]]] for l in exe} == {0, 1})
PY
)" = True

# --- clock offsets and the trace ---------------------------------------------
check "clock offsets were measured for the ranks on node 1, and only for them" \
  test "$("$python" - routing << 'PY'
import h5py, sys
with h5py.File(sys.argv[1] + "/trace.h5") as f:
    rtt = f["clock_rtt_ns"][:]
# Ranks 0-3 share rank 0's clock (no ping-pong: -1); 4-7 measured over TCP.
print(len(rtt) == 8 and all(r == -1 for r in rtt[:4]) and all(r > 0 for r in rtt[4:]))
PY
)" = True
check "events stay in time order on every rank" test "$("$python" - routing << 'PY'
import h5py, sys
ok = True
with h5py.File(sys.argv[1] + "/trace.h5") as f:
    for name in ("request_send", "reply_receive", "task_start", "task_end"):
        t = f[name][:]
        for r in set(t["rank"]):
            ts = t["t_ns"][t["rank"] == r]
            ok &= bool((ts[1:] >= ts[:-1]).all())
print(ok)
PY
)" = True

# --- 64 ranks over 4 nodes on this 2-core machine: correct, not fast -------
cat > big.toml << TOML
[job]
name = "big"
libraries = ["$tasks_lib"]
[[service]]
name = "echo"
backend = "echo"
placement = "per_node"
[[task]]
name = "ask"
function = "test_infer"
count = 240
args = { service = "echo", requests = 5 }
[[task]]
name = "wide"
function = "test_collective"
ranks = 8
count = 2
after = ["ask"]
TOML
cluster_mpirun 4 16 "$tandem" run big.toml --run-dir big --log-level warn > big.log 2>&1
check "64 ranks on 4 nodes: exit 0" test $? -eq 0 || tail -20 big.log
check "64 ranks on 4 nodes: all 242 tasks DONE" test "$(json big/summary.json "d['tasks']['done']")" = 242
check "64 ranks on 4 nodes: a replica per node, 1200 requests, each answered on its node" \
  test "$("$python" - big << 'PY'
import h5py, json, sys
run = sys.argv[1]
node = {r["rank"]: r["node"] for r in json.load(open(run + "/placement.json"))["ranks"]}
reps = json.load(open(run + "/summary.json"))["services"]["echo"]["replicas"]
with h5py.File(run + "/trace.h5") as f:
    sends = f["request_send"][:]
    tracks = len(f["tracks"])
print([r["node"] for r in reps] == [0, 1, 2, 3] and sum(r["requests"] for r in reps) == 1200
      and len(sends) == 1200 and all(reps[s["replica"]]["node"] == node[s["rank"]] for s in sends)
      and tracks == 64)
PY
)" = True
check "the trace budget is reported: 16 ranks on the fullest node" \
  test "$(json big/summary.json "d['trace']['ranks_on_fullest_node'], d['trace']['max_events_per_rank']")" = "16 1000000"

# --- a stop across nodes, and a resume that runs nothing twice ---------------
cat > long.toml << TOML
[job]
name = "long"
[[task]]
name = "step"
count = 120
command = ["/bin/sh", "-c", "sleep 0.2 && echo {index} >> $work/finished.txt"]
TOML
cluster_command 2 3 "$tandem" run long.toml --run-dir long --log-level warn
"${cluster_cmd[@]}" > long.log 2>&1 &
launcher=$!
for _ in $(seq 300); do
  [ -f finished.txt ] && [ "$(wc -l < finished.txt)" -ge 15 ] && break
  sleep 0.1
done
kill -TERM $launcher
wait $launcher
check "SIGTERM to mpirun stopped the run on every node" \
  test "$(json long/summary.json "d['interrupted_by_signal']")" = 15
done_first=$(json long/summary.json "d['tasks']['done']")
check "it stopped mid-run ($done_first of 120)" test "$done_first" -gt 0 -a "$done_first" -lt 120
cluster_mpirun 2 3 "$tandem" run long.toml --run-dir long --resume --log-level warn > long2.log 2>&1
check "the resume across nodes exits 0" test $? -eq 0
check "every task ran to the end exactly once" \
  test "$(sort -n finished.txt | uniq | wc -l) $(wc -l < finished.txt)" = "120 120"

# --- an elastic per_node service grows one replica per node -----------------
# 2 nodes x 4 ranks: replicas 0 and 1 (ranks 1 and 4) for good; replica 2
# may take node 0's highest worker (rank 3), replica 3 node 1's (rank 7).
cat > elastic.toml << TOML
[job]
name = "elastic"
libraries = ["$tasks_lib"]
[[service]]
name = "slow"
backend = "sleep"
delay_us = 4000
max_batch = 1
placement = "per_node"
replicas = { min = 2, max = 4 }
target_queue_ms = 4
scale_dwell_s = 0.2
[[task]]
name = "ask"
function = "test_infer"
count = 30
args = { service = "slow", requests = 30, rows = 1 }
TOML
cluster_mpirun 2 4 "$tandem" run elastic.toml --run-dir elastic --log-level info > elastic.log 2>&1
check "elastic per_node on 2 nodes: exit 0" test $? -eq 0 || tail -20 elastic.log
check "it grew on both nodes, each replica on its own node's worker" \
  test "$(json elastic/summary.json "sorted((m['replica'], m['ranks']) for m in d['elastic']['slow']['moves'] if m['direction'] == 'grow')")" = "[(2, [3]), (3, [7])]"
check "placement.json: the grown replicas' ranks are on nodes 0 and 1" \
  test "$(json elastic/placement.json "[d['ranks'][3]['node'], d['ranks'][7]['node']]")" = "[0, 1]"
check "every request answered once" \
  test "$(json elastic/summary.json "(d['services']['slow']['requests'], d['services']['slow']['errors'], d['tasks']['done'])")" = "(900, 0, 30)"

finish cluster
