#!/usr/bin/env bash
# infer_all inside a pilot's multi-rank tasks (issue 37): many tasks, each
# on a communicator the pilot makes and frees, then a replica lost in the
# middle of a collective call. Open MPI 4.1 cannot go on without a rank, so
# a lost replica ends the job: no rank may hang, the dying replica names the
# call's batch, and the next --resume charges the task whose call it was.
# Usage: test_lost_replica.sh TANDEM TEST_TASKS_LIB MPIEXEC
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-lost-replica-XXXXXX)
cleanup() { if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "kept for inspection: $work"; fi; }
trap cleanup EXIT
cd "$work"
contains() { grep -qF -- "$2" "$1"; }
# count_done RUN_DIR TASK: how many DONE lines TASK has in the journal, and
# whether each index has exactly one ("N once" or "N twice").
count_done() {
  python3 - "$1/journal.jsonl" "$2" << 'EOF'
import collections, json, sys
n = collections.Counter(d['index'] for d in map(json.loads, open(sys.argv[1]))
                        if d.get('state') == 'DONE' and d['task'] == sys.argv[2])
print(sum(n.values()), 'once' if all(v == 1 for v in n.values()) else 'twice')
EOF
}

# --- 30 two-rank tasks, each calling infer_all 5 times ----------------------
cat > many.toml << TOML
[job]
name = "many"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "pair"
function = "test_infer_all"
ranks = 2
count = 30
args = { service = "double", factor = 2.0, rows = 3, uneven = true, calls = 5 }
TOML
timeout 180 "$mpiexec" "${mpiexec_flags[@]}" -n 5 "$tandem" run many.toml --run-dir runs/many > many.out 2>&1
check "30 two-rank tasks calling infer_all: exit 0" test $? -eq 0
check "every pair DONE exactly once" test "$(count_done runs/many pair)" = "30 once"
check "each checked its own rows of 5 calls" \
  test "$(cat runs/many/tasks/pair/infer_all.* 2> /dev/null | grep -c '^ok 5$')" -eq 30
check "the report counts 150 collective calls" \
  sh -c "'$tandem' report runs/many --json | python3 -c 'import json,sys; s=json.load(sys.stdin)[\"services\"][0][\"collective\"]; sys.exit(s[\"calls\"] != 150)'"

# --- a replica lost during a collective call ---------------------------------
# The model segfaults on a batch of 7 rows: the task "bad" sends 3 + 4 rows
# in one call; "ok" sends 2 + 3 (max_batch = 7 keeps them apart).
cat > lost.toml << TOML
[job]
name = "lost"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "scale"
max_batch = 7
crash_on_rows = 7
[[task]]
name = "ok"
function = "test_infer_all"
ranks = 2
count = 4
args = { service = "double", factor = 2.0, rows = 2, uneven = true }
[[task]]
name = "bad"
function = "test_infer_all"
ranks = 2
after = ["ok"]
args = { service = "double", factor = 2.0, rows = 3, uneven = true }
TOML
start=$(date +%s)
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 5 "$tandem" run lost.toml --run-dir runs/lost > lost-1.out 2>&1
rc1=$?
took=$(($(date +%s) - start))
check "the lost replica ends the job, not 0 or 1 (rc $rc1)" test "$rc1" -ne 0 -a "$rc1" -ne 1 -a "$rc1" -ne 124
check "no rank hangs: the job ends within 60 s (took $took s)" test "$took" -lt 60
check "the dying replica names the call's batch" contains lost-1.out "while serving a batch for 1 client(s)"
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 5 "$tandem" run lost.toml --run-dir runs/lost --resume > lost-2.out 2>&1
check "the resume fails the task whose call it was (exit 1)" test $? -eq 1
check "bad[0] is FAILED for the replica's crash" \
  grep -q '"task":"bad".*"state":"FAILED".*service replica rank' runs/lost/journal.jsonl
check "every ok instance DONE exactly once" test "$(count_done runs/lost ok)" = "4 once"

finish "collective.lost_replica"
