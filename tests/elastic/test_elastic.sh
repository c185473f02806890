#!/usr/bin/env bash
# Elastic services (issue 21), end to end under mpiexec on 7 ranks: a
# coordinator, one replica of "slow" for good, and five workers, of which
# the two highest may serve as replicas 1 and 2 (max = 3).
#   growing under load, shrinking when the requests stop (the freed ranks
#   run tasks), exactly once through 20+ moves made with Client::scale,
#   the limits, a growing rank whose load fails, and [[scale]] after a task.
# Usage: test_elastic.sh TANDEM TEST_TASKS_LIB MPIEXEC
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-elastic-XXXXXX)
cleanup() { if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "kept for inspection: $work"; fi; }
trap cleanup EXIT
cd "$work"
run() { # run NAME [RANKS]: tandem run NAME.toml on 7 ranks into runs/NAME, output in NAME.out
  timeout 240 "$mpiexec" "${mpiexec_flags[@]}" -n "${2:-7}" "$tandem" run "$1.toml" \
    --run-dir "runs/$1" > "$1.out" 2>&1
}
# py EXPR RUN: a Python expression over RUN's summary.json (s), journal (j)
# and Chrome trace events (t).
py() {
  python3 - "$2" << EOF
import json, sys, collections
d = sys.argv[1]
s = json.load(open(d + '/summary.json'))
j = [json.loads(l) for l in open(d + '/journal.jsonl')]
t = json.load(open(d + '/trace.json'))['traceEvents']
e = s.get('elastic', {}).get('slow', {})
def done_once(task, n):
    c = collections.Counter(x['index'] for x in j if x.get('state') == 'DONE' and x['task'] == task)
    return len(c) == n and all(v == 1 for v in c.values())
print($1)
EOF
}
head_toml() { # head_toml NAME [EXTRA SERVICE KEYS]
  cat << TOML
[job]
name = "$1"
libraries = ["$tasks_lib"]
[[service]]
name = "slow"
backend = "sleep"
delay_us = 2000
max_batch = 1
replicas = { min = 1, max = 3 }
target_queue_ms = 4
scale_dwell_s = 0.2
${2:-}
TOML
}

# --- growing under load, shrinking when the requests stop --------------------
# 40 tasks of 30 requests keep five clients at one replica of 500/s; then 60
# tasks without requests.
{
  head_toml phases
  cat << TOML
[[task]]
name = "ask"
function = "test_infer"
count = 40
args = { service = "slow", requests = 30, rows = 1 }
[[task]]
name = "sim"
function = "tandem.sleep"
count = 60
after = ["ask"]
args = { seconds = 0.05 }
TOML
} > phases.toml
run phases
check "phases: exit 0" test $? -eq 0
check "phases: it grew to max under the burst (grows: $(py "e['grows']" runs/phases))" \
  test "$(py "e['grows']" runs/phases)" -eq 2
check "phases: the trace shows the moves and why" \
  test "$(py "sum(1 for x in t if x['name'].startswith('scale slow to') and x['args']['reason'] == 'queue')" runs/phases)" -ge 2
check "phases: 3 replicas served at once" \
  test "$(py "max(n for _, n in e['replicas_over_time'])" runs/phases)" -eq 3
check "phases: it shrank back when the requests stopped" \
  test "$(py "sum(1 for m in e['moves'] if m['direction'] == 'shrink' and m['reason'] in ('idle', 'tasks'))" runs/phases)" -ge 1
check "phases: the freed ranks ran sim tasks (workers 3 and 4)" \
  test "$(py "len({x['worker'] for x in j if x['task'] == 'sim' and x['worker'] in (3, 4)})" runs/phases)" -ge 1
check "phases: every request answered once (1200, no errors, checked by each task)" \
  test "$(py "(s['services']['slow']['requests'], s['services']['slow']['errors'], done_once('ask', 40), done_once('sim', 60))" runs/phases)" = "(1200, 0, True, True)"
check "phases: the extra replicas served some of them" \
  test "$(py "sum(r['requests'] for r in s['services']['slow']['replicas'] if r.get('elastic'))" runs/phases)" -gt 0
check "phases: a grow takes the load time + 50 ms once the worker is free" \
  test "$(py "all(m['seconds'] - m['wait_s'] <= m['load_s'] + 0.05 for m in e['moves'] if m['direction'] == 'grow')" runs/phases)" = True

check "phases: metrics.prom counts the moves" \
  grep -q 'tandem_service_replica_moves_total{service="slow",direction="grow"} 2' runs/phases/metrics.prom
"$tandem" report runs/phases --html > /dev/null 2>&1
check "phases: the HTML timeline draws the workers' turns as replicas" \
  grep -q "serving slow replica 1" runs/phases/report.html

# --- exactly once through 20 and more moves ----------------------------------
# A task moves the service between 1 and 3 replicas 16 times while 3
# workers' tasks send 4500 requests; the scaler waits for each worker.
{
  head_toml cycles
  cat << TOML
[[task]]
name = "mover"
function = "test_scale_cycle"
args = { service = "slow", cycles = 16, high = 3, low = 1, pause_s = 0.25, bad = 4 }
[[task]]
name = "ask"
function = "test_infer"
count = 150
args = { service = "slow", requests = 30, rows = 2 }
TOML
} > cycles.toml
run cycles
check "cycles: exit 0" test $? -eq 0
moves=$(py "e['grows'] + e['shrinks']" runs/cycles)
check "cycles: at least 20 moves ($moves)" test "$moves" -ge 20
check "cycles: every request answered exactly once (4500, checked by each task)" \
  test "$(py "(s['services']['slow']['requests'], s['services']['slow']['errors'], done_once('ask', 150), done_once('mover', 1))" runs/cycles)" = "(4500, 0, True, True)"
check "cycles: the moves were asked for" \
  test "$(py "all(m['reason'] in ('manual', 'end') for m in e['moves'])" runs/cycles)" = True
check "cycles: never past max" test "$(py "max(n for _, n in e['replicas_over_time'])" runs/cycles)" -le 3
check "cycles: scale past max is refused, naming the limits" \
  grep -q "may have 1 to 3 replicas, not 4" runs/cycles/tasks/mover/scale.0.error

# --- a growing rank that cannot load the model stays a worker -----------------
{
  head_toml badload "fail_load_from = 2"
  cat << TOML
[[task]]
name = "ask"
function = "test_infer"
count = 40
args = { service = "slow", requests = 30, rows = 1 }
TOML
} > badload.toml
run badload
check "badload: exit 0" test $? -eq 0
check "badload: replica 2's load failed, and it says why" \
  test "$(py "[m['replica'] for m in e['failed_loads']]" runs/badload)" = "[2]"
check "badload: the log names the rank and the cause" \
  grep -q "could not grow into replica 2 on rank(s) 5, which stay workers: .*cannot load its model" badload.out
check "badload: replica 1 still grew" test "$(py "e['grows']" runs/badload)" -ge 1
check "badload: every task DONE, every request answered" \
  test "$(py "(s['services']['slow']['requests'], done_once('ask', 40))" runs/badload)" = "(1200, True)"

# --- [[scale]] after a task ---------------------------------------------------
{
  head_toml rule
  cat << TOML
[[task]]
name = "warmup"
function = "tandem.sleep"
count = 4
args = { seconds = 0.05 }
[[task]]
name = "ask"
function = "test_infer"
count = 20
after = ["warmup"]
args = { service = "slow", requests = 10, rows = 1, factor = 1.0 }
[[scale]]
after = "warmup"
service = "slow"
replicas = 3
TOML
} > rule.toml
run rule
check "rule: exit 0" test $? -eq 0
check "rule: it grew to 3 after warmup, by the rule" \
  test "$(py "sum(1 for m in e['moves'] if m['direction'] == 'grow' and m['reason'] == 'rule')" runs/rule)" -eq 2
# The rule moves its workers before the tasks that warmup's end released
# are handed out: they were idle, so no grow waited for a task to end (an
# "ask" task takes its 10 requests at 2 ms each, at least 20 ms; about
# 110 ms here when the rule came after the dispatch). A grow of an idle
# worker waits for the scaler's next tick: 5 ms, more on a loaded machine.
echo "rule: the grows waited $(py "[round(m['wait_s'], 4) for m in e['moves'] if m['reason'] == 'rule']" runs/rule) s for their workers"
check "rule: its workers got none of the released tasks first" \
  test "$(py "all(m['wait_s'] < 0.05 for m in e['moves'] if m['reason'] == 'rule')" runs/rule)" = True

# --- a replica of two ranks moves as a group; Python's client.scale ----------
# 8 ranks: the coordinator, replica 0 (ranks 1-2), workers 3-7, of which
# 6 and 7 are replica 1's. A Python task asks for 2 replicas, then for 3
# (past max), which fails with the limits.
cat > pyscale.py << 'PY'
import tandem


def grow(ctx):
    client = ctx.client
    client.scale("slow", 2)
    try:
        client.scale("slow", 3)
    except tandem.ServiceError as e:
        with open(ctx.output_dir + "/refused.txt", "w") as f:
            f.write(str(e))
PY
{
  head_toml pairs | sed 's/replicas = { min = 1, max = 3 }/replicas = { min = 1, max = 2 }\nranks_per_replica = 2/' \
    | sed "s|^libraries = .*|&\npythonpath = [\"$work\"]|"
  cat << TOML
[[task]]
name = "grow"
python = "pyscale:grow"
[[task]]
name = "ask"
function = "test_infer"
count = 30
after = ["grow"]
args = { service = "slow", requests = 20, rows = 4 }
TOML
} > pairs.toml
run pairs 8
check "pairs: exit 0" test $? -eq 0
check "pairs: grew by one replica of two ranks, asked from Python" \
  test "$(py "[(m['ranks'], m['reason']) for m in e['moves'] if m['direction'] == 'grow']" runs/pairs)" = "[([6, 7], 'manual')]"
check "pairs: the two-rank replica served one turn" \
  test "$(py "[r['turns'] for r in s['services']['slow']['replicas'] if r.get('elastic')]" runs/pairs)" = "[1]"
check "pairs: every request answered" \
  test "$(py "(s['services']['slow']['requests'], done_once('ask', 30))" runs/pairs)" = "(600, True)"
check "pairs: Python's scale past max raises ServiceError with the limits" \
  grep -q "may have 1 to 2 replicas, not 3" runs/pairs/tasks/grow/refused.txt

# --- what the workflow file may not say ---------------------------------------
head_toml badmax | sed 's/max = 3/max = 9/' > badmax.toml
printf '[[task]]\nname = "t"\nfunction = "tandem.sleep"\n' >> badmax.toml
"$tandem" plan badmax.toml --np 7 > badmax.out 2>&1
check "limits: a max the workers cannot hold is refused with its line" \
  grep -q "badmax.toml:9:.*may grow to 9 replicas, but the job's workers run out" badmax.out
head_toml badrule > badrule.toml
printf '[[task]]\nname = "t"\nfunction = "tandem.sleep"\n[[scale]]\nafter = "t"\nservice = "slow"\nreplicas = 5\n' >> badrule.toml
"$tandem" validate badrule.toml > badrule.out 2>&1
check "limits: a [[scale]] past max is refused" grep -q "scale\[0\].replicas.*must be between 1 and 3" badrule.out

finish "elastic"
