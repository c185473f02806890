# Sourced by the shell tests: the MPI environment of a test run, check() to
# count results, and finish() to report them and set the exit status.
#   source "$(dirname "$0")/../support/shell_test.sh"
#
# Under ctest the launcher's flags and environment come from
# tests/CMakeLists.txt (TANDEM_MPIEXEC_FLAGS, TANDEM_MPIEXEC_ENV); run by
# hand, a script gets Open MPI's. Start jobs as
#   "$mpiexec" "${mpiexec_flags[@]}" -n 4 ...
read -r -a mpiexec_flags <<< "${TANDEM_MPIEXEC_FLAGS---oversubscribe --mca btl self,vader}"
if [ -z "${TANDEM_MPIEXEC_FLAGS+set}" ]; then
  export OMPI_MCA_mpi_yield_when_idle=1
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
fi
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, counts it, names it when it fails.
check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name" >&2
  fi
}

# finish LABEL: prints the counts; the test's exit status.
finish() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# rank_pid RUN_DIR RANK: the pid of a rank of the job running in RUN_DIR,
# from its black box (src/base/rank_record.hpp: bytes 16-19 of the page).
rank_pid() {
  python3 -c "import struct,sys; print(struct.unpack_from('i', open(sys.argv[1],'rb').read(), 16)[0])" \
    "$(printf '%s/ranks/rank-%05d.rec' "$1" "$2")" 2> /dev/null
}
