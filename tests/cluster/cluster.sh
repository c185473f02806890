# shellcheck shell=bash
# Fake nodes on this one machine, for the tests (source it):
#
#   source tests/cluster/cluster.sh
#   cluster_check || exit 77                      # root, unshare, names free
#   cluster_mpirun NODES RANKS_PER_NODE PROGRAM ARGS...
#
# cluster_mpirun starts NODES x RANKS_PER_NODE ranks, placed in blocks
# (node 0 has ranks 0..M-1), each node a set of namespaces made by
# node-agent.sh: its own host name (tandem-node-K) and /dev/shm, the same
# file system. Open MPI talks TCP on 127.0.0.1 between nodes and shared
# memory within one. Extra mpirun options go in the array cluster_flags;
# variables for the ranks in cluster_env (names, passed with -x).
# Nothing outlives the mpirun: the namespaces end with their processes.

cluster_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster_flags=()
cluster_env=(PATH LD_LIBRARY_PATH OMPI_MCA_mpi_yield_when_idle TANDEM_CLUSTER_DIR)
export OMPI_MCA_mpi_yield_when_idle=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cluster_node_name() { echo "tandem-node-$1"; }

# True when fake nodes can be made here; says why not otherwise.
cluster_check() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: fake nodes need root (unshare, mount)"
    return 1
  fi
  if ! unshare --uts --ipc --mount true 2> /dev/null; then
    echo "SKIP: unshare cannot make namespaces here"
    return 1
  fi
  # A name that resolves to this machine makes Open MPI start its ranks
  # here, without the agent: all "nodes" would be one.
  local k
  for k in 0 1 2 3; do
    if getent hosts "$(cluster_node_name $k)" > /dev/null; then
      echo "FAIL: $(cluster_node_name $k) resolves; fake node names must not" >&2
      return 1
    fi
  done
}

# The --host list for NODES nodes of M slots.
cluster_hosts() {
  local nodes=$1 per=$2 k list=
  for ((k = 0; k < nodes; k++)); do list+="${list:+,}$(cluster_node_name $k):$per"; done
  echo "$list"
}

# cluster_command NODES RANKS_PER_NODE PROGRAM ARGS...: the mpirun command
# line in the array cluster_cmd, for a caller that needs mpirun's own PID
# ("${cluster_cmd[@]}" & then signal $!).
cluster_command() {
  local nodes=$1 per=$2
  shift 2
  local env_flags=() v
  for v in "${cluster_env[@]}"; do
    [ -n "${!v+set}" ] && env_flags+=(-x "$v")
  done
  cluster_cmd=(mpirun --mca plm_rsh_agent "$cluster_here/node-agent.sh"
    --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo
    --oversubscribe --map-by slot --host "$(cluster_hosts "$nodes" "$per")" -np $((nodes * per))
    "${env_flags[@]}" "${cluster_flags[@]}" "$@")
}

cluster_mpirun() {
  cluster_command "$@"
  "${cluster_cmd[@]}"
}
