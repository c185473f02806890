#pragma once
// Waiting for a non-blocking MPI operation without spinning a core away:
// MPI_Test with backoff (see backoff.hpp for why).

#include <mpi.h>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"

namespace tandem::detail {

inline void wait_request(MPI_Request& req, const BackoffSpec& spec) {
  wait_until(spec, [&] {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    return done != 0;
  });
}

}  // namespace tandem::detail
