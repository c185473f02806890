#!/usr/bin/env bash
# Faults that lose nothing (docs/when-things-go-wrong.md), end to end under
# mpiexec: function tasks that segfault, abort, call exit() or hang, run
# without and with isolation; a worker rank killed with SIGKILL; a run
# directory on a file system that fills up; a resume with an edited
# workflow; an executable whose failure reason carries its stderr.
# Usage: test_faults.sh TANDEM TEST_TASKS_LIB MPIEXEC
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-faults-XXXXXX)
cleanup() {
  mountpoint -q "$work/full" 2> /dev/null && umount "$work/full"
  if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "kept for inspection: $work"; fi
}
trap cleanup EXIT
cd "$work"
contains() { grep -qF -- "$2" "$1"; }
# py EXPR FILE...: evaluates a Python expression; `lines(f)` reads a JSON
# lines file, `load(f)` a JSON file; the arguments are sys.argv[1:].
py() {
  local expr=$1
  shift
  python3 - "$@" << EOF
import json, sys
def lines(f): return [json.loads(l) for l in open(f)]
def load(f): return json.load(open(f))
def once(f, task, count):
    import collections
    n = collections.Counter(d['index'] for d in lines(f) if d.get('state') == 'DONE' and d['task'] == task)
    return all(n[i] == 1 for i in range(count)) and len(n) == count
a = sys.argv[1:]
print($expr)
EOF
}
run() { # run NAME [ARGS...]: tandem run on 3 ranks, output in NAME.out
  local name=$1
  shift
  timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run "$@" > "$name.out" 2>&1
}
parses() { py "len(lines(a[0]))" "$1" > /dev/null; }
# done_once RUN_DIR TASK COUNT: every instance DONE exactly once in the journal.
done_once() {
  test "$(py "once(a[0], a[1], int(a[2]))" "$1/journal.jsonl" "$2" "$3")" = True
}

# --- a function task that crashes its rank, not isolated --------------------
# Each way of dying ends the job with the attempt named; the first resume
# charges it and the poison task runs its second (last) attempt, which
# ends that job too; the second resume marks it FAILED and finishes.
for how in segv abort exit; do
  cat > crash-$how.toml << TOML
[job]
name = "crash-$how"
libraries = ["$tasks_lib"]
[[task]]
name = "sim"
function = "test_misbehave"
count = 12
retries = 1
args = { bad_index = 5, how = "$how" }
TOML
  dir=$work/runs/crash-$how
  run crash-$how-1 crash-$how.toml --run-dir "$dir"
  rc1=$?
  run crash-$how-2 crash-$how.toml --run-dir "$dir" --resume
  rc2=$?
  run crash-$how-3 crash-$how.toml --run-dir "$dir" --resume
  rc3=$?
  case $how in
    segv) said="died with SIGSEGV while running sim[5] attempt 1" ;;
    abort) said="died with SIGABRT while running sim[5] attempt 1" ;;
    exit) said="called exit() while running sim[5] attempt 1" ;;
  esac
  check "$how: the crash ends the job" test "$rc1" -ne 0 -a "$rc1" -ne 1
  check "$how: the job's output names the rank, the signal and the instance" \
    contains crash-$how-1.out "$said"
  check "$how: the first resume charges attempt 1" \
    contains crash-$how-2.out "the previous job lost sim[5] attempt 1"
  check "$how: the poison task's second attempt ends that job too" test "$rc2" -ne 0 -a "$rc2" -ne 1
  check "$how: the second resume finishes with the poison task FAILED (exit 1)" test "$rc3" -eq 1
  check "$how: the poison task ran exactly retries + 1 = 2 times" \
    test "$(ls "$dir/tasks/sim" | grep -c '^bad\.')" -eq 2
  check "$how: the journal charges 2 lost attempts to sim[5]" \
    test "$(py "sum(1 for d in lines(a[0]) if d.get('lost') and d['index']==5)" "$dir/journal.jsonl")" -eq 2
  check "$how: sim[5] is FAILED with the reason" \
    test "$(py "[d['reason'] for d in lines(a[0]) if d.get('state')=='FAILED'][-1].startswith('2 attempt(s) lost')" "$dir/journal.jsonl")" = True
  check "$how: every other instance is DONE exactly once" \
    test "$(py "sorted(set(sum(1 for d in lines(a[0]) if d.get('state')=='DONE' and d['index']==i) for i in range(12) if i != 5))" "$dir/journal.jsonl")" = "[1]"
  check "$how: history.jsonl has the three jobs, the two that died marked so" \
    test "$(py "[d.get('ended_without_summary', False) for d in lines(a[0])]" "$dir/history.jsonl")" = "[True, True, False]"
done

# --- the same crashes, isolated: only that attempt fails ---------------------
cat > isolated.toml << TOML
[job]
name = "isolated"
libraries = ["$tasks_lib"]
isolate = true
[[task]]
name = "segv"
function = "test_misbehave"
count = 6
args = { bad_index = 2, how = "segv" }
[[task]]
name = "abort"
function = "test_misbehave"
count = 6
args = { bad_index = 2, how = "abort" }
[[task]]
name = "exit"
function = "test_misbehave"
count = 6
args = { bad_index = 2, how = "exit" }
[[task]]
name = "hang"
function = "test_misbehave"
count = 3
timeout = 1
args = { bad_index = 1, how = "hang" }
TOML
dir=$work/runs/isolated
SECONDS=0
run isolated isolated.toml --run-dir "$dir"
rc=$?
took=$SECONDS
check "isolated: one job, exit 1 (tasks failed, no rank died)" test "$rc" -eq 1
check "isolated: exactly the four bad attempts FAILED" \
  test "$(py "sorted((d['task'], d['index']) for d in lines(a[0]) if d.get('state')=='FAILED')" "$dir/journal.jsonl")" = "[('abort', 2), ('exit', 2), ('hang', 1), ('segv', 2)]"
check "isolated: every other instance DONE" \
  test "$(py "sum(1 for d in lines(a[0]) if d.get('state')=='DONE')" "$dir/journal.jsonl")" -eq 17
check "isolated: a segfault is reported with its signal" \
  contains "$dir/journal.jsonl" "died with signal 11 (Segmentation fault) in its isolated process"
check "isolated: abort() is reported with its signal" contains "$dir/journal.jsonl" "died with signal 6"
check "isolated: exit(7) is reported with its status" \
  test "$(py "[(d['exit_code'], 'called exit(7)' in d['reason']) for d in lines(a[0]) if d['task']=='exit' and d['state']=='FAILED']" "$dir/journal.jsonl")" = "[(7, True)]"
check "isolated: a hung task is killed at its timeout" \
  contains "$dir/journal.jsonl" "ran past its timeout of 1 s and was killed"
check "isolated: the hung task cost about its timeout, not the job" test "$took" -lt 30

# --- a hung function task, not isolated -------------------------------------
cat > hang-abort.toml << TOML
[job]
name = "hang-abort"
libraries = ["$tasks_lib"]
[[task]]
name = "sim"
function = "test_misbehave"
count = 6
timeout = 1
on_timeout = "abort"
args = { bad_index = 3, how = "hang" }
TOML
dir=$work/runs/hang-abort
run hang-abort-1 hang-abort.toml --run-dir "$dir"
rc1=$?
run hang-abort-2 hang-abort.toml --run-dir "$dir" --resume
rc2=$?
check "on_timeout = abort: the job ends" test "$rc1" -ne 0 -a "$rc1" -ne 1
check "on_timeout = abort: the log says why" contains hang-abort-1.out 'on_timeout = "abort" ends the job'
check "on_timeout = abort: the resume charges the attempt and fails it" test "$rc2" -eq 1
check "on_timeout = abort: the reason names the timeout" \
  test "$(py "[d['index'] for d in lines(a[0]) if d.get('state')=='FAILED' and 'ran past its timeout of 1 s' in d['reason']]" "$dir/journal.jsonl")" = "[3]"

cat > hang-warn.toml << TOML
[job]
name = "hang-warn"
libraries = ["$tasks_lib"]
[[task]]
name = "sim"
function = "test_misbehave"
count = 2
timeout = 0.3
args = { bad_index = 1, how = "sleep", seconds = 1.5 }
TOML
run hang-warn hang-warn.toml --run-dir "$work/runs/hang-warn"
check "on_timeout = warn (the default): the job finishes" test $? -eq 0
check "on_timeout = warn: the overrun is reported" \
  contains hang-warn.out "sim[1] attempt 1 ran past its timeout of 0.3 s and goes on"

# --- a service replica that crashes while serving a batch --------------------
# The model segfaults on a batch of exactly 3 rows; only the task "bad"
# sends 3 rows (max_batch = 3 keeps the other requests out of its batch).
cat > replica.toml << TOML
[job]
name = "replica"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "scale"
max_batch = 3
crash_on_rows = 3
[[task]]
name = "ok"
function = "test_infer"
count = 6
args = { service = "double", factor = 2.0, rows = 2 }
[[task]]
name = "bad"
function = "test_infer"
args = { service = "double", factor = 2.0, rows = 3 }
TOML
dir=$work/runs/replica
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run replica.toml --run-dir "$dir" > replica-1.out 2>&1
rc1=$?
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run replica.toml --run-dir "$dir" --resume > replica-2.out 2>&1
rc2=$?
check "a replica's crash ends the job" test "$rc1" -ne 0 -a "$rc1" -ne 1
check "the dying replica names the batch it served" contains replica-1.out "while serving a batch for 1 client(s)"
check "the resume charges the task whose request was in the batch, and fails it" test "$rc2" -eq 1
check "bad[0] is FAILED for the replica's crash" \
  test "$(py "[d['task'] + str(d['index']) for d in lines(a[0]) if d.get('state')=='FAILED' and 'service replica rank' in d['reason']]" "$dir/journal.jsonl")" = "['bad0']"
check "every ok instance DONE exactly once" done_once "$dir" ok 6

# --- what a function task prints on stderr goes into the run directory -----
cat > print.toml << TOML
[job]
name = "print"
libraries = ["$tasks_lib"]
[[task]]
name = "talk"
function = "test_misbehave"
count = 4
args = { bad_index = 2, how = "print" }
TOML
run print print.toml --run-dir "$work/runs/print"
check "a task printing on stderr: exit 0" test $? -eq 0
check "its line is in the rank's logs/rank-NNNNN.stderr" \
  sh -c "cat '$work/runs/print/logs/'rank-*.stderr | grep -qx 'stderr of talk\[2\]'"
check "and not in the job's output" sh -c "! grep -q 'stderr of talk' print.out"

# --- a worker rank killed with SIGKILL mid-run ------------------------------
cat > kill.toml << TOML
[job]
name = "kill"
[[task]]
name = "sim"
function = "tandem.sleep"
count = 40
retries = 1
args = { seconds = 0.2 }
TOML
dir=$work/runs/kill
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run kill.toml --run-dir "$dir" > kill-1.out 2>&1 &
job=$!
for _ in $(seq 100); do
  [ -f "$dir/journal.jsonl" ] && [ "$(wc -l < "$dir/journal.jsonl")" -ge 6 ] && break
  sleep 0.1
done
sleep 1.2 # past the logs' flush interval
check "logs fill while the run goes" test -s "$dir/logs/rank-00001.log"
# A single-node run opens no TCP listener on a rank beyond loopback (Open
# MPI's launcher still has its own, which Open MPI 4.1 cannot confine;
# docs/when-things-go-wrong.md).
launcher_pid=$(pgrep -P "$job" | head -1)
ranks=$(pgrep -P "$launcher_pid" -x tandem | tr '\n' ' ')
check "no rank listens on anything but loopback (ranks: $ranks)" \
  sh -c "test -n '$ranks' && python3 '$here/listeners.py' $ranks"
# The worker's pid, from its black box.
pid=$(rank_pid "$dir" 1)
kill -KILL "$pid"
wait "$job"
rc1=$?
run kill-2 kill.toml --run-dir "$dir" --resume
rc2=$?
check "SIGKILL: the job ends" test "$rc1" -ne 0
check "SIGKILL: the resume finishes" test "$rc2" -eq 0
check "SIGKILL: the instance the killed rank ran is charged" \
  test "$(py "sum(1 for d in lines(a[0]) if d.get('lost') and 'SIGKILL' in d['reason'] and 'worker rank 1' in d['reason'])" "$dir/journal.jsonl")" -eq 1
check "SIGKILL: every instance DONE exactly once" done_once "$dir" sim 40
check "SIGKILL: history.jsonl records the job that died" \
  test "$(py "[d.get('ended_without_summary', False) for d in lines(a[0])]" "$dir/history.jsonl")" = "[True, False]"

# --- a resume with an edited workflow ----------------------------------------
sed 's/count = 40/count = 44/; s/retries = 1/retries = 3/' kill.toml > kill-more.toml
run edit-safe kill-more.toml --run-dir "$dir" --resume
check "more instances and retries are safe edits" test $? -eq 0
check "the 4 new instances ran" done_once "$dir" sim 44
sed 's/seconds = 0.2/seconds = 0.1/' kill-more.toml > kill-args.toml
run edit-unsafe kill-args.toml --run-dir "$dir" --resume
check "changed arguments are refused with exit 2" test $? -eq 2
check "the refusal names the change and the way out" \
  contains edit-unsafe.out "task 'sim': args changed from"
check "the refusal says --allow-changes" contains edit-unsafe.out "add --allow-changes"
run edit-allowed kill-args.toml --run-dir "$dir" --resume --allow-changes
check "--allow-changes resumes anyway" test $? -eq 0
check "history.jsonl names each job's workflow and its hash" \
  test "$(py "len(set(d['workflow_hash'] for d in lines(a[0]) if 'workflow_hash' in d))" "$dir/history.jsonl")" -eq 3

# --- tandem supervise returns the job's own exit code -------------------------
# mpirun reports 1 for a job its ranks ended with 143; supervise reads the
# code from the summary the job wrote.
cat > stopped.toml << TOML
[job]
name = "stopped"
[[task]]
name = "sim"
function = "tandem.sleep"
count = 40
args = { seconds = 0.2 }
TOML
dir=$work/runs/stopped
"$tandem" supervise -- "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run stopped.toml \
  --run-dir "$dir" > stopped.out 2>&1 &
sup=$!
for _ in $(seq 100); do
  [ -f "$dir/journal.jsonl" ] && [ "$(wc -l < "$dir/journal.jsonl")" -ge 4 ] && break
  sleep 0.1
done
kill -TERM "$sup"
wait "$sup"
rc=$?
check "supervise, stopped by SIGTERM, exits with the job's 143 (got $rc)" test "$rc" -eq 143
check "and does not relaunch a job that was stopped" sh -c "! grep -q 'Relaunching' stopped.out"

# --- an executable's failure carries its stderr ------------------------------
cat > stderr.toml << TOML
[job]
name = "stderr"
[[task]]
name = "broken"
command = ["/bin/sh", "-c", "echo loading >&2; echo 'libfoo.so: cannot open shared object file' >&2; exit 127"]
TOML
run stderr stderr.toml --run-dir "$work/runs/stderr"
check "a failed executable: exit 1" test $? -eq 1
check "its reason ends with the last lines of its stderr" \
  contains "$work/runs/stderr/journal.jsonl" "exited with code 127; its stderr ends: loading | libfoo.so: cannot open shared object file"

# --- a full file system under the run directory ------------------------------
mkdir -p "$work/full"
if mount -t tmpfs -o size=1m tmpfs "$work/full" 2> /dev/null; then
  cat > full.toml << TOML
[job]
name = "full"
[[task]]
name = "null"
function = "tandem.null"
count = 20000
TOML
  dir=$work/full/run
  run full-1 full.toml --run-dir "$dir"
  rc1=$?
  check "full disk: exit 3 (records lost), not 0" test "$rc1" -eq 3
  check "full disk: the message names the journal and the cause" \
    contains full-1.out "cannot write the journal $dir/journal.jsonl: No space left on device"
  check "full disk: every journal line parses" parses "$dir/journal.jsonl"
  check "full disk: summary.json is absent or valid, never empty" \
    sh -c "! test -e '$dir/summary.json' || python3 -m json.tool '$dir/summary.json' > /dev/null"
  check "full disk: no rank crashed on the way out" sh -c "! grep -q 'signal' full-1.out"
  check "full disk: HDF5 prints no error stack" sh -c "! grep -q 'HDF5-DIAG\|H5F\.c\|infinite loop' full-1.out"
  in_flight=$(sed -n 's/.*No new task starts; the \([0-9]*\) task(s) running.*/\1/p' full-1.out | head -1)
  not_started=$(sed -n 's/.*with the \([0-9]*\) that had not started.*/\1/p' full-1.out | head -1)
  mount -o remount,size=64m "$work/full"
  run full-2 full.toml --run-dir "$dir" --resume
  check "full disk: the resume after freeing space finishes" test $? -eq 0
  # What the resume ran, less what had never started, is what ran again.
  reruns=$(($(py "lines(a[0])[-1]['done']" "$dir/history.jsonl") - ${not_started:-0}))
  check "full disk: the resume reran $reruns <= $in_flight in flight when the write failed" \
    test "$reruns" -le "${in_flight:-0}"
  check "full disk: every instance DONE exactly once" done_once "$dir" null 20000
else
  echo "SKIP: full disk (cannot mount a tmpfs here)"
fi

finish "faults"
