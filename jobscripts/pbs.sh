#!/bin/bash
# Run a Tandem workflow under PBS/Torque.
#
#   qsub -v WORKFLOW=workflow.toml jobscripts/pbs.sh
#
#PBS -N tandem
#PBS -l nodes=2:ppn=32
#PBS -l walltime=01:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"
export OMPI_MCA_mpi_yield_when_idle=1
tandem=${TANDEM:-tandem}
np=$(wc -l < "$PBS_NODEFILE")
"$tandem" plan "$WORKFLOW" --np "$np" > /dev/null
# PBS sends SIGTERM to the job at the walltime (kill_delay seconds before
# SIGKILL). mpirun would answer SIGTERM by killing the ranks, so this script
# hands it on as SIGUSR1, which mpirun forwards to every rank; Tandem then
# drains and keeps its journal.
mpirun -np "$np" --hostfile "$PBS_NODEFILE" "$tandem" run "$WORKFLOW" &
mpirun_pid=$!
trap 'kill -USR1 "$mpirun_pid" 2> /dev/null' USR1 TERM
status=0
while :; do  # `wait` returns early for a trapped signal: wait for the exit
  wait "$mpirun_pid" && status=0 || status=$?
  kill -0 "$mpirun_pid" 2> /dev/null || break
done
exit "$status"
