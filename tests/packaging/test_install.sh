#!/usr/bin/env bash
# The installed package: cmake --install into a fresh prefix, build the
# pilot-basics example on its own with find_package(tandem), and run it with
# the installed tandem command.
# Usage: test_install.sh SOURCE_DIR BUILD_DIR MPIEXEC
set -euo pipefail
src=$1
build=$2
mpiexec=$3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d "$build/install-test-XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -x "$work/prefix/bin/tandem"
test -f "$work/prefix/include/tandem/tandem.hpp"
test -f "$work/prefix/lib/cmake/tandem/tandemConfig.cmake"

cmake -S "$src/examples/pilot-basics" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  > "$work/configure.log"
cmake --build "$work/example" > "$work/build.log"

PILOT_BASICS_BUILD="$work/example" "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$work/prefix/bin/tandem" \
  run "$src/examples/pilot-basics/workflow.toml" --run-dir "$work/run" --log-level warn
grep -q "pi from 16 estimates: 3.14" "$work/run/tasks/summarize/0.out"
grep -q "ranks 2 steps 5000" "$work/run/tasks/summarize/0.out"

# The C API, the Python package and the Fortran module, installed.
prefix=$work/prefix
test -f "$prefix/include/tandem/tandem.h"
test -f "$prefix/lib/pkgconfig/tandem.pc"
test -f "$prefix/lib/tandem/python/tandem/__init__.py"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# A C program built with pkg-config alone; outside a task it says why it
# cannot connect.
cc "$src/examples/any-language/closure_c.c" $(pkg-config --cflags --libs tandem) -o "$work/closure_pc"
if env -u TANDEM_SOCKET "$work/closure_pc" 10 2> "$work/pc.err"; then exit 1; fi
grep -q "TANDEM_SOCKET is not set" "$work/pc.err"
# Linked with a bare -ltandem, no rpath: the loader cannot find libtandem
# outside a task, and can inside one, where the worker's LD_LIBRARY_PATH
# names the installed library's directory.
cat > "$work/bare.c" << 'C'
#include <stdio.h>
#include <tandem/tandem.h>
int main(void) {
  tandem_client* client;
  if (tandem_connect(&client) != TANDEM_OK || tandem_wait_ready(client, "double", 60) != TANDEM_OK) {
    fprintf(stderr, "bare: %s\n", tandem_last_error());
    return 1;
  }
  printf("bare: connected\n");
  tandem_disconnect(client);
  return 0;
}
C
cc "$work/bare.c" -I"$prefix/include" -L"$prefix/lib" -ltandem -o "$work/bare"
if env -u LD_LIBRARY_PATH "$work/bare" 2> /dev/null; then
  echo "FAIL: a program without an rpath found libtandem by itself" >&2
  exit 1
fi
cat > "$work/bare.toml" << TOML
[job]
name = "bare"
[[service]]
name = "double"
backend = "scale"
[[task]]
name = "bare"
command = ["$work/bare"]
TOML
env -u LD_LIBRARY_PATH "$mpiexec" "${mpiexec_flags[@]}" -n 3 "$prefix/bin/tandem" run "$work/bare.toml" \
  --run-dir "$work/bare-run" --log-level warn
grep -q "bare: connected" "$work/bare-run/tasks/bare/0.out"

# Python finds the installed library from the installed package.
/usr/bin/python3 - "$prefix/lib/tandem/python" << 'PY'
import sys
sys.path.insert(0, sys.argv[1])
import tandem
try:
    tandem.Client(socket="/nonexistent/socket")
except tandem.TandemError as e:
    assert e.status == "TANDEM_ERR_CONNECT" and "/nonexistent/socket" in str(e), e
else:
    raise SystemExit("connecting to a missing socket did not fail")
PY
have_fortran=0
if [ -f "$prefix/include/tandem/fortran/tandem.mod" ]; then
  have_fortran=1
  gfortran "$src/examples/any-language/closure_f.f90" $(pkg-config --cflags --libs tandem-fortran) \
    -o "$work/closure_f_pc"
fi
# The any-language example built with find_package(tandem) against the
# prefix, run by the installed tandem: C, Python (the installed package, set
# up by the worker) and Fortran tasks, compared.
cmake -S "$src/examples/any-language" -B "$work/al-build" -DCMAKE_PREFIX_PATH="$prefix" \
  > "$work/al-configure.log"
cmake --build "$work/al-build" > "$work/al-build.log"
if [ $have_fortran = 1 ]; then
  ANY_LANGUAGE_BUILD="$work/al-build" "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$prefix/bin/tandem" \
    run "$src/examples/any-language/workflow.toml" --run-dir "$work/al-run" --log-level warn
  grep -q "C, Python and Fortran: 1000 points each" "$work/al-run/tasks/compare/0.out"
fi
echo "2 passed, 0 failed"
