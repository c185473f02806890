#!/usr/bin/env bash
# Every public header compiles on its own, with nothing on the include path
# but the public headers and MPI's (so no private header can leak into
# one), twice in a row (its include guard works), warnings as errors; the C
# API compiles as C. fwd.hpp declares every public type the headers define.
#   test_public_headers.sh SOURCE_DIR BUILD_DIR CXX CC MPI_INCLUDE_DIRS
source "$(dirname "$0")/../support/shell_test.sh"
src=$1 build=$2 cxx=$3 cc=$4
IFS=';' read -r -a mpi_dirs <<< "$5"
includes=(-I "$src/include" -I "$build/include")
for d in "${mpi_dirs[@]}"; do [ -n "$d" ] && includes+=(-isystem "$d"); done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

compiles_alone() {  # HEADER
  local tu="$work/$(basename "$1").cpp"
  printf '#include <tandem/%s>\n#include <tandem/%s>\n' "$1" "$1" > "$tu"
  "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror "${includes[@]}" "$tu"
}
headers=()
for h in "$src"/include/tandem/*.hpp "$build"/include/tandem/*.hpp; do headers+=("$(basename "$h")"); done
[ "${#headers[@]}" -ge 9 ] || { echo "found only ${#headers[@]} public headers" >&2; exit 1; }
for h in "${headers[@]}"; do check "$h compiles alone" compiles_alone "$h"; done

c_api_compiles() {
  printf '#include <tandem/tandem.h>\n#include <tandem/tandem.h>\nint main(void) { return 0; }\n' \
    > "$work/c_api.c"
  "$cc" -std=c11 -fsyntax-only -Wall -Wextra -Wpedantic -Werror "${includes[@]}" "$work/c_api.c"
}
check "tandem.h compiles alone as C" c_api_compiles

# Every class, struct and enum the public headers define in namespace
# tandem (at the start of a line: not nested, not in detail) and every alias.
fwd_is_complete() {
  local missing=0 name
  for name in $(grep -hE '^(class|struct|enum class|using) [A-Za-z_]+' "$src"/include/tandem/*.hpp |
                grep -v '^\(class\|struct\) [A-Za-z_]*;' |
                sed -E 's/^(class|struct|enum class|using) ([A-Za-z_]+).*/\2/' | sort -u); do
    if ! grep -qE "^(class|struct|enum class|using) $name\b" "$src/include/tandem/fwd.hpp"; then
      echo "fwd.hpp does not declare $name" >&2
      missing=1
    fi
  done
  return $missing
}
check "fwd.hpp declares every public type" fwd_is_complete

# A header that includes a private one would need src/ on the path.
no_private_includes() {
  ! grep -nE '#include "' "$src"/include/tandem/*.hpp "$src"/include/tandem/*.h
}
check "public headers include only public and system headers" no_private_includes
finish "public headers"
