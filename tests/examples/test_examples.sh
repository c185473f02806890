#!/usr/bin/env bash
# The examples run as a user runs them and say what they should.
# Usage: test_examples.sh SOURCE_DIR BUILD_DIR MPIEXEC
set -uo pipefail
src=$1
build=$2
mpiexec=$3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d "$build/examples-test-XXXXXX")
trap 'rm -rf "$work"' EXIT

# surrogate-ensemble: the default demo.
SURROGATE_ENSEMBLE_BUILD="$build/examples/surrogate-ensemble" "$mpiexec" "${mpiexec_flags[@]}" -n 4 \
  "$build/launcher/tandem" run "$src/examples/surrogate-ensemble/workflow.toml" \
  --run-dir "$work/surrogate" --log-level warn > "$work/surrogate.log" 2>&1
check "surrogate-ensemble exits 0" test $? -eq 0
report="$work/surrogate/tasks/report/0.out"
check "the report has the timing line" grep -q "time, all members: exact closure" "$report"
check "the report has latency percentiles" grep -qE "latency p50 [0-9]+ us, p95 [0-9]+ us, p99 [0-9]+ us" "$report"
err=$(grep -oP 'surrogate error on the final field: max \K[0-9.e+-]+' "$report")
check "the surrogate's error is below 5% ($err)" python3 -c "import sys; sys.exit(0 if float('$err') < 0.05 else 1)"
check "the service answered 1800 requests" grep -q '"requests": 1800' "$work/surrogate/summary.json"

# online-training: the surrogate improves while the members run.
(cd "$src/examples/online-training" && "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$build/launcher/tandem" run \
  workflow.toml --run-dir "$work/online" --log-level warn) > "$work/online.log" 2>&1
check "online-training exits 0" test $? -eq 0
/usr/bin/python3 "$src/tests/examples/check_online_training.py" "$work/online" 4
check "online-training's final surrogate error is 4x below its first" test $? -eq 0
check "the trainer swapped in 4 versions" test "$(grep -c '^version [2-5]: trained' "$work/online/tasks/train/0.out")" = 4
"$build/launcher/tandem" report "$work/online" --html > /dev/null 2>&1
check "the HTML report plots the error with the switches marked" \
  sh -c "grep -q 'Series <code>closure_error</code>' '$work/online/report.html' && grep -q 'closure v5' '$work/online/report.html'"

# active-learning: a thinker task submits simulations and training steps
# while the job runs, and stops at its error target.
(cd "$src/examples/active-learning" && "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$build/launcher/tandem" run \
  workflow.toml --run-dir "$work/active" --log-level warn) > "$work/active.log" 2>&1
check "active-learning exits 0" test $? -eq 0
check "the thinker met its error target" grep -qE '"task":"learn".*"result":\{.*"met": ?true' "$work/active/journal.jsonl"
check "it trained and swapped in at least two versions" \
  grep -q "surrogate v3, validation error" "$work/active/tasks/learn/0.out"
"$build/launcher/tandem" report "$work/active" > "$work/active.report" 2>&1
check "the report shows the rounds" grep -qE "learn\[0\] round +1 at .*12 x simulate, 1 x train; 13 done" "$work/active.report"
check "and the validation error series" grep -q "series 'validation_error'" "$work/active.report"

# spmd-coupling: an MPI application with a Session.
(cd "$src/examples/spmd-coupling" && SPMD_COUPLING_RUNS="$work/spmd-runs" "$mpiexec" "${mpiexec_flags[@]}" -n 5 \
  "$build/examples/spmd-coupling/spmd-coupling" job.toml) > "$work/spmd.log" 2>&1
check "spmd-coupling exits 0" test $? -eq 0
check "spmd-coupling reports its run" grep -qE "spmd-coupling: 3 ranks x 200 cells, 400 steps .* mass 0\.[0-9]+" "$work/spmd.log"
check "spmd-coupling wrote its summary" test -f "$(ls -d "$work"/spmd-runs/spmd-coupling-*/summary.json | head -1)"
check "spmd-coupling asked once per node and step (infer_all): 400 requests for 3 ranks" \
  test "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['services']['closure']['requests'])" \
    "$(ls -d "$work"/spmd-runs/spmd-coupling-*/summary.json | head -1)")" = 400
# The alternative, a request per rank: the same result.
(cd "$src/examples/spmd-coupling" && SPMD_COUPLING_RUNS="$work/spmd-rank-runs" "$mpiexec" "${mpiexec_flags[@]}" -n 5 \
  "$build/examples/spmd-coupling/spmd-coupling" job.toml --per-rank) > "$work/spmd-rank.log" 2>&1
check "spmd-coupling --per-rank exits 0" test $? -eq 0
rank_mass=$(grep -oP 'spmd-coupling: .* mass \K[0-9.]+(?=.*a request per rank)' "$work/spmd-rank.log")
one_mass=$(grep -oP 'spmd-coupling: .* mass \K[0-9.]+(?=.*one request per node)' "$work/spmd.log")
check "spmd-coupling: per-rank requests give infer_all's mass ($rank_mass, $one_mass)" \
  test -n "$one_mass" -a "$rank_mass" = "$one_mass"
# Too few ranks: a clean message, not an uncaught exception on every rank.
(cd "$src/examples/spmd-coupling" && SPMD_COUPLING_RUNS="$work/spmd-runs" "$mpiexec" "${mpiexec_flags[@]}" -n 2 \
  "$build/examples/spmd-coupling/spmd-coupling" job.toml) > "$work/spmd-small.log" 2>&1
check "spmd-coupling with too few ranks exits non-zero" test $? -ne 0
check "and says how many ranks it needs" grep -q "spmd-coupling: .*start it with mpirun -np 3 or more" "$work/spmd-small.log"
check "without an uncaught exception" sh -c "! grep -q 'terminate called' '$work/spmd-small.log'"

# mpi-program: an MPI program as a 4-rank task, through the workers' proxies
# and with an SPMD session of its own.
(cd "$src/examples/mpi-program" && MPI_PROGRAM_BUILD="$build/examples/mpi-program" \
  "$mpiexec" "${mpiexec_flags[@]}" -n 6 "$build/launcher/tandem" run workflow.toml \
  --run-dir "$work/mpiprog" --log-level warn) > "$work/mpiprog.log" 2>&1
check "mpi-program exits 0" test $? -eq 0
check "its ranks reached the job's service through their proxies" \
  grep -q "halo proxy: 4 ranks, every answer right" "$work/mpiprog/tasks/through-the-proxy/0.out"
check "and the service of a session of its own" \
  grep -q "halo session: 4 ranks, every answer right" "$work/mpiprog/tasks/own-session/0.out"
check "the session's run is inside the outer run" \
  test -f "$(ls -d "$work"/mpiprog/sessions/halo-session-*/summary.json | head -1)"

# python-ensemble: the same ensemble as Python function tasks in the workers.
(cd "$src/examples/python-ensemble" && "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$build/launcher/tandem" run \
  workflow.toml --run-dir "$work/pyens" --log-level warn) > "$work/pyens.log" 2>&1
check "python-ensemble exits 0" test $? -eq 0
report="$work/pyens/tasks/report/0.out"
check "its report has the timing line" grep -q "time, all members: surrogate" "$report"
err=$(grep -oP 'surrogate error on the final field: max \K[0-9.e+-]+' "$report")
check "its surrogate's error is below 5% ($err)" python3 -c "import sys; sys.exit(0 if float('$err') < 0.05 else 1)"
check "the report's return value is in the journal" grep -q '"task":"report".*"result":{"max_error"' "$work/pyens/journal.jsonl"
check "every member asked the service at every step (6 x 300)" grep -q '"requests": 1800' "$work/pyens/summary.json"

# mpi4py-coupling: the Python twin of spmd-coupling, with a tandem.Session.
(cd "$src/examples/mpi4py-coupling" && MPI4PY_COUPLING_RUNS="$work/mpi4py-runs" PYTHONPATH="$build/python" \
  "$mpiexec" "${mpiexec_flags[@]}" -n 5 /usr/bin/python3 coupling.py job.toml) > "$work/mpi4py.log" 2>&1
check "mpi4py-coupling exits 0" test $? -eq 0
py_mass=$(grep -oP 'mpi4py-coupling: 3 ranks x 200 cells, 400 steps .* mass \K[0-9.]+' "$work/mpi4py.log")
cxx_mass=$(grep -oP 'spmd-coupling: .* mass \K[0-9.]+' "$work/spmd.log")
check "mpi4py-coupling's mass ($py_mass) is spmd-coupling's ($cxx_mass)" \
  python3 -c "import sys; sys.exit(0 if abs(float('$py_mass') - float('$cxx_mass')) < 1e-5 else 1)"
(cd "$src/examples/mpi4py-coupling" && MPI4PY_COUPLING_RUNS="$work/mpi4py-runs" PYTHONPATH="$build/python" \
  "$mpiexec" "${mpiexec_flags[@]}" -n 2 /usr/bin/python3 coupling.py job.toml) > "$work/mpi4py-small.log" 2>&1
check "mpi4py-coupling with too few ranks exits non-zero" test $? -ne 0
check "and says how many ranks it needs" grep -q "mpi4py-coupling: .*start it with mpirun -np 3 or more" "$work/mpi4py-small.log"

# llm-agents: against a local OpenAI-compatible test server.
/usr/bin/python3 "$src/tests/support/openai_test_server.py" --port-file "$work/llm.port" &
llm_pid=$!
for _ in $(seq 100); do [ -f "$work/llm.port" ] && break; sleep 0.05; done
LLM_BASE_URL="http://127.0.0.1:$(cat "$work/llm.port")" LLM_AGENTS_BUILD="$build/examples/llm-agents" \
  "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$build/launcher/tandem" run "$src/examples/llm-agents/workflow.toml" \
  --run-dir "$work/llm" --log-level warn > "$work/llm.log" 2>&1
check "llm-agents exits 0" test $? -eq 0
kill "$llm_pid"
check "every agent held its conversation" test "$(ls "$work"/llm/tasks/agent/agent-*.json | wc -l)" = 6
check "the model's answers are in them" grep -q '"echo: What would you run next?"' "$work/llm/tasks/agent/agent-3.json"

finish examples
