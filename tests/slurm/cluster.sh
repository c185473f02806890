#!/usr/bin/env bash
# A private single-node Slurm cluster for the tests: munged, slurmctld and
# slurmd from Debian's packages, no systemd, no cgroups, all state in one
# directory. Needs root.
#
#   cluster.sh up   DIR    start it (packages installed when missing)
#   cluster.sh down DIR    stop the daemons this script started, by PID
#
# After `up`, `source DIR/env.sh` points the Slurm commands at it. Nothing is
# written outside DIR: the config is named through SLURM_CONF, not
# /etc/slurm, and the ports are not Slurm's defaults, so a real Slurm on the
# same machine is left alone.
set -euo pipefail

action=${1:?usage: cluster.sh up|down DIR}
lab=$(mkdir -p "${2:?usage: cluster.sh up|down DIR}" && cd "$2" && pwd)
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
  local pids=() pid name
  for name in slurmd slurmctld munged; do
    if pid=$(our_pid "$lab/run/$name.pid"); then
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
SlurmdSpoolDir=$lab/spool/slurmd
SlurmctldPidFile=$lab/run/slurmctld.pid
SlurmdPidFile=$lab/run/slurmd.pid
SlurmctldLogFile=$lab/log/slurmctld.log
SlurmdLogFile=$lab/log/slurmd.log
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
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host $node_hw RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # Slurm's PMIx plugin leaves a directory per step behind when a step is
  # killed, and job ids start again at 1 on a cold start: keep those
  # directories in our spool, which every start empties.
  echo "PMIxCliTmpDirBase=$lab/spool/pmix" > "$lab/etc/mpi.conf"
  echo "export SLURM_CONF=$conf" > "$lab/env.sh"
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
  slurmd -f "$conf" -N "$(hostname -s)"

  local deadline=$((SECONDS + ${TANDEM_SLURM_UP_TIMEOUT:-60})) state
  while :; do
    state=$(sinfo --noheader --Node --format='%T' 2> /dev/null | head -1)
    [ "$state" = idle ] && break
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: node is '$state', not idle, after the start timeout" >&2
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
