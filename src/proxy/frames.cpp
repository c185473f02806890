#include "proxy/frames.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "serve/buffer_pool.hpp"

namespace tandem::detail::proxy {

bool FrameReader::next(wire::Encoded& out, bool& bad) {
  bad = false;
  if (buffered() < sizeof(std::uint64_t)) return false;
  std::uint64_t length = 0;
  std::memcpy(&length, buffer_.data() + start_, sizeof length);
  if (length == 0 || length > kMaxFrame) {
    bad = true;
    return false;
  }
  if (buffered() < sizeof length + length) return false;
  out.buffer = BufferPool::instance().acquire(length);
  out.size = length;
  std::memcpy(out.buffer.get(), buffer_.data() + start_ + sizeof length, length);
  start_ += sizeof length + length;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > (std::size_t{1} << 20)) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<long>(start_));
    start_ = 0;
  }
  return true;
}

std::string frame(const wire::Encoded& message) {
  std::string out(sizeof(std::uint64_t) + message.size, '\0');
  const std::uint64_t length = message.size;
  std::memcpy(out.data(), &length, sizeof length);
  std::memcpy(out.data() + sizeof length, message.buffer.get(), message.size);
  return out;
}

bool write_all(int fd, const char* bytes, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, bytes, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

}  // namespace tandem::detail::proxy
