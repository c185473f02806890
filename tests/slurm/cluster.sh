#!/usr/bin/env bash
# A private single-node Slurm cluster for the tests: munged, slurmctld and
# slurmd from Debian's packages, no systemd, no cgroups, all state in one
# directory. Needs root.
#
#   cluster.sh up   DIR [NODES]   start it (packages installed when missing)
#   cluster.sh down DIR           stop the daemons this script started, by PID
#
# With NODES > 1 the cluster has that many nodes on this machine, each a
# slurmd in namespaces of its own (tests/cluster/node-agent.sh's recipe):
# host name tandem-snode-K, its own /dev/shm and PMIx directory, its own
# port on 127.0.0.1. Jobs across them need Open MPI on TCP over loopback
# (OMPI_MCA_btl=self,vader,tcp and btl/oob_tcp_if_include=lo).
#
# After `up`, `source DIR/env.sh` points the Slurm commands at it. Nothing is
# written outside DIR: the config is named through SLURM_CONF, not
# /etc/slurm, and the ports are not Slurm's defaults, so a real Slurm on the
# same machine is left alone.
set -euo pipefail

action=${1:?usage: cluster.sh up|down DIR [NODES]}
lab=$(mkdir -p "${2:?usage: cluster.sh up|down DIR [NODES]}" && cd "$2" && pwd)
nodes=${3:-1}
conf=$lab/etc/slurm.conf
socket=$lab/munge/socket
export SLURM_CONF=$conf

say() { echo "[slurm-cluster] $*"; }

# The PID in a pidfile, when that process is alive and still one of the
# daemons (a PID can be reused by an unrelated process after a crash).
our_pid() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2> /dev/null || return 1
  grep -qE '^(slurmctld|slurmd|munged)$' "/proc/$pid/comm" 2> /dev/null || return 1
  echo "$pid"
}

stop_daemons() {
  local pids=() pid file
  for file in "$lab"/run/slurmd*.pid "$lab/run/slurmctld.pid" "$lab/run/munged.pid"; do
    if pid=$(our_pid "$file"); then
      kill -TERM "$pid" && pids+=("$pid")
    fi
  done
  # Each daemon takes one to two seconds to exit; KILL what is left after 15.
  local deadline=$((SECONDS + 15)) alive
  while :; do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2> /dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && break
    if [ $SECONDS -ge $deadline ]; then
      say "daemons ${alive[*]} ignored TERM; killing them"
      kill -KILL "${alive[@]}" 2> /dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$lab"/run/*.pid
}

# Job steps that outlived a slurmd killed hard carry our SLURM_CONF in their
# environment; stop them and everything under them.
stop_stray_steps() {
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}
    pid=${pid%/environ}
    [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = slurmstepd ] || continue
    grep -qaF "SLURM_CONF=$conf" "$environ" 2> /dev/null || continue
    say "stopping stray slurmstepd $pid"
    pkill -KILL -P "$pid" 2> /dev/null || true
    kill -KILL "$pid" 2> /dev/null || true
  done
}

down() {
  if our_pid "$lab/run/slurmctld.pid" > /dev/null; then
    scancel --quiet --full --user="$(id -un)" 2> /dev/null || true
    for _ in $(seq 50); do
      [ -z "$(squeue --noheader 2> /dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_daemons
  stop_stray_steps
  rm -rf "$lab/state" "$lab/spool" "$socket"*
  say "down"
}

install_packages() {
  local missing=() p
  for p in munge slurmctld slurmd slurm-client; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
    --no-install-recommends "${missing[@]}" > /dev/null
}

write_config() {
  local host cpus mem line key value
  host=$(hostname -s)
  declare -A hw
  # `slurmd -C` prints this node as a NodeName line: CPUs=2 ... RealMemory=N
  for line in $(slurmd -C | head -1); do
    key=${line%%=*}
    value=${line#*=}
    hw[$key]=$value
  done
  # Advertise at least 8 CPUs so that job scripts written for real nodes
  # (--ntasks-per-node=4 and up) run on a 2-core machine as they are;
  # config_overrides keeps slurmd from draining the node for "Low CPU
  # count". The ranks then share the cores, which is why the job scripts
  # export OMPI_MCA_mpi_yield_when_idle=1.
  cpus=${TANDEM_SLURM_CPUS:-$((hw[CPUs] > 8 ? hw[CPUs] : 8))}
  local node_hw="CPUs=$cpus" overrides=SlurmdParameters=config_overrides
  if [ "$cpus" = "${hw[CPUs]}" ]; then
    node_hw="CPUs=$cpus Boards=${hw[Boards]} SocketsPerBoard=${hw[SocketsPerBoard]} CoresPerSocket=${hw[CoresPerSocket]} ThreadsPerCore=${hw[ThreadsPerCore]}"
    overrides=
  fi
  # Ask for a little less memory than the node has, so that it is never
  # drained for "Low RealMemory".
  mem=$((hw[RealMemory] * 95 / 100))
  mkdir -p "$lab"/{etc,run,log,state,spool/slurmd,spool/pmix,munge}
  local per_node="" node_lines k name
  if [ "$nodes" -eq 1 ]; then
    node_lines="NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host $node_hw RealMemory=$mem State=UNKNOWN"
  else
    # Several slurmds on one address: a port and files of their own each
    # (%n is the node's name), and memory shared out among them.
    per_node=.%n
    node_lines=
    for ((k = 0; k < nodes; k++)); do
      name=$(node_name $k)
      node_lines+="NodeName=$name NodeAddr=127.0.0.1 NodeHostname=$name Port=$((${TANDEM_SLURMD_PORT:-16818} + 1 + k)) $node_hw RealMemory=$((mem / nodes)) State=UNKNOWN"$'\n'
      mkdir -p "$lab/spool/slurmd.$name" "$lab/spool/pmix-$name"
    done
  fi
  cat > "$conf" << EOF
# Written by tests/slurm/cluster.sh for a private test cluster.
ClusterName=tandemtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${TANDEM_SLURMCTLD_PORT:-16817}
SlurmdPort=${TANDEM_SLURMD_PORT:-16818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$lab/state
SlurmdSpoolDir=$lab/spool/slurmd$per_node
SlurmctldPidFile=$lab/run/slurmctld.pid
SlurmdPidFile=$lab/run/slurmd$per_node.pid
SlurmctldLogFile=$lab/log/slurmctld.log
SlurmdLogFile=$lab/log/slurmd$per_node.log
# No cgroups and no accounting daemon in a test container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
# srun starts Open MPI 4.1 ranks through PMIx (pmi2 and none fail in MPI_Init).
MpiDefault=pmix
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
InactiveLimit=0
# Seconds between the SIGTERM at a time limit and the SIGKILL.
KillWait=${TANDEM_SLURM_KILLWAIT:-30}
Waittime=0
MinJobAge=600
$overrides
$node_lines
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # Slurm's PMIx plugin leaves a directory per step behind when a step is
  # killed, and job ids start again at 1 on a cold start: keep those
  # directories in our spool, which every start empties.
  echo "PMIxCliTmpDirBase=$lab/spool/pmix" > "$lab/etc/mpi.conf"
  echo "export SLURM_CONF=$conf" > "$lab/env.sh"
}

node_name() { echo "tandem-snode-$1"; }

# One slurmd per fake node, each in new UTS, IPC and mount namespaces: its
# host name, a tmpfs /dev/shm, and its own directory over the PMIx one
# (shared, the second node's steps fail: "Cannot create client cli tmpdir").
# The daemon keeps the namespaces alive; stop_daemons ends it by its PID.
start_fake_nodes() {
  local k name
  for ((k = 0; k < nodes; k++)); do
    name=$(node_name $k)
    if getent hosts "$name" > /dev/null; then
      echo "cluster.sh: $name resolves; a fake node's name must not" >&2
      exit 1
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --uts --ipc --mount --propagation private bash -c '
      set -e
      hostname "$1"
      mount -t tmpfs -o size=512m,mode=1777 tmpfs /dev/shm
      mount --bind "$2/spool/pmix-$1" "$2/spool/pmix"
      exec slurmd -f "$3" -N "$1"' fake-node "$name" "$lab" "$conf"
  done
}

up() {
  [ "$(id -u)" -eq 0 ] || {
    echo "cluster.sh: needs root (the daemons run as root)" >&2
    exit 1
  }
  install_packages
  stop_daemons # a cluster left half up by an earlier run
  rm -rf "$lab/state" "$lab/spool"
  write_config
  # munged insists on a private key and a socket directory others may enter.
  chmod 755 "$lab" "$lab/munge"
  [ -s "$lab/munge/munge.key" ] || mungekey --create --bits=1024 --keyfile="$lab/munge/munge.key"
  chmod 600 "$lab/munge/munge.key"

  munged --socket="$socket" --key-file="$lab/munge/munge.key" \
    --pid-file="$lab/run/munged.pid" --log-file="$lab/log/munged.log" \
    --seed-file="$lab/munge/seed"
  munge -n -S "$socket" | unmunge -S "$socket" > /dev/null

  slurmctld -f "$conf" -i
  for _ in $(seq 100); do
    scontrol ping 2> /dev/null | grep -q UP && break
    sleep 0.1
  done
  scontrol ping | grep -q UP || {
    tail -20 "$lab/log/slurmctld.log" >&2
    exit 1
  }
  if [ "$nodes" -eq 1 ]; then
    slurmd -f "$conf" -N "$(hostname -s)"
  else
    start_fake_nodes
  fi

  local deadline=$((SECONDS + ${TANDEM_SLURM_UP_TIMEOUT:-60})) state
  while :; do
    state=$(sinfo --noheader --Node --format='%T' 2> /dev/null | sort -u | tr '\n' ' ')
    [ "$state" = "idle " ] && [ "$(sinfo --noheader --Node | wc -l)" -eq "$nodes" ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: nodes are '$state', not idle, after the start timeout" >&2
      scontrol show node >&2 || true
      tail -20 "$lab/log/slurmd.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  say "up: $(sinfo --noheader --Node --format='%N %T cpus=%c mem=%m')"
}

case $action in
  up) up ;;
  down) down ;;
  *)
    echo "usage: cluster.sh up|down DIR" >&2
    exit 2
    ;;
esac
