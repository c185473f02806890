#pragma once
/// @file transport.hpp
/// How a request's tensors travel to a service and the reply back.

#include <cstdint>

namespace tandem {

/// How a request's tensors travel to the service (and the reply back). The
/// workflow file names them too: a service's `transport` is "auto",
/// "inline", "shm" or "hdf5".
enum class Transport : std::uint8_t {
  // The three ways bytes travel keep these values: they are written into
  // Tandem's messages. `automatic` is a choice, never sent.
  automatic = 255,  ///< by size and locality (`[job.staging]`, the service's `transport`)
  inline_mpi = 0,   ///< inside the MPI message
  shm = 1,          ///< node-local shared memory (falls back to inline across nodes)
  hdf5 = 2,         ///< an HDF5 file on a filesystem both ranks see
};

}  // namespace tandem
