#!/usr/bin/env bash
# Executable tasks reaching the services through their worker's proxy:
# the C, Python and Fortran clients against the C++ client, many tasks and
# requests per worker at once, tasks that misbehave, and the errors at start
# for a socket path too long or a socket directory that is not private.
# Usage: test_proxy.sh SOURCE_DIR BUILD_DIR TANDEM TEST_TASKS_LIB PROXY_TASK MPIEXEC
set -uo pipefail
src=$1
build=$2
tandem=$3
tasks_lib=$4
proxy_task=$5
mpiexec=$6
python=/usr/bin/python3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-proxy-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
run() { # run WORKFLOW RUN_DIR NP: tandem run, quietly; the exit code
  "$mpiexec" "${mpiexec_flags[@]}" -n "$3" "$tandem" run "$1" --run-dir "$2" --log-level warn \
    > "$2.out" 2> "$2.err"
}

# --- the same answers from C, Python, Fortran and C++ ----------------------
sed -e "s|\${ANY_LANGUAGE_BUILD:-build}|$build/examples/any-language|" \
  -e "s|\"closure.py\"|\"$src/examples/any-language/closure.py\"|" \
  -e "s|\"compare.py\"|\"$src/examples/any-language/compare.py\"|" \
  -e "s|\"../surrogate-ensemble/closure_mlp.pt\"|\"$src/examples/surrogate-ensemble/closure_mlp.pt\"|" \
  "$src/examples/any-language/workflow.toml" > languages.toml
cat >> languages.toml << TOML
[[task]]
name = "cpp"
function = "test_closure_grid"
TOML
sed -i "s|^\[job\]|[job]\nlibraries = [\"$tasks_lib\"]|" languages.toml
run languages.toml languages 4
check "the any-language workflow runs (exit $?)" test -f languages/summary.json
check "C, Python and Fortran agree" grep -q "largest difference" languages/tasks/compare/0.out
"$python" - languages << 'PY'
import sys
import numpy as np
run = sys.argv[1]
cpp = np.loadtxt(f"{run}/tasks/cpp/cpp.txt")
bad = []
for name in ("c", "python", "fortran"):
    other = np.loadtxt(f"{run}/tasks/{name}/0.out")
    if other.shape != cpp.shape or np.abs(other - cpp).max() > 1e-6:
        bad.append(name)
if bad:
    sys.exit(f"differ from the C++ client: {bad}")
print(f"C, Python and Fortran match the C++ client on {len(cpp)} points")
PY
check "each language matches the C++ client" test $? -eq 0
check "the socket directory is private" test "$(stat -c %a languages/sockets)" = 700

# --- many tasks per worker, and tasks that misbehave ----------------------
cat > faults.toml << TOML
[job]
name = "faults"
[layout]
worker_slots = 8
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "check"
command = ["$proxy_task", "check", "2"]
count = 16
[[task]]
name = "big"
command = ["$proxy_task", "check", "65536"]
count = 4
[[task]]
name = "flood"
command = ["$proxy_task", "flood", "1000"]
count = 4
[[task]]
name = "twice"
command = ["$proxy_task", "twice"]
[[task]]
name = "garbage"
command = ["$proxy_task", "garbage"]
[[task]]
name = "huge-frame"
command = ["$proxy_task", "huge-frame"]
[[task]]
name = "die"
command = ["$proxy_task", "die-mid-request"]
count = 4
[[task]]
name = "unknown"
command = ["$proxy_task", "unknown-service"]
[[task]]
name = "no-socket"
command = ["$proxy_task", "no-socket"]
[[task]]
name = "deadline"
command = ["$proxy_task", "deadline"]
[[task]]
name = "direct-garbage"
command = ["$build/tests/direct_task"]
[[task]]
name = "after"
command = ["$proxy_task", "check", "3"]
count = 8
after = ["garbage", "huge-frame", "die", "flood", "direct-garbage"]
TOML
run faults.toml faults 4
rc=$?
check "every proxy task succeeded (exit $rc)" test $rc -eq 0
if [ $rc -ne 0 ]; then
  # Which tasks did not finish, and why: the journal says.
  grep -hv '"state":"DONE"' faults/journal.jsonl 2> /dev/null | head -5 >&2
  grep -h "proxy_task" faults/tasks/*/*.err >&2 2> /dev/null | head -5
  grep -h "error\|warn" faults.err 2> /dev/null | head -10 >&2
  tail -5 faults.err >&2
fi
check "43 tasks done" test "$("$python" -c "import json; print(json.load(open('faults/summary.json'))['tasks']['done'])")" = 43
check "deadlines through the proxy" grep -q "as they should be" faults/tasks/deadline/0.out
check "bad messages on the direct path were answered" \
  grep -q "answered every bad message and went on" faults/tasks/direct-garbage/0.out
check "the floods were answered" test "$(cat faults/tasks/flood/*.out | grep -c 'flood: 1000 requests answered')" = 4
check "the proxy logged the 1 TiB frame" grep -q "frame length past" faults/logs/rank-0000*.log
check "no socket is left behind" test -z "$(ls faults/sockets)"
stale=0
for segment in /dev/shm/tandem.*; do
  [ -e "$segment" ] || continue
  pid=${segment#/dev/shm/tandem.}
  pid=${pid%%.*}
  kill -0 "$pid" 2> /dev/null || stale=$((stale + 1))
done
check "no shared memory of dead tasks is left ($stale segments)" test $stale -eq 0

# --- the direct path: every dtype, 1 B to 256 MiB, three ways -------------
cat > matrix.toml << TOML
[job]
name = "matrix"
libraries = ["$tasks_lib"]
[[service]]
name = "echo"
backend = "echo"
[[task]]
name = "c"
command = ["$proxy_task", "matrix"]
[[task]]
name = "cpp"
function = "test_echo_matrix"
after = ["c"]
TOML
run matrix.toml matrix 3
rc=$?
check "the echo matrix ran (exit $rc)" test $rc -eq 0
[ $rc -eq 0 ] || cat matrix/tasks/c/*.err >&2
check "84 sizes and dtypes each way" test "$(wc -l < matrix/tasks/c/0.out)" = 84
check "direct path, proxy and in-process client agree" cmp matrix/tasks/c/0.out matrix/tasks/cpp/cpp.txt

# --- a replica that dies with direct-path requests in it --------------------
# The model segfaults on a batch of exactly 3 rows; the executable task
# "bad" sends 3 rows on the direct path, the others 2 (max_batch = 3 keeps
# their requests out of its batch). The job ends; the resume charges "bad"
# through the worker rank its slot named, and every other task is done once.
cat > dies.toml << TOML
[job]
name = "dies"
[[service]]
name = "double"
backend = "scale"
max_batch = 3
crash_on_rows = 3
[[task]]
name = "ok"
command = ["$proxy_task", "check", "2"]
count = 4
[[task]]
name = "bad"
command = ["$proxy_task", "check", "3"]
TOML
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run dies.toml --run-dir dies \
  --log-level warn > dies-1.out 2>&1
rc1=$?
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run dies.toml --run-dir dies --resume \
  --log-level warn > dies-2.out 2>&1
rc2=$?
check "the replica's crash ends the job (exit $rc1)" test "$rc1" -ne 0 -a "$rc1" -ne 1 -a "$rc1" -ne 124
check "the dying replica names the batch it served" grep -q "while serving a batch for 1 client(s)" dies-1.out
check "the resume fails only bad, for the replica's crash (exit $rc2)" test "$rc2" -eq 1
"$python" - dies/journal.jsonl << 'PY'
import collections, json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
failed = [(r["task"], r["index"]) for r in records
          if r.get("state") == "FAILED" and "service replica rank" in r.get("reason", "")]
done = collections.Counter(r["index"] for r in records if r["task"] == "ok" and r.get("state") == "DONE")
if failed != [("bad", 0)] or sorted(done) != [0, 1, 2, 3] or max(done.values()) != 1:
    sys.exit(f"failed {failed}, ok done {dict(done)}")
PY
check "bad is charged, every ok instance DONE exactly once" test $? -eq 0

# --- Python: async, zero-copy outputs, JSON calls, errors -------------------
"$python" "$src/tests/support/openai_test_server.py" --port-file "$work/llm.port" &
llm_pid=$!
for _ in $(seq 100); do [ -f "$work/llm.port" ] && break; sleep 0.05; done
cat > python.toml << TOML
[job]
name = "python"
[[service]]
name = "double"
backend = "scale"
[[service]]
name = "llm"
backend = "remote"
protocol = "openai"
url = "http://127.0.0.1:$(cat "$work/llm.port")"
[[task]]
name = "py"
command = ["$python", "$src/tests/proxy/python_task.py"]
count = 3
TOML
run python.toml python 5
rc=$?
kill "$llm_pid" 2> /dev/null
check "the Python tasks passed (exit $rc)" test $rc -eq 0
[ $rc -eq 0 ] || cat python/tasks/py/*.err >&2
check "each said so" test "$(cat python/tasks/py/*.out | grep -c 'all checks passed')" = 3

# --- errors at start -------------------------------------------------------
long=/tmp/$(printf 'x%.0s' $(seq 120))
sed -e "s|^\[layout\]|[job.proxy]\nsocket_dir = \"$long\"\n[layout]|" faults.toml > long.toml
run long.toml long 4
rc=$?
check "a socket path too long stops the run at start (exit $rc)" test $rc -eq 2
check "the error says why" grep -q "longer than the 107 a Unix socket allows" long.out long.err
rm -rf "$long"

mkdir -m 755 open-dir
sed -e "s|^\[layout\]|[job.proxy]\nsocket_dir = \"$work/open-dir\"\n[layout]|" faults.toml > open.toml
run open.toml open 4
rc=$?
check "a socket directory others may enter stops the run (exit $rc)" test $rc -eq 2
check "the error names the mode" grep -q "has mode 755; it must be private (0700)" open.out open.err

finish proxy
