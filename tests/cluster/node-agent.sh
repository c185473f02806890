#!/bin/bash
# Open MPI's "rsh agent" for the test cluster: `node-agent.sh HOST COMMAND...`
# runs COMMAND (mpirun's orted for that host) as a node of its own on this
# machine: new UTS, IPC and mount namespaces, host name HOST, a /dev/shm of
# its own. The network namespace stays the machine's, so every byte between
# nodes is TCP on 127.0.0.1 and no address is made.
#
# Without TANDEM_CLUSTER_DIR each node gets a fresh tmpfs as /dev/shm. With
# TANDEM_CLUSTER_DIR=DIR a node's state outlives the job, as a real node's
# does: DIR/nodes/HOST/shm is its /dev/shm (segments a crashed run leaves
# are still there for the next), and DIR/nodes/HOST/scratch is bound over
# DIR/local, the node-local scratch directory its ranks see.
set -euo pipefail
host=$1
shift
dir=${TANDEM_CLUSTER_DIR:-}
if [ -n "$dir" ]; then
  mkdir -p "$dir/local" "$dir/nodes/$host/shm" "$dir/nodes/$host/scratch"
  chmod 1777 "$dir/nodes/$host/shm"
fi
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --uts --ipc --mount --propagation private bash -c '
  set -e
  host=$1 dir=$2
  shift 2
  hostname "$host"
  if [ -n "$dir" ]; then
    mount --bind "$dir/nodes/$host/shm" /dev/shm
    mount --bind "$dir/nodes/$host/scratch" "$dir/local"
  else
    mount -t tmpfs -o size=512m,mode=1777 tmpfs /dev/shm
  fi
  exec bash -c "$*"' node-agent "$host" "$dir" "$@"
