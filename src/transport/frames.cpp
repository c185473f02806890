#include "transport/frames.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "transport/buffer_pool.hpp"

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

void append_frame(std::string& out, const wire::Encoded& message) {
  const std::uint64_t length = message.size;
  out.append(reinterpret_cast<const char*>(&length), sizeof length);
  out.append(reinterpret_cast<const char*>(message.buffer.get()), message.size);
}

bool write_frame(int fd, const wire::Encoded& message) {
  std::uint64_t length = message.size;
  iovec parts[2] = {{&length, sizeof length}, {message.buffer.get(), message.size}};
  msghdr m{};
  m.msg_iov = parts;
  m.msg_iovlen = 2;
  while (m.msg_iovlen > 0) {
    ssize_t k = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    // Skip what was written; a large frame may take several calls.
    while (m.msg_iovlen > 0 && static_cast<std::size_t>(k) >= m.msg_iov->iov_len) {
      k -= static_cast<ssize_t>(m.msg_iov->iov_len);
      ++m.msg_iov;
      --m.msg_iovlen;
    }
    if (m.msg_iovlen > 0) {
      m.msg_iov->iov_base = static_cast<char*>(m.msg_iov->iov_base) + k;
      m.msg_iov->iov_len -= static_cast<std::size_t>(k);
    }
  }
  return true;
}

}  // namespace tandem::detail::proxy
