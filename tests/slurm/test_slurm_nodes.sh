#!/usr/bin/env bash
# The job scripts on a 2-node Slurm on this machine (tests/slurm/cluster.sh
# with 2 fake nodes): `sbatch -N 2` of slurm-srun.sbatch and
# slurm-mpirun.sbatch with a per-node service, and the time-limit drain
# and resume of test_slurm.sh across the two nodes.
# Usage: test_slurm_nodes.sh TANDEM TEST_TASKS_LIB
# Exits 77 (skipped) where it cannot run: not root, or no Slurm.
set -uo pipefail
tandem=$(readlink -f "$1")
tasks_lib=$(readlink -f "$2")
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
srun_job=$(sbatch --parsable --nodes=2 --ntasks-per-node=3 --time=5 \
  "$jobscripts/slurm-srun.sbatch" pernode.toml)
mpirun_job=$(sbatch --parsable --nodes=2 --ntasks=6 --ntasks-per-node=3 --time=5 \
  "$jobscripts/slurm-mpirun.sbatch" pernode.toml)
for launcher in srun mpirun; do
  var=${launcher}_job
  id=${!var}
  result=$(wait_job "$id" 150)
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

# --- the time limit's drain and resume, across both nodes --------------------
time_limit_drain_and_resume 2 4

finish slurm-nodes
