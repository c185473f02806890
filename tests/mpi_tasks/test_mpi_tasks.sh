#!/usr/bin/env bash
# MPI programs as command tasks (issue 19): `ranks = N` starts the program on
# N reserved workers through a nested launcher (mpirun here; srun under
# Slurm, tests/slurm/). The allreduce sees all ranks and the environment the
# task asked for; a rank that aborts fails the attempt with its exit code and
# retries; a flaky program passes on its retry; a hung one is killed at its
# timeout with none of its ranks left; every rank reaches a service through
# its node's proxy; single-rank tasks share the workers meanwhile; and a job
# interrupted while an MPI task runs leaves no rank behind.
# Usage: test_mpi_tasks.sh TANDEM MPI_TASK MPIEXEC
set -uo pipefail
tandem=$1
mpi_task=$2
mpiexec=$3
python=/usr/bin/python3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-mpi-tasks-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cd "$work"
mkdir hang flaky
# py EXPR JOURNAL: a Python expression over the journal's lines `j`.
py() {
  "$python" -c "import json,sys; j=[json.loads(l) for l in open(sys.argv[1])]; print($1)" "$2"
}
# alive PID_FILE...: the pids named in the files that still run.
alive() {
  local f
  for f in "$@"; do kill -0 "$(cat "$f")" 2> /dev/null && echo "$(cat "$f")"; done
}

cat > tasks.toml << TOML
[job]
name = "mpi-tasks"
kill_grace = 1.0
[layout]
workers = 4
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "sum"
command = ["$mpi_task", "sum", "1"]
ranks = 4
[[task]]
name = "threads"
command = ["$mpi_task", "sum", "2"]
ranks = 2
cores_per_rank = 2
[[task]]
name = "abort"
command = ["$mpi_task", "abort", "7"]
ranks = 2
retries = 1
[[task]]
name = "flaky"
command = ["$mpi_task", "flaky", "$work/flaky"]
ranks = 3
retries = 1
[[task]]
name = "hang"
command = ["$mpi_task", "hang", "$work/hang"]
ranks = 2
timeout = 4
[[task]]
name = "service"
command = ["$mpi_task", "service", "64"]
ranks = 4
[[task]]
name = "single"
command = ["/bin/sh", "-c", "echo one rank: \$TANDEM_TASK_RANKS"]
count = 6
TOML
timeout 300 "$mpiexec" "${mpiexec_flags[@]}" -n 6 "$tandem" run tasks.toml --run-dir run \
  --log-level warn > run.out 2> run.err
rc=$?
check "the run ends with failed tasks (exit $rc)" test $rc -ne 0 -a $rc -ne 124
[ -f run/journal.jsonl ] || { tail -20 run.err >&2; }
journal=run/journal.jsonl
check "the allreduce ran on 4 ranks" test "$(grep -c "of 4 on" run/tasks/sum/0.out)" = 4
check "each rank of the allreduce printed once" \
  test "$(sed -n 's/^rank \([0-9]\) of 4.*/\1/p' run/tasks/sum/0.out | sort | tr -d '\n')" = 0123
check "cores_per_rank = 2 sets OMP_NUM_THREADS=2" \
  test "$(grep -c "of 2 on" run/tasks/threads/0.out)" = 2
check "an aborting rank fails the task with its exit code, after its retry" \
  test "$(py "[(d['exit_code'], d['attempts']) for d in j if d['task']=='abort' and d.get('state')=='FAILED']" $journal)" = "[(7, 2)]"
check "a flaky MPI program passes on its retry" \
  test "$(py "[d['attempts'] for d in j if d['task']=='flaky' and d.get('state')=='DONE']" $journal)" = "[2]"
check "a hung MPI program times out" \
  test "$(py "['timed out' in d['reason'] for d in j if d['task']=='hang' and d.get('state')=='FAILED']" $journal)" = "[True]"
check "the hung program had both ranks" test -f hang/pid.0 -a -f hang/pid.1
check "none of the hung program's ranks is left" test -z "$(alive hang/pid.*)"
check "every rank reached the service" grep -q "^4 ranks served" run/tasks/service/0.out
check "single-rank tasks ran beside them" \
  test "$(cat run/tasks/single/*.out | grep -c "one rank: 1")" = 6
check "everything else is DONE" \
  test "$(py "sorted(d['task'] for d in j if d.get('state')=='DONE')" $journal)" = \
  "['flaky', 'service', 'single', 'single', 'single', 'single', 'single', 'single', 'sum', 'threads']"
[ $failed -eq 0 ] || { tail -20 run.err >&2; cat run/tasks/*/*.err >&2; }

# --- interrupted while an MPI program runs -------------------------------
rm -f hang/pid.*
cat > interrupt.toml << TOML
[job]
name = "mpi-interrupt"
kill_grace = 1.0
[layout]
workers = 2
[[task]]
name = "hang"
command = ["$mpi_task", "hang", "$work/hang"]
ranks = 2
TOML
timeout 120 "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$tandem" run interrupt.toml --run-dir stop \
  --log-level warn > stop.out 2> stop.err &
job=$!
for _ in $(seq 300); do [ -f hang/pid.1 ] && break; sleep 0.1; done
check "the MPI program started" test -f hang/pid.1
kill -TERM $job
wait $job
rc=$?
check "the interrupted run exits non-zero (exit $rc)" test $rc -ne 0 -a $rc -ne 124
# Open MPI's mpirun SIGKILLs its ranks a second after it forwards SIGTERM:
# a worker killed before its launcher ended leaves it a SIGTERM of its own
# (setpriv --pdeathsig), and the launcher stops the ranks.
for _ in $(seq 100); do [ -z "$(alive hang/pid.*)" ] && break; sleep 0.1; done
check "none of its ranks is left after the interrupt" test -z "$(alive hang/pid.*)"
check "no launcher is left either" sh -c "! pgrep -f '[m]pirun.*mpi_task hang $work' > /dev/null"
# CANCELED when the worker reported in time, else nothing: never DONE or
# FAILED, so that a resume runs it again.
check "the task is CANCELED in the journal, or not in it" \
  test "$(py "[d.get('state') for d in j]" stop/journal.jsonl | sed 's/\[.CANCELED.\]/[]/')" = "[]"
finish "mpi_tasks"
