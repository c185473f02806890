# shellcheck shell=bash
# Helpers of the Slurm tests (sourced, with $here set to tests/slurm):
# a private cluster for the test, reading JSON, waiting for a job, showing
# its output.

# start_test_cluster NODES: skips (exit 77) without root or Slurm; makes
# $work and $lab, brings the cluster up in $lab and tears it down at exit
# (keeping $work when a check failed).
start_test_cluster() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: the Slurm test needs root (it starts munged, slurmctld and slurmd)"
    exit 77
  fi
  # Run from inside a real batch job, the job's own variables would point
  # sbatch, srun and tandem at that job.
  local v
  for v in $(env | grep -oE '^(SLURM|SBATCH|SRUN|PMIX|PMI)_[A-Za-z0-9_]*'); do unset "$v"; done
  work=$(mktemp -d /tmp/tandem-slurm-XXXXXX)
  lab=$work/cluster
  chmod 711 "$work" # munged wants every directory above its socket searchable
  trap cleanup_test_cluster EXIT
  if ! bash "$here/cluster.sh" up "$lab" "$1"; then
    if ! command -v slurmctld > /dev/null; then
      echo "SKIP: Slurm is not installed and could not be installed"
      exit 77
    fi
    echo "FAIL: the test cluster did not come up" >&2
    exit 1
  fi
}

cleanup_test_cluster() {
  bash "$here/cluster.sh" down "$lab" > /dev/null 2>&1
  if [ "${failed:-1}" -eq 0 ]; then rm -rf "$work"; else echo "kept for inspection: $work"; fi
}

# json FILE EXPR: a value from a JSON file (EXPR in Python, the file is `d`).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# json_lines FILE EXPR: a Python expression over the JSON lines `L` of FILE.
json_lines() { python3 -c "import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]; print($2)" "$1"; }

# wait_job ID TIMEOUT_S: polls until the job has ended; prints "STATE EXIT".
# (sbatch --wait polls slowly and says 0 for a cancelled job.)
wait_job() {
  local id=$1 deadline=$((SECONDS + $2)) line state reason
  if ! [[ $id =~ ^[0-9]+$ ]]; then
    echo "NOT-SUBMITTED -"
    return
  fi
  while :; do
    line=$(scontrol show job --oneliner "$id" 2> /dev/null)
    state=$(grep -oP 'JobState=\K\S+' <<< "$line")
    reason=$(grep -oP ' Reason=\K\S+' <<< "$line")
    case $state in
      PENDING | RUNNING | CONFIGURING | COMPLETING | SUSPENDED) ;;
      "")
        echo "UNKNOWN -"
        return
        ;;
      *)
        echo "$state $(grep -oP 'ExitCode=\K\S+' <<< "$line")"
        return
        ;;
    esac
    if [ "$state" = PENDING ] && [[ $reason =~ ^(PartitionConfig|BadConstraints|PartitionNodeLimit|PartitionTimeLimit)$ ]]; then
      scancel "$id"
      echo "NEVER-STARTS $reason"
      return
    fi
    if [ $SECONDS -ge $deadline ]; then
      scancel "$id"
      echo "TIMED-OUT-WAITING $state"
      return
    fi
    sleep 0.25
  done
}

# fresh_tcp_ports: the next job's ranks listen on TCP ports no earlier job
# of this test used. Between the fake nodes Open MPI talks TCP on
# loopback, and by default every job's ranks listen on the same ports from
# 1024 up, where the connections of the job before linger in TIME_WAIT (a
# few hundred per job). Jobs submitted back to back stalled now and then
# for 32 s, the schedule of a SYN retried 5 times (1 + 2 + 4 + 8 + 16 s),
# or hung: a new connection meeting an old one's ports. Fresh ports ended
# it. Real nodes do not share a loopback.
tcp_port_base=20000
fresh_tcp_ports() {
  export OMPI_MCA_btl_tcp_port_min_v4=$tcp_port_base OMPI_MCA_btl_tcp_port_range_v4=400
  tcp_port_base=$((tcp_port_base + 400))
}

# submit_and_wait TIMEOUT_S SBATCH_ARGS...: submits a job and waits for it
# to end; sets $job_id and $job_result ("STATE EXIT", as wait_job says).
# Between this machine's fake nodes Open MPI talks TCP on loopback, and
# with many more ranks than cores Open MPI 4.1 now and then loses a
# connection attempt between two ranks ("failed to TCP connect to a peer
# MPI process", open-mpi/ompi#11508: timeouts of an overloaded host): the
# job then waits forever on that peer. Such a job, and only such a job, is
# cancelled and submitted once more, saying so; any other failure stands.
submit_and_wait() {
  local timeout=$1 attempt k
  shift
  for attempt in 1 2; do
    fresh_tcp_ports
    job_id=$(sbatch --parsable "$@")
    job_result=$(wait_job "$job_id" "$timeout")
    [ "$job_result" = "COMPLETED 0:0" ] && return
    # A cancelled job's last output (mpirun forwards it late) is in its file
    # once the job has left the queue.
    for k in $(seq 40); do
      [ -z "$(squeue -h -j "$job_id" 2> /dev/null)" ] && break
      sleep 0.25
    done
    if [ "$attempt" = 1 ] && [[ $job_result == TIMED-OUT-WAITING* ]] &&
      grep -q "failed to TCP connect to a peer MPI process" "tandem-$job_id.out" 2> /dev/null; then
      echo "note: job $job_id hung on Open MPI's lost TCP connection between the fake nodes; submitting it again"
      continue
    fi
    return
  done
}

show_output() { # the job's output, when a check about it failed
  echo "--- output of job $1:" >&2
  tail -n 30 "$2" >&2
}

# time_limit_drain_and_resume NODES TASKS_PER_NODE: jobs that run into
# their time limit, and one that finishes. 220 half-second tasks per worker
# take about 110 s. Slurm checks time limits every 30 s, so a warning 15 s
# before a one-minute limit arrives between second 15 and second 45 of the
# job. The first job (srun) gets SIGTERM, the second (mpirun, resuming)
# gets SIGUSR1 through its batch shell, the third resumes and finishes.
# Uses $jobscripts and $work, and check() of shell_test.sh.
time_limit_drain_and_resume() {
  local nodes=$1 per=$2
  local total=$((220 * (nodes * per - 1)))
  local first second third result run_dir done_first done_second
  local shape=(--nodes="$nodes" --ntasks-per-node="$per")
  rm -f "$work/finished.txt"
  cat > long.toml << TOML
[job]
name = "long"
[[task]]
name = "step"
count = $total
command = ["/bin/sh", "-c", "sleep 0.5 && echo {index} >> $work/finished.txt"]
TOML
  fresh_tcp_ports
  first=$(sbatch --parsable "${shape[@]}" --time=1 --signal=TERM@15 \
    "$jobscripts/slurm-srun.sbatch" long.toml)
  result=$(wait_job "$first" 150)
  run_dir=runs/long-$first
  check "the time-limited srun job $first did not complete (got $result)" test "${result%% *}" != COMPLETED
  check "it stopped on SIGTERM" test "$(json "$run_dir/summary.json" "d['interrupted_by_signal']")" = 15 ||
    show_output "$first" "tandem-$first.out"
  done_first=$(json "$run_dir/summary.json" "d['tasks']['done']")
  check "it stopped mid-run ($done_first of $total done)" test "$done_first" -gt 0 -a "$done_first" -lt $total
  check "the journal has every finished task" \
    test "$(grep -c '"state":"DONE"' "$run_dir/journal.jsonl")" = "$done_first"
  check "the tasks that finished are the ones the journal has" \
    test "$(sort -u "$work/finished.txt" | wc -l)" = "$done_first"

  fresh_tcp_ports
  second=$(sbatch --parsable "${shape[@]}" --ntasks=$((nodes * per)) --time=1 --signal=B:USR1@15 \
    "$jobscripts/slurm-mpirun.sbatch" long.toml --resume)
  result=$(wait_job "$second" 150)
  check "the time-limited mpirun job $second did not complete (got $result)" test "${result%% *}" != COMPLETED
  check "it stopped on SIGUSR1 passed on by the batch shell" \
    test "$(json "$run_dir/summary.json" "d['interrupted_by_signal'], d['resumed']")" = "10 True" ||
    show_output "$second" "tandem-$second.out"
  done_second=$(json "$run_dir/summary.json" "d['tasks']['done']")
  check "it went on from the first job ($done_first -> $done_second of $total)" \
    test "$done_second" -gt "$done_first" -a "$done_second" -lt $total
  check "the tasks that finished are the ones the journal has" \
    test "$(sort -u "$work/finished.txt" | wc -l)" = "$done_second"

  fresh_tcp_ports
  third=$(sbatch --parsable "${shape[@]}" --time=5 \
    "$jobscripts/slurm-srun.sbatch" long.toml --resume)
  result=$(wait_job "$third" 200)
  check "the resuming job $third completed (got $result)" test "$result" = "COMPLETED 0:0" ||
    show_output "$third" "tandem-$third.out"
  check "the resumes continued the same run directory" test ! -e "runs/long-$second" -a ! -e "runs/long-$third"
  check "the last job skipped what the others finished" \
    test "$(json "$run_dir/summary.json" "d['tasks']['done_earlier'], d['tasks']['done']")" = "$done_second $total"
  check "every task ran to the end exactly once" \
    test "$(sort -n "$work/finished.txt" | uniq | wc -l) $(wc -l < "$work/finished.txt")" = "$total $total"
  check "no index is missing" \
    test "$(sort -n "$work/finished.txt" | uniq | awk '$1 != NR-1' | wc -l)" = 0
  check "history.jsonl has the three jobs" \
    test "$(python3 -c "import json,sys; print(' '.join(json.loads(l)['allocation']['job_id'] for l in open(sys.argv[1])))" "$run_dir/history.jsonl")" = "$first $second $third"
}
