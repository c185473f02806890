#!/usr/bin/env bash
# The installed package: cmake --install into a fresh prefix, build the
# pilot-basics example on its own with find_package(tandem), and run it with
# the installed tandem command.
# Usage: test_install.sh SOURCE_DIR BUILD_DIR MPIEXEC
set -euo pipefail
src=$1
build=$2
mpiexec=$3
export OMPI_MCA_mpi_yield_when_idle=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work=$(mktemp -d "$build/install-test-XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -x "$work/prefix/bin/tandem"
test -f "$work/prefix/include/tandem/tandem.hpp"
test -f "$work/prefix/lib/cmake/tandem/tandemConfig.cmake"

cmake -S "$src/examples/pilot-basics" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  > "$work/configure.log"
cmake --build "$work/example" > "$work/build.log"

PILOT_BASICS_BUILD="$work/example" "$mpiexec" --oversubscribe -n 3 "$work/prefix/bin/tandem" \
  run "$src/examples/pilot-basics/workflow.toml" --run-dir "$work/run" --log-level warn
grep -q "pi from 16 estimates: 3.14" "$work/run/tasks/summarize/0.out"
grep -q "ranks 2 steps 5000" "$work/run/tasks/summarize/0.out"
echo "1 passed, 0 failed"
