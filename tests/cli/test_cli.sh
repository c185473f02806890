#!/usr/bin/env bash
# The tandem command end to end: validate, plan, run under mpiexec, exit
# codes, a SIGTERM in the middle of a run, and --resume after it.
# Usage: test_cli.sh TANDEM TEST_TASKS_LIB MPIEXEC
set -uo pipefail
tandem=$1
tasks_lib=$2
mpiexec=$3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
contains() { grep -qF -- "$2" "$1"; }

# --- validate -------------------------------------------------------------
cat > good.toml <<TOML
[job]
name = "good"
libraries = ["$tasks_lib"]
[[task]]
name = "prep"
command = ["/bin/echo", "hi"]
[[task]]
name = "sim"
function = "test_record"
count = 5
after = ["prep"]
TOML
"$tandem" validate good.toml > out.txt 2> err.txt
check "validate accepts a good file" test $? -eq 0
check "validate says OK" contains out.txt "good.toml: OK: job 'good', 2 task(s), 6 instance(s)"

printf '[[task]]\nname = "a"\nfunction = "tandem.null"\ncuont = 3\n' > typo.toml
"$tandem" validate typo.toml > out.txt 2> err.txt
check "validate rejects a typo with exit 2" test $? -eq 2
check "the error names file, line, column and key" \
  contains err.txt "typo.toml:4:1: task[0].cuont: unknown key; did you mean 'count'?"

printf '[[task]]\nname = "a"\nfunction = "no_such_function"\n' > nofn.toml
"$tandem" validate nofn.toml > out.txt 2> err.txt
check "validate rejects an unknown function" test $? -eq 2
check "the error names the function" contains err.txt "function 'no_such_function' is not registered"

echo "not a library" > fake.so
printf '[job]\nlibraries = ["fake.so"]\n[[task]]\nname = "a"\nfunction = "f"\n' > badlib.toml
"$tandem" validate badlib.toml > out.txt 2> err.txt
check "validate rejects a library that does not load" test $? -eq 2
check "the error says why it does not load" contains err.txt "cannot load shared library"

"$tandem" validate missing.toml > out.txt 2> err.txt
check "validate rejects a missing file" test $? -eq 2
check "the error says the file cannot be read" contains err.txt "cannot read the workflow file"

# --- plan -----------------------------------------------------------------
"$tandem" plan good.toml --np 6 --ranks-per-node 3 > out.txt 2> err.txt
check "plan succeeds" test $? -eq 0
check "plan shows the coordinator" grep -qE '^ +0 +0 +coordinator' out.txt
check "plan shows rank 4 as a worker on node 1" grep -qE '^ +4 +1 +worker +worker 3$' out.txt
check "plan sums up" contains out.txt "6 ranks on 2 node(s): 1 coordinator, 5 worker(s)"
# A file with services only is an SPMD session's: validate and plan say so,
# and tandem run refuses it, pointing at the session.
printf '[job]\nname = "coupled"\n[[service]]\nname = "m"\nbackend = "echo"\n' > session.toml
"$tandem" validate session.toml > out.txt 2> err.txt
check "validate accepts a services-only file" test $? -eq 0
check "validate says it is an SPMD session's file" contains out.txt "no tasks: an SPMD session's file"
"$tandem" plan session.toml --np 4 > out.txt 2> err.txt
check "plan labels the application's ranks 'app'" grep -qE '^ +2 +0 +app +app_comm rank 0$' out.txt
check "plan counts application ranks" contains out.txt "2 application rank(s) (SPMD session)"
"$tandem" plan session.toml --np 2 > out.txt 2> err.txt
check "plan of a session too small asks for an application rank" \
  contains err.txt "at least 1 application rank"
"$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run session.toml > out.txt 2> err.txt
check "tandem run refuses a services-only file with exit 2" test $? -eq 2
check "and says it is for SPMD mode" contains err.txt "a file with services only is for SPMD mode"

printf '[layout]\nworkers = 8\n[[task]]\nname = "a"\nfunction = "tandem.null"\n' > wide.toml
"$tandem" plan wide.toml --np 4 > out.txt 2> err.txt
check "plan rejects a layout larger than the job" test $? -eq 2
check "plan says how many ranks are needed" contains err.txt "start at least 9 ranks"

# --- run ------------------------------------------------------------------
run() { "$mpiexec" "${mpiexec_flags[@]}" -n "$1" "$tandem" run "${@:2}"; }

run 3 good.toml --run-dir r-good > out.txt 2> err.txt
check "a good run exits 0" test $? -eq 0
check "a good run writes its summary" contains r-good/summary.json '"done": 6'
check "every rank logged with rank and role" contains r-good/logs/rank-00002.log "[rank 2 worker]"

printf '[[task]]\nname = "bad"\ncommand = ["/bin/false"]\n[[task]]\nname = "ok"\nfunction = "tandem.null"\n' > fails.toml
run 2 fails.toml --run-dir r-fails > out.txt 2> err.txt
check "a run with a failed task exits non-zero" test $? -ne 0
check "the failure is in the summary" contains r-fails/summary.json '"failed": 1'
check "the failure is on stderr" contains err.txt "task bad[0] FAILED after 1 attempt(s): exited with code 1"

run 3 wide.toml --run-dir r-wide > out.txt 2> err.txt
check "an impossible layout fails at start" test $? -ne 0
check "... with an error naming the layout key" contains err.txt "layout.workers"
check "... before a run directory exists" test ! -e r-wide/journal.jsonl

# --- the workstation job script ---------------------------------------------
TANDEM="$tandem" bash "$(dirname "$0")/../../jobscripts/local.sh" good.toml 3 --run-dir r-local \
  > out.txt 2> err.txt
check "jobscripts/local.sh runs a workflow" test $? -eq 0
check "... to the end" contains r-local/summary.json '"done": 6'
check "... recording the allocation (none here)" contains r-local/allocation.json '"system": "none"'

# --- SIGTERM in the middle, then --resume ---------------------------------
cat > long.toml <<TOML
[job]
name = "long"
[[task]]
name = "quick"
command = ["/bin/sh", "-c", "echo x >> \$TANDEM_RUN_DIR/quick.{index}"]
count = 4
[[task]]
name = "slow"
command = ["/bin/sh", "-c", "if [ -f \$TANDEM_RUN_DIR/go ]; then echo x >> \$TANDEM_RUN_DIR/slow.{index}; else sleep 60.0417; fi"]
count = 3
after = ["quick"]
TOML
"$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run long.toml --run-dir r-long > out-long.txt 2> err-long.txt &
mpipid=$!
for _ in $(seq 100); do  # wait until the slow tasks run
  [ "$(grep -c '"DONE"' r-long/journal.jsonl 2>/dev/null)" = 4 ] && break
  sleep 0.1
done
sleep 0.5
kill -TERM $mpipid
wait $mpipid
code=$?
check "an interrupted run exits non-zero" test $code -ne 0
check "the interrupt is logged" contains err-long.txt "received signal 15"
check "the quick tasks are DONE in the journal" test "$(grep -c '"DONE"' r-long/journal.jsonl)" = 4
check "the slow tasks are CANCELED in the journal" \
  test "$(grep -c '"CANCELED"' r-long/journal.jsonl)" = 3
check "no slow task outlived the run" test -z "$(pgrep -f "sleep 60.0417" || true)"
touch r-long/go
run 3 long.toml --run-dir r-long --resume > out.txt 2> err.txt
check "the resumed run exits 0" test $? -eq 0
check "the resumed run skipped the finished tasks" contains r-long/summary.json '"done_earlier": 4'
for i in 0 1 2 3; do
  check "quick $i ran exactly once" test "$(wc -l < r-long/quick.$i)" = 1
done
for i in 0 1 2; do
  check "slow $i ran exactly once after resume" test "$(wc -l < r-long/slow.$i)" = 1
done

finish cli
