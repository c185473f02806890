#!/usr/bin/env bash
# GPUs and binding without GPUs (issue 19): a faked allocation
# (CUDA_VISIBLE_DEVICES=0,1,2,3) gives a replica its own GPU and the tasks
# the rest, one task's at a time; tasks that ask for none see none; an MPI
# program's ranks get one each; a Python task reads its own from ctx.gpus.
# `tandem plan` finds GPUs through SLURM_JOB_GPUS and a stand-in nvidia-smi,
# and a layout that asks for more GPUs than there are is an error naming the
# key. Then command tasks run on the cores of the workers they hold
# (bind = "cores") or on all of the job's (bind = "none").
# Usage: test_gpus.sh TANDEM MPIEXEC
set -uo pipefail
tandem=$1
mpiexec=$2
python=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../support/shell_test.sh"
work=$(mktemp -d /tmp/tandem-gpus-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cd "$work"
unset SLURM_JOB_GPUS SLURM_STEP_GPUS

# Each GPU task prints its GPUs and when it held them (microseconds).
cat > gpus.toml << TOML
[job]
name = "gpus"
pythonpath = ["$here"]
[[service]]
name = "model"
backend = "echo"
gpus_per_replica = 1
[[task]]
name = "one"
command = ["/bin/sh", "-c", "s=\$(date +%s%6N); sleep 0.4; echo \"\$CUDA_VISIBLE_DEVICES \$s \$(date +%s%6N)\""]
count = 6
gpus_per_task = 1
[[task]]
name = "two"
command = ["/bin/sh", "-c", "s=\$(date +%s%6N); sleep 0.2; echo \"\$CUDA_VISIBLE_DEVICES \$s \$(date +%s%6N)\""]
count = 2
gpus_per_task = 2
[[task]]
name = "mpi"
command = ["/bin/sh", "-c", "s=\$(date +%s%6N); sleep 0.2; echo \"\$CUDA_VISIBLE_DEVICES \$s \$(date +%s%6N)\""]
ranks = 2
gpus_per_rank = 1
[[task]]
name = "py"
python = "gpu_tasks:show"
count = 2
gpus_per_task = 1
[[task]]
name = "cpu"
command = ["/bin/sh", "-c", "echo \"[\$CUDA_VISIBLE_DEVICES]\""]
count = 4
TOML
CUDA_VISIBLE_DEVICES=0,1,2,3 timeout 300 "$mpiexec" "${mpiexec_flags[@]}" -n 6 "$tandem" run \
  gpus.toml --run-dir run --log-level info > run.out 2> run.err
rc=$?
check "the run succeeds (exit $rc)" test $rc -eq 0
[ $rc -eq 0 ] || tail -30 run.err >&2
check "the replica has GPU 0" \
  grep -q "service 'model' replica 0: GPU(s) 0 (CUDA_VISIBLE_DEVICES), device cuda:0" run/logs/*.log
check "the coordinator says which GPUs tasks share" \
  grep -q "node 0: GPUs 0,1,2,3 (from CUDA_VISIBLE_DEVICES), for tasks 1,2,3" run/logs/rank-00000.log
# Every GPU task's interval per GPU it held; no two may overlap on a GPU.
cat run/tasks/one/*.out run/tasks/two/*.out run/tasks/mpi/*.out > held.txt
check "every GPU task printed" test "$(wc -l < held.txt)" = 10
overlaps=$("$python" - held.txt << 'PY'
import sys
spans = {}
for line in open(sys.argv[1]):
    gpus, start, end = line.split()
    for g in gpus.split(","):
        spans.setdefault(g, []).append((int(start), int(end)))
bad = []
for g, s in spans.items():
    s.sort()
    bad += [(g, a, b) for a, b in zip(s, s[1:]) if b[0] < a[1]]
print(sorted(spans), len(bad))
PY
)
check "tasks used GPUs 1-3 only, never two at once on one GPU ($overlaps)" \
  test "$overlaps" = "['1', '2', '3'] 0"
check "a task of 2 GPUs had two" test "$(cut -d' ' -f1 run/tasks/two/0.out | tr ',' '\n' | sort -u | wc -l)" = 2
check "the MPI program's ranks had a GPU each, not the same" \
  test "$(cut -d' ' -f1 run/tasks/mpi/0.out | sort -u | wc -l)" = 2
check "one-GPU tasks ran side by side on different GPUs" \
  test "$(cut -d' ' -f1 run/tasks/one/*.out | sort -u | wc -l)" -ge 2
check "a Python task reads its GPU from ctx.gpus" \
  sh -c "cat run/tasks/py/0.gpus run/tasks/py/1.gpus | grep -Eqx '[123]'"
check "tasks that ask for no GPU see none" test "$(sort -u run/tasks/cpu/*.out)" = "[]"
# Four workers, three GPUs for tasks. The CPU tasks come after the GPU
# tasks in the queue; the worker without a GPU runs them while GPU tasks
# still wait for one, not after the last one was handed out.
check "CPU tasks ran while GPU tasks waited for a GPU" "$python" -c "
import json
j = [json.loads(l) for l in open('run/journal.jsonl')]
cpu = min(d['started_us'] for d in j if d['task'] == 'cpu')
one = max(d['started_us'] for d in j if d['task'] == 'one')
assert cpu < one, (cpu, one)"

# --- where the GPU list comes from, and over-asking, at plan time ------
mkdir bin
cat > bin/nvidia-smi << 'SH'
#!/bin/sh
echo "GPU 0: Stand-in GPU (UUID: GPU-00000000)"
echo "GPU 1: Stand-in GPU (UUID: GPU-11111111)"
echo "GPU 2: Stand-in GPU (UUID: GPU-22222222)"
SH
chmod +x bin/nvidia-smi
env -u CUDA_VISIBLE_DEVICES PATH="$work/bin:$PATH" "$tandem" plan gpus.toml -n 5 > smi.txt 2>&1
check "plan finds the stand-in nvidia-smi's GPUs" grep -q "node 0 GPUs: 0,1,2 (from nvidia-smi -L); for tasks: 1,2" smi.txt
env -u CUDA_VISIBLE_DEVICES SLURM_JOB_GPUS=4,5,6 "$tandem" plan gpus.toml -n 5 > slurm.txt 2>&1
check "plan takes SLURM_JOB_GPUS over nvidia-smi" grep -q "node 0 GPUs: 4,5,6 (from SLURM_JOB_GPUS); for tasks: 5,6" slurm.txt
check "plan shows the replica's GPU" grep -q "model replica 0 leader, GPU 4" slurm.txt
env -u CUDA_VISIBLE_DEVICES SLURM_JOB_GPUS=0,1 "$tandem" plan gpus.toml -n 5 > over.txt 2>&1
rc=$?
check "a layout that asks for more GPUs than there are fails at plan time" test $rc -ne 0
check "... naming the file, line and key" grep -q "gpus.toml:.*task\[1\].gpus_per_task.*fit only 0" over.txt
"$tandem" plan gpus.toml -n 5 --gpus-per-node 8 > eight.txt 2>&1
check "--gpus-per-node plans for another machine" grep -q "node 0 GPUs: 0,1,2,3,4,5,6,7 (from --gpus-per-node)" eight.txt

# --- binding ------------------------------------------------------------
# Each rank bound to one core (overloaded: more ranks than cores); a task's
# processes run on its workers' cores, or on all the job's with bind = none.
cat > bind.toml << TOML
[job]
name = "bind"
[[task]]
name = "own"
command = ["/bin/sh", "-c", "echo \$(taskset -pc \$\$ | sed 's/.*: //') \$(taskset -pc \$PPID | sed 's/.*: //')"]
[[task]]
name = "free"
command = ["/bin/sh", "-c", "taskset -pc \$\$ | sed 's/.*: //'"]
bind = "none"
after = ["own"]
[[task]]
name = "wide"
command = ["/bin/sh", "-c", "taskset -pc \$\$ | sed 's/.*: //'"]
cores_per_task = 2
after = ["free"]
[[task]]
name = "ranks"
command = ["/bin/sh", "-c", "taskset -pc \$\$ | sed 's/.*: //'"]
ranks = 2
after = ["wide"]
TOML
cpus=$(nproc)
timeout 200 "$mpiexec" "${mpiexec_flags[@]}" --bind-to core:overload-allowed -n 3 "$tandem" run \
  bind.toml --run-dir bind --log-level warn > bind.out 2> bind.err
rc=$?
check "the binding run succeeds (exit $rc)" test $rc -eq 0
[ $rc -eq 0 ] || tail -30 bind.err >&2
read -r own parent < bind/tasks/own/0.out
check "bind = cores: a task runs on its worker's core ($own, worker $parent)" test "$own" = "$parent"
if [ "$cpus" -ge 2 ]; then
  check "bind = none: a task runs on all the job's cores ($(cat bind/tasks/free/0.out))" \
    test "$(cat bind/tasks/free/0.out)" = "0-1" -o "$(cat bind/tasks/free/0.out)" = "0,1"
  check "cores_per_task = 2 runs on both workers' cores ($(cat bind/tasks/wide/0.out))" \
    test "$(cat bind/tasks/wide/0.out)" = "0-1" -o "$(cat bind/tasks/wide/0.out)" = "0,1"
  check "each rank of an MPI program runs on its own worker's core ($(sort bind/tasks/ranks/0.out | tr '\n' ' '))" \
    test "$(sort bind/tasks/ranks/0.out | tr '\n' ' ')" = "0 1 "
fi
finish "gpus"
