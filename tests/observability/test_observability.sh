#!/usr/bin/env bash
# The trace, the report, the live progress and the metrics file of real runs
# under mpiexec; the HTML report rendered by headless Chromium.
# Usage: test_observability.sh TANDEM TEST_TASKS_LIB MPIEXEC
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-obs-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
status=0
fail() {
  echo "FAIL: $*" >&2
  status=1
}

# A known workflow: 10 tasks that send 3 requests each (2 rows apiece) to a
# batching service, 4 command tasks, one that fails for good; 4 ranks:
# coordinator, service, 2 workers.
cat > known.toml << TOML
[job]
name = "known"
libraries = ["$tasks_lib"]
[job.monitor]
metrics_interval = 0.2
progress_interval = 0.3
[[service]]
name = "double"
backend = "scale"
max_batch = 8
max_delay_us = 500
[[task]]
name = "infer"
function = "test_infer"
count = 10
args = { service = "double", factor = 2.0, requests = 3 }
[[task]]
name = "nap"
count = 4
command = ["/bin/sleep", "0.4"]
[[task]]
name = "broken"
command = ["/bin/false"]
TOML
"$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run known.toml > run.out 2> run.err
rc=$?
[ $rc -eq 1 ] || fail "the run with a failing task exits 1 (got $rc)"
run_dir=$(ls -d runs/known-*)
[ -f "$run_dir/trace.h5" ] || fail "no trace.h5"
[ -f "$run_dir/trace.json" ] || fail "no trace.json"
grep -q "progress: tasks" run.err || fail "no progress line on stderr"
# Two workers of one slot run at most two tasks; what they hold beyond is queued.
max_running=$(grep -o "[0-9]* running, [0-9]* queued" run.err | awk '{print $1}' | sort -n | tail -1)
[ -n "$max_running" ] && [ "$max_running" -le 2 ] ||
  fail "progress shows '${max_running:-no}' running with 2 workers of one slot"
"$tandem" report "$run_dir" > report.txt || fail "tandem report exits non-zero"
"$tandem" report "$run_dir" --json > report.json || fail "tandem report --json exits non-zero"
grep -q "service 'double' (scale): 30 requests" report.txt || fail "the text report counts the requests"
html=$("$tandem" report "$run_dir" --html) || fail "tandem report --html exits non-zero"
[ "$html" = "$run_dir/report.html" ] || fail "report --html prints the page's path (got $html)"

"$python" "$here/check_observability.py" "$run_dir" report.json run.err || status=1

# The page in a real browser: headless Chromium takes a screenshot, which
# must show the page's text and pictures, not a blank window.
if ! command -v chromium > /dev/null; then
  fail "chromium is not installed (scripts/setup-deps installs it)"
else
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1200,1600 --screenshot="$work/report.png" "file://$work/$run_dir/report.html" \
    > chromium.log 2>&1 || fail "chromium could not render the report: $(tail -3 chromium.log)"
  "$python" "$here/check_screenshot.py" "$work/report.png" || status=1
fi

# --no-trace: no trace files, the run and its report still work.
"$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run known.toml --no-trace --run-dir untraced \
  > /dev/null 2>&1
[ ! -e untraced/trace.h5 ] || fail "--no-trace still wrote trace.h5"
"$tandem" report untraced | grep -q "no trace.h5" || fail "the report says when there is no trace"

# A resumed run: the report lists both jobs and counts the requests of
# both (the second job only reruns the failed task, so it sends none).
"$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run known.toml --resume --run-dir "$run_dir" \
  > /dev/null 2>&1
"$tandem" report "$run_dir" > resumed.txt || fail "tandem report on a resumed run exits non-zero"
grep -q "^jobs: 2 worked on this run" resumed.txt || fail "the report lists the two jobs: $(head -5 resumed.txt)"
grep -q "service 'double' (scale): 0 requests in the last job, 30 in all 2 jobs" resumed.txt ||
  fail "the report counts the requests of both jobs: $(grep "service 'double'" resumed.txt)"
"$tandem" report "$run_dir" --json | "$python" -c "
import json, sys
r = json.load(sys.stdin)
assert [j['requests'].get('double') for j in r['jobs']] == [30, 0], r['jobs']
assert r['services'][0]['requests_all_jobs'] == 30, r['services'][0]
" || fail "report --json has both jobs and their requests"
"$tandem" report "$run_dir" --html > /dev/null && grep -q "<h2>Jobs</h2>" "$run_dir/report.html" ||
  fail "the HTML report has the jobs"

# A report on something that is not a run directory is a clear error.
"$tandem" report "$work/nowhere" > /dev/null 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "report on a missing directory exits 2 (got $rc)"
grep -q "summary.json does not exist" err.txt || fail "report names the missing summary.json"

[ $status -eq 0 ] && echo "observability: all checks passed"
exit $status
