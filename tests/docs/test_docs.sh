#!/usr/bin/env bash
# Every C, C++, Fortran, Python, TOML and CMake block of README.md and docs/
# checked against the installed package, the way a user copies it
# (tests/docs/check_docs.py says how each block is checked).
# Usage: test_docs.sh SOURCE_DIR BUILD_DIR MPIEXEC
set -euo pipefail
src=$1
build=$2
mpiexec=$3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d "$build/docs-test-XXXXXX")
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$src/tests/docs/check_docs.py" --self-test
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
/usr/bin/python3 "$src/tests/docs/check_docs.py" "$src" "$work/prefix" "$mpiexec" "${mpiexec_flags[@]}"
