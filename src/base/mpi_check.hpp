#pragma once
// TANDEM_MPI_CHECK(call): the one place where MPI return codes become
// exceptions that name the call and MPI's own message.

#include <mpi.h>

#include <string>

namespace tandem::detail {
[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);
}

#define TANDEM_MPI_CHECK(call)                                                      \
  do {                                                                              \
    const int tandem_mpi_rc_ = (call);                                              \
    if (tandem_mpi_rc_ != MPI_SUCCESS) {                                            \
      ::tandem::detail::throw_mpi_error(tandem_mpi_rc_, #call, __FILE__, __LINE__); \
    }                                                                               \
  } while (0)

namespace tandem::detail {

/// Makes a failing MPI call on @p comm return its code instead of aborting
/// the job, so that TANDEM_MPI_CHECK can report the call, the code's text
/// and the rank. Every communicator Tandem creates or duplicates gets it.
inline void return_errors(MPI_Comm comm) {
  if (comm != MPI_COMM_NULL) MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
}

}  // namespace tandem::detail
