#pragma once
// Messages between a task process and its worker's proxy on a Unix-domain
// socket: each is a wire-format message (transport/wire.hpp) preceded by its
// length as a little-endian uint64. Tensors above the shared-memory
// threshold travel as descriptors into node-local shared memory, exactly as
// between MPI ranks; smaller ones inline.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/wire.hpp"

namespace tandem::detail::proxy {

/// Frames larger than this are refused (and the connection closed): a
/// length that large is garbage, not a request.
constexpr std::uint64_t kMaxFrame = std::uint64_t{1} << 32;

/// Bytes read from a socket until they hold whole frames.
class FrameReader {
 public:
  /// Appends what arrived.
  void add(const char* data, std::size_t n) { buffer_.insert(buffer_.end(), data, data + n); }
  /// Takes the next whole frame into @p out; false when none is complete.
  /// Sets @p bad (and returns false) for a length past kMaxFrame.
  bool next(wire::Encoded& out, bool& bad);
  std::size_t buffered() const { return buffer_.size() - start_; }

 private:
  std::vector<char> buffer_;
  std::size_t start_ = 0;
};

/// Appends the frame for @p message (length, then the bytes) to @p out.
void append_frame(std::string& out, const wire::Encoded& message);

/// Writes the frame for @p message to blocking socket @p fd, length and
/// bytes in one call, without copying them. False on error (errno).
bool write_frame(int fd, const wire::Encoded& message);

}  // namespace tandem::detail::proxy
