#include "base/mpi_check.hpp"

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw mpi_error(code, fmt::format("rank {}: {} failed at {}:{}: {}", rank, call, file, line,
                                    std::string(text, len)));
}

}  // namespace tandem::detail
