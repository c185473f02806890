#pragma once
// Choosing a transport for a message's tensors and moving the bytes: inline
// in the MPI message, in node-local shared memory, or in an HDF5 file.

#include <cstdint>
#include <string>
#include <vector>

#include "transport/shm.hpp"
#include "transport/wire.hpp"

namespace tandem::detail {

/// A message ready to send, and what to hand back once the other side is
/// done with it.
struct Outgoing {
  wire::Encoded message;
  shm::Segment* segment = nullptr;  // our segment holding the tensors (shm)
  std::vector<std::string> files;   // HDF5 files we wrote (hdf5)
};

/// Encodes @p tensors with their bytes sent by @p transport. For shm the
/// bytes go into one of our segments (falling back to inline when none is
/// free); for hdf5 into the file @p hdf5_path. @throws tandem::error when
/// an HDF5 file cannot be written.
/// @p holder_pid: the process that will hand a shm segment back (a reply's
/// client), so that it can be taken back should that process die.
Outgoing stage(wire::Kind kind, std::uint64_t id, int service, const TensorList& tensors,
               const std::string& text, Transport transport, const std::string& hdf5_path,
               std::uint32_t flags, std::uint32_t holder_pid = 0);

/// Fills in the staged tensors of @p d. Shared memory gives views into the
/// sender's segment; with @p hand_back_when_dropped, the segment is marked
/// free when the last view of it goes (replies). HDF5 is read into memory.
/// Returns false with @p why for a descriptor that is wrong.
bool resolve(wire::Decoded& d, bool hand_back_when_dropped, std::string& why);

/// Hands back what @p o holds.
void finish(Outgoing& o);

/// Total bytes of the tensors.
std::size_t total_bytes(const TensorList& tensors);

}  // namespace tandem::detail
