#!/usr/bin/env bash
# Runs a benchmark inside a batch job of a private Slurm on this machine
# (tests/slurm/cluster.sh), so that figures that need an allocation (srun
# job steps) are measured here too; prints the job's output.
#
#   bench/in_slurm.sh NTASKS COMMAND...      e.g.
#   bench/in_slurm.sh 6 bench/mpi_tasks.py --build build --repeat 5
#
# Needs root (the cluster's daemons). The cluster is torn down at the end.
set -euo pipefail
ntasks=${1:?usage: in_slurm.sh NTASKS COMMAND...}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
lab=$(mktemp -d /tmp/tandem-bench-slurm-XXXXXX)
chmod 711 "$lab"
trap 'bash "$root/tests/slurm/cluster.sh" down "$lab/cluster" > /dev/null 2>&1; rm -rf "$lab"' EXIT
for v in $(env | grep -oE '^(SLURM|SBATCH|SRUN|PMIX|PMI)_[A-Za-z0-9_]*'); do unset "$v"; done
bash "$root/tests/slurm/cluster.sh" up "$lab/cluster" 1 > "$lab/up.log" 2>&1 ||
  { cat "$lab/up.log" >&2; exit 1; }
source "$lab/cluster/env.sh"
printf '#!/bin/bash\ncd %q\nexec' "$root" > "$lab/job.sh"
printf ' %q' "$@" >> "$lab/job.sh"
echo >> "$lab/job.sh"
id=$(sbatch --parsable --nodes=1 --ntasks="$ntasks" --time=30 --output="$lab/job.out" "$lab/job.sh")
while squeue -h -j "$id" 2> /dev/null | grep -q .; do sleep 1; done
cat "$lab/job.out"
state=$(scontrol show job --oneliner "$id" 2> /dev/null | grep -oP 'JobState=\K\S+' || true)
[ "${state:-COMPLETED}" = COMPLETED ]
