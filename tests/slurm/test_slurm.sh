#!/usr/bin/env bash
# The job scripts under a real Slurm: brings up a private single-node
# cluster (tests/slurm/cluster.sh), submits jobscripts/slurm-srun.sbatch and
# jobscripts/slurm-mpirun.sbatch with sbatch, waits by polling
# `scontrol show job`, checks the run directories, then runs a job into its
# time limit and a second job that resumes it. Tears the cluster down at the
# end, whatever happened.
#
# Also MPI programs as tasks (tests/mpi_tasks/mpi_task.c): `srun` job steps
# with --overlap inside the job's allocation.
#
# Usage: test_slurm.sh TANDEM TEST_TASKS_LIB SPMD_C_APP MPI_TASK
# Exits 77 (skipped) where it cannot run: not root, or no Slurm packages
# and no way to install them.
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
spmd_app=$(readlink -f "$3")
mpi_task=$(readlink -f "$4")
here=$(cd "$(dirname "$0")" && pwd)
jobscripts=$(cd "$here/../../jobscripts" && pwd)

source "$here/slurm_jobs.sh"
start_test_cluster 1
source "$lab/env.sh"
export TANDEM=$tandem
source "$here/../support/shell_test.sh"
cd "$work"

# --- a workflow with a service, under srun and under mpirun --------------
cat > serving.toml << TOML
[job]
name = "serving"
libraries = ["$tasks_lib"]
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "env"
command = ["/bin/sh", "-c", "echo job=\$SLURM_JOB_ID"]
[[task]]
name = "infer"
function = "test_infer"
count = 20
args = { service = "double", factor = 2.0 }
TOML
# The scripts ask for two nodes of 32 tasks; a user shrinks that on the
# command line exactly like this.
srun_job=$(sbatch --parsable --nodes=1 --ntasks-per-node=4 --time=5 "$jobscripts/slurm-srun.sbatch" serving.toml)
mpirun_job=$(sbatch --parsable --nodes=1 --ntasks=4 --time=5 "$jobscripts/slurm-mpirun.sbatch" serving.toml)
# A layout that does not fit the allocation: the script's `tandem plan`
# stops it before any rank starts.
cat > toobig.toml << 'TOML'
[job]
name = "toobig"
[[service]]
name = "echo"
backend = "echo"
replicas = 4
[[task]]
name = "t"
function = "tandem.null"
TOML
toobig_job=$(sbatch --parsable --nodes=1 --ntasks-per-node=3 --time=5 "$jobscripts/slurm-srun.sbatch" toobig.toml)

# An MPI application of our own with a session (SPMD mode): its job script.
cat > spmd.toml << 'TOML'
[job]
name = "spmd"
[[service]]
name = "double"
backend = "scale"
TOML
spmd_job=$(sbatch --parsable --nodes=1 --ntasks-per-node=4 --time=5 \
  "$jobscripts/slurm-spmd.sbatch" "$spmd_app" spmd.toml)

# MPI programs as tasks: `launcher = "auto"` is srun inside the allocation.
mkdir -p hang
cat > mpitasks.toml << TOML
[job]
name = "mpitasks"
kill_grace = 1.0
gpus_per_node = 2
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "sum"
command = ["$mpi_task", "sum", "1"]
ranks = 4
[[task]]
name = "abort"
command = ["$mpi_task", "abort", "7"]
ranks = 2
[[task]]
name = "hang"
command = ["$mpi_task", "hang", "$work/hang"]
ranks = 2
timeout = 5
[[task]]
name = "service"
command = ["$mpi_task", "service", "16"]
ranks = 4
[[task]]
name = "gpus"
command = ["/bin/sh", "-c", "echo \"\$SLURM_PROCID gpu \$CUDA_VISIBLE_DEVICES\""]
ranks = 2
gpus_per_rank = 1
TOML
mpitasks_job=$(sbatch --parsable --nodes=1 --ntasks-per-node=6 --time=5 \
  "$jobscripts/slurm-srun.sbatch" mpitasks.toml)

for launcher in srun mpirun; do
  var=${launcher}_job
  id=${!var}
  result=$(wait_job "$id" 120)
  run_dir=runs/serving-$id
  check "$launcher job $id completed with exit 0 (got $result)" test "$result" = "COMPLETED 0:0" ||
    show_output "$id" "tandem-$id.out"
  check "$launcher: the run directory is named after the job" test -f "$run_dir/summary.json"
  [ -f "$run_dir/summary.json" ] || continue
  check "$launcher: all 21 tasks done" test "$(json "$run_dir/summary.json" "d['tasks']['done']")" = 21
  check "$launcher: summary has Slurm's job id" \
    test "$(json "$run_dir/summary.json" "d['allocation']['system'], d['allocation']['job_id']")" = "slurm $id"
  check "$launcher: allocation.json has the tasks" \
    test "$(json "$run_dir/allocation.json" "d['tasks'], d['node_count']")" = "4 1"
  check "$launcher: a coordinator, a service rank and 2 workers in 4 ranks" \
    test "$(json "$run_dir/summary.json" "d['world_size'], d['workers'], len(d['services'])")" = "4 2 1"
  check "$launcher: every inference task checked its replies" \
    test "$(cat "$run_dir"/tasks/infer/infer.* 2> /dev/null | grep -c '^ok 1$')" = 20
  check "$launcher: command tasks see the job's environment" \
    grep -qx "job=$id" "$run_dir/tasks/env/0.out"
done

result=$(wait_job "$spmd_job" 120)
check "the SPMD job $spmd_job completed with exit 0 (got $result)" test "$result" = "COMPLETED 0:0" ||
  show_output "$spmd_job" "tandem-spmd-$spmd_job.out"
check "the application's ranks checked their replies" grep -q "spmd_c: all replies right" \
  "tandem-spmd-$spmd_job.out"
check "the session's run directory is named after the job" test -f "runs/spmd-$spmd_job/summary.json"
# 50 requests from each of the 2 application ranks, and 2 collective calls
# (infer_all) in which only one rank has a row: one request each.
check "tandem report reads the session's run" \
  sh -c "'$tandem' report runs/spmd-$spmd_job | grep -q \"service 'double' (scale): 102 requests\""

result=$(wait_job "$mpitasks_job" 180)
run_dir=runs/mpitasks-$mpitasks_job
check "the MPI tasks job $mpitasks_job ended with exit 1: two tasks fail (got $result)" \
  test "$result" = "FAILED 1:0" || show_output "$mpitasks_job" "tandem-$mpitasks_job.out"
check "srun: the allreduce ran on 4 ranks of one step" \
  test "$(grep -c "of 4 on" "$run_dir/tasks/sum/0.out" 2> /dev/null)" = 4
check "srun: an aborting rank fails the task with its exit code" \
  test "$(json_lines "$run_dir/journal.jsonl" "[d['exit_code'] for d in L if d['task']=='abort']")" = "[7]"
check "srun: a hung program times out" \
  test "$(json_lines "$run_dir/journal.jsonl" "['timed out' in d['reason'] for d in L if d['task']=='hang']")" = "[True]"
check "srun: none of the hung program's ranks is left" \
  sh -c 'for f in hang/pid.*; do kill -0 "$(cat "$f")" 2> /dev/null && exit 1; done; test -f hang/pid.1'
check "srun: every rank reached the service through its proxy" \
  grep -q "^4 ranks served" "$run_dir/tasks/service/0.out"
check "srun: the program was a job step of its own, not the job's step 0" \
  test "$(sed -n 's/.* step \([0-9]*\)$/\1/p' "$run_dir/tasks/sum/0.out" | sort -u | tr '\n' ' ')" != "0 "
check "srun: each rank of a step got a GPU of its own ($(sort "$run_dir/tasks/gpus/0.out" 2> /dev/null | tr '\n' ' '))" \
  test "$(cut -d' ' -f3 "$run_dir/tasks/gpus/0.out" 2> /dev/null | sort -u | tr '\n' ' ')" = "0 1 "
check "srun: all its ranks in that one step" \
  test "$(sed -n 's/.* step \([0-9]*\)$/\1/p' "$run_dir/tasks/sum/0.out" | sort -u | wc -l)" = 1

result=$(wait_job "$toobig_job" 60)
check "a layout that does not fit fails the job (got $result)" test "${result%% *}" = FAILED
check "the job output says why" grep -q "the layout needs at least 6" "tandem-$toobig_job.out" ||
  show_output "$toobig_job" "tandem-$toobig_job.out"
check "no rank started: no run directory" test ! -e "runs/toobig-$toobig_job"

# --- jobs that run into their time limit, and one that finishes ----------
time_limit_drain_and_resume 1 4

# --- a poison task inside one allocation ------------------------------------
# One instance segfaults its rank each time it runs; 200 others are good.
# The job script's `tandem supervise` relaunches the job with --resume
# after each death; the poison task is charged each time and FAILED after
# its retries, and the whole run finishes inside this one sbatch.
cat > poison.toml << TOML
[job]
name = "poison"
libraries = ["$tasks_lib"]
[[task]]
name = "sim"
function = "test_misbehave"
count = 201
retries = 1
args = { bad_index = 100, how = "segv" }
TOML
# A five-minute allocation: relaunch while 30 s are left (the default, 300 s,
# suits real jobs).
poison=$(TANDEM_MIN_TIME_LEFT=30 sbatch --parsable --nodes=1 --ntasks-per-node=4 --time=5 \
  "$jobscripts/slurm-srun.sbatch" poison.toml)
result=$(wait_job "$poison" 240)
run_dir=runs/poison-$poison
check "the poison job $poison ended with exit 1: a task FAILED, none lost (got $result)" \
  test "$result" = "FAILED 1:0" || show_output "$poison" "tandem-$poison.out"
check "supervise relaunched it twice inside the allocation" \
  test "$(grep -c 'Relaunching with --resume' "tandem-$poison.out")" = 2
check "the poison task FAILED after retries + 1 = 2 attempts, both charged" \
  test "$(python3 -c "import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]; print(sum(1 for d in L if d.get('lost') and d['index']==100), [d['state'] for d in L if d.get('index')==100 and 'state' in d][-1])" "$run_dir/journal.jsonl")" = "2 FAILED"
check "every good task DONE exactly once" \
  test "$(python3 -c "import json,sys,collections; c=collections.Counter(d['index'] for d in map(json.loads, open(sys.argv[1])) if d.get('state')=='DONE'); print(len(c), set(c.values()), 100 in c)" "$run_dir/journal.jsonl")" = "200 {1} False"
check "history.jsonl has the three jobs of the allocation, the two that died marked so" \
  test "$(python3 -c "import json,sys; print([(d['allocation']['job_id'], d.get('ended_without_summary', False)) for d in map(json.loads, open(sys.argv[1]))])" "$run_dir/history.jsonl")" = "[('$poison', True), ('$poison', True), ('$poison', False)]"

# --- a worker rank killed with SIGKILL mid-run, inside an allocation ---------
# The rank dies without a word; the launcher stops the others, so the next
# job charges the instance the killed rank ran, and supervise relaunches.
cat > killed.toml << TOML
[job]
name = "killed"
[[task]]
name = "sim"
function = "tandem.sleep"
count = 60
retries = 1
args = { seconds = 0.2 }
TOML
killed=$(TANDEM_MIN_TIME_LEFT=30 sbatch --parsable --nodes=1 --ntasks-per-node=4 --time=5 \
  "$jobscripts/slurm-srun.sbatch" killed.toml)
run_dir=runs/killed-$killed
for _ in $(seq 600); do
  [ -f "$run_dir/journal.jsonl" ] && [ "$(wc -l < "$run_dir/journal.jsonl")" -ge 6 ] && break
  sleep 0.1
done
# The worker's pid, from its black box.
pid=$(rank_pid "$run_dir" 1)
check "the killed job's worker has a black box" test -n "$pid"
[ -n "$pid" ] && kill -KILL "$pid"
result=$(wait_job "$killed" 240)
check "the job with a killed worker finished inside its allocation (got $result)" \
  test "$result" = "COMPLETED 0:0" || show_output "$killed" "tandem-$killed.out"
check "supervise relaunched it once" test "$(grep -c 'Relaunching with --resume' "tandem-$killed.out")" = 1
check "the instance the killed rank ran is charged, naming SIGKILL" \
  test "$(python3 -c "import json,sys; print(sum(1 for d in map(json.loads, open(sys.argv[1])) if d.get('lost') and 'SIGKILL' in d['reason']))" "$run_dir/journal.jsonl")" = 1
check "every instance DONE exactly once" \
  test "$(python3 -c "import json,sys,collections; c=collections.Counter(d['index'] for d in map(json.loads, open(sys.argv[1])) if d.get('state')=='DONE'); print(len(c), set(c.values()))" "$run_dir/journal.jsonl")" = "60 {1}"

finish slurm
