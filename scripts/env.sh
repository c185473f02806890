# Sourced by the scripts: the environment Tandem's MPI jobs run under on a
# development machine. Ranks often outnumber cores here, so Open MPI must yield
# instead of spinning; root needs Open MPI's explicit consent.
export OMPI_MCA_mpi_yield_when_idle=1
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Quiet Open MPI's warnings about missing high-speed networks on laptops and VMs.
export OMPI_MCA_btl_base_warn_component_unused=0
TANDEM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TANDEM_BUILD=${TANDEM_BUILD:-$TANDEM_ROOT/build}
tandem_build() {
  cmake -S "$TANDEM_ROOT" -B "$TANDEM_BUILD" -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} >/dev/null
  cmake --build "$TANDEM_BUILD" -j "$(nproc)"
}
