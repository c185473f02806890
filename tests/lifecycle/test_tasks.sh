#!/usr/bin/env bash
# Model versions from executable tasks, through their worker's proxy: a
# Python, a C and a Fortran task in turn each load the next version of a
# service (version N multiplies by N) and check the versions in the replies;
# then the run's summary, metrics and report show the versions.
# Usage: test_tasks.sh SOURCE_DIR TANDEM VERSIONS_C VERSIONS_F|- MODELS_DIR MPIEXEC
set -uo pipefail
src=$1
tandem=$2
task_c=$3
task_f=$4
models=$5
mpiexec=$6
python=/usr/bin/python3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-lifecycle-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

cat > versions.toml << TOML
[job]
name = "versions"
[[service]]
name = "t"
backend = "torchscript"
model = "$models/times2.pt"
model_version = 2
inputs = [{ name = "x", dtype = "FP32", shape = [-1, 4] }]
outputs = [{ name = "y", dtype = "FP32", shape = [-1, 4] }]
[[task]]
name = "python"
command = ["$python", "$src/tests/lifecycle/versions_task.py", "$models"]
[[task]]
name = "c"
command = ["$task_c", "3", "4", "$models/times4.pt"]
after = ["python"]
TOML
last=4
if [ "$task_f" != "-" ]; then
  cat >> versions.toml << TOML
[[task]]
name = "fortran"
command = ["$task_f", "4", "5", "$models/times5.pt"]
after = ["c"]
TOML
  last=5
fi
"$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run versions.toml --run-dir run \
  --log-level warn > run.out 2> run.err
rc=$?
check "the run succeeds (exit $rc)" test $rc -eq 0
[ $rc -eq 0 ] || { cat run.err run/tasks/*/*.err >&2; }
check "the Python task swapped 2 -> 3" grep -q "versions 2 -> 3" run/tasks/python/0.out
check "the C task swapped 3 -> 4" grep -q "versions 3 -> 4" run/tasks/c/0.out
if [ "$task_f" != "-" ]; then
  check "the Fortran task swapped 4 -> 5" grep -q "versions 4 -> 5" run/tasks/fortran/0.out
fi
"$python" - run "$last" << 'PY'
import json, sys
run, last = sys.argv[1], int(sys.argv[2])
replica = json.load(open(f"{run}/summary.json"))["services"]["t"]["replicas"][0]
got = [v["version"] for v in replica["versions"]]
want = list(range(2, last + 1))
assert got == want, (got, want)
assert all(v["requests"] > 0 for v in replica["versions"]), replica["versions"]
assert len(replica["version_errors"]) == 1 and "wrong_shape.pt" in replica["version_errors"][0]
PY
check "summary.json has each version with its requests" test $? -eq 0
check "metrics.prom labels the served version" \
  grep -q "tandem_service_model_version{service=\"t\",replica=\"0\",version=\"$last\"} $last" \
  run/metrics.prom
"$tandem" report run > report.txt 2>&1
check "tandem report lists the versions" grep -q "model versions" report.txt
finish "lifecycle.tasks"
