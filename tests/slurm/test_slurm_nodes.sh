#!/usr/bin/env bash
# The job scripts on a 2-node Slurm on this machine (tests/slurm/cluster.sh
# with 2 fake nodes): `sbatch -N 2` of slurm-srun.sbatch and
# slurm-mpirun.sbatch with a per-node service, and the time-limit drain
# and resume of test_slurm.sh across the two nodes.
# Also an MPI program as a task across both nodes (an srun job step).
# Usage: test_slurm_nodes.sh TANDEM TEST_TASKS_LIB MPI_TASK
# Exits 77 (skipped) where it cannot run: not root, or no Slurm.
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
mpi_task=$(readlink -f "$3")
here=$(cd "$(dirname "$0")" && pwd)
jobscripts=$(cd "$here/../../jobscripts" && pwd)
# Ports of their own, so that it never meets the one-node cluster's daemons.
export TANDEM_SLURMCTLD_PORT=16917 TANDEM_SLURMD_PORT=16918

source "$here/slurm_jobs.sh"
start_test_cluster 2
source "$lab/env.sh"
export TANDEM=$tandem
# Between the fake nodes Open MPI talks TCP on loopback; on a real cluster
# this names the fabric's interface (docs/running-on-clusters.md).
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
source "$here/../support/shell_test.sh"
cd "$work"
node0=tandem-snode-0
node1=tandem-snode-1

# --- a per-node service under srun and under mpirun, on 2 nodes -----------
cat > pernode.toml << TOML
[job]
name = "pernode"
libraries = ["$tasks_lib"]
[[service]]
name = "echo"
backend = "echo"
placement = "per_node"
[[task]]
name = "ask"
function = "test_infer"
count = 20
args = { service = "echo", requests = 3 }
TOML
# One job after the other: together they would put 12 ranks on 2 cores.
for launcher in srun mpirun; do
  if [ "$launcher" = srun ]; then
    submit_and_wait 90 --nodes=2 --ntasks-per-node=3 --time=5 "$jobscripts/slurm-srun.sbatch" pernode.toml
  else
    submit_and_wait 90 --nodes=2 --ntasks=6 --ntasks-per-node=3 --time=5 \
      "$jobscripts/slurm-mpirun.sbatch" pernode.toml
  fi
  id=$job_id
  result=$job_result
  run_dir=runs/pernode-$id
  check "$launcher: sbatch -N 2 job $id completed (got $result)" test "$result" = "COMPLETED 0:0" ||
    show_output "$id" "tandem-$id.out"
  [ -f "$run_dir/summary.json" ] || continue
  check "$launcher: allocation.json names both nodes" \
    test "$(json "$run_dir/allocation.json" "d['node_count'], d['nodes']")" = "2 tandem-snode-[0-1]"
  check "$launcher: ranks 0-2 ran on $node0, 3-5 on $node1" \
    test "$(json "$run_dir/placement.json" "' '.join(r['host'] for r in d['ranks'])")" = \
    "$node0 $node0 $node0 $node1 $node1 $node1"
  check "$launcher: all 20 tasks done" test "$(json "$run_dir/summary.json" "d['tasks']['done']")" = 20
  for k in 0 1; do
    expected=$((3 * $(grep -lx "host tandem-snode-$k" "$run_dir"/tasks/ask/infer.* | wc -l)))
    check "$launcher: node $k's replica answered its node's $expected requests" \
      test "$(json "$run_dir/summary.json" "[r['requests'] for r in d['services']['echo']['replicas'] if r['node'] == $k]")" = "[$expected]"
  done
done

# An MPI program of 4 ranks on the workers of both nodes (rank 0
# coordinates and rank 1 serves on node 0, leaving 1 worker there and 3 on
# node 1): one srun step over both, each rank asking through its node's
# proxy. Submitted once the jobs above are done, so that it does not wait
# behind them for the fake nodes' CPUs. The fake nodes share this
# machine's /tmp, where Open MPI keeps its shared-memory files by host
# name: once in a while a rank's MPI_Init finds a file the other node's
# ranks removed and crashes. A retry is what a user would give such a
# task; the checks below still see all 4 ranks of the last attempt.
cat > mpinodes.toml << TOML
[job]
name = "mpinodes"
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "sum"
command = ["$mpi_task", "sum", "1"]
ranks = 4
retries = 2
[[task]]
name = "service"
command = ["$mpi_task", "service", "16"]
ranks = 4
retries = 2
TOML
# The output of a task's last attempt (0.out, then 0.try2.out, ...).
last_attempt() { ls "$run_dir/tasks/$1"/0.out "$run_dir/tasks/$1"/0.try*.out 2> /dev/null | tail -1; }
submit_and_wait 150 --nodes=2 --ntasks-per-node=3 --time=5 "$jobscripts/slurm-srun.sbatch" mpinodes.toml
mpinodes_job=$job_id
result=$job_result
run_dir=runs/mpinodes-$mpinodes_job
check "the MPI program job $mpinodes_job completed with exit 0 (got $result)" \
  test "$result" = "COMPLETED 0:0" || show_output "$mpinodes_job" "tandem-$mpinodes_job.out"
check "srun: the allreduce ran on 4 ranks" \
  test "$(last_attempt sum | xargs cat | grep -c "of 4 on")" = 4
check "srun: its ranks ran on both nodes, 3 on node 1 and 1 on node 0" \
  test "$(last_attempt sum | xargs cat | sed -n 's/.* node \(tandem-snode-[01]\) step.*/\1/p' | sort | uniq -c | tr -s ' ' | tr '\n' ';')" = " 1 $node0; 3 $node1;"
check "srun: every rank on both nodes reached the service through its node's proxy" \
  grep -q '^4 ranks served' "$(last_attempt service)"

# --- the time limit's drain and resume, across both nodes --------------------
time_limit_drain_and_resume 2 4

finish slurm-nodes
