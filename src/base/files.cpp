#include "base/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail {

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = EIO;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::string find_program(const std::string& name, const char* path) {
  const std::string dirs = path ? path : "/bin:/usr/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start);
    if (candidate.empty()) candidate = ".";  // an empty entry is the working directory
    candidate += '/';
    candidate += name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

namespace {

[[noreturn]] void fail(const std::string& path, const char* doing, int err) {
  throw io_error(path, fmt::format("cannot {} {}: {}", doing, path, std::strerror(err)));
}

}  // namespace

void write_file_atomically(const std::string& path, std::string_view text) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "create", errno);
  if (!write_all(fd, text.data(), text.size()) || ::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, "write", err);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, "write", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, "replace", err);
  }
}

void append_line_durably(const std::string& path, std::string_view line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "open", errno);
  const off_t before = ::lseek(fd, 0, SEEK_END);
  if (!write_all(fd, line.data(), line.size()) || ::fdatasync(fd) != 0) {
    const int err = errno;
    if (before >= 0 && ::ftruncate(fd, before) != 0) {
      // Nothing more to do: the reader skips a line cut short.
    }
    ::close(fd);
    fail(path, "append to", err);
  }
  ::close(fd);
}

namespace {

// Where the last whole line of the file ends. Reads backwards, so that a
// long journal costs little.
long long end_of_whole_lines(int fd, long long size) {
  char chunk[65536];
  long long end = size;
  while (end > 0) {
    const long long start = std::max(0LL, end - static_cast<long long>(sizeof chunk));
    const ssize_t n = ::pread(fd, chunk, static_cast<std::size_t>(end - start), start);
    if (n <= 0) return size;  // cannot tell; leave the file as it is
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (chunk[i] == '\n') return start + i + 1;
    }
    end = start;
  }
  return 0;
}

}  // namespace

std::string tail_of_file(const std::string& path, int max_lines, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    const auto size = static_cast<long long>(st.st_size);
    const long long start = std::max(0LL, size - static_cast<long long>(max_bytes));
    text.resize(static_cast<std::size_t>(size - start));
    const ssize_t n = ::pread(fd, text.data(), text.size(), start);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (start > 0) {
      // Begin at a whole line.
      const auto nl = text.find('\n');
      text.erase(0, nl == std::string::npos ? 0 : nl + 1);
    }
  }
  ::close(fd);
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    pos = nl + 1;
  }
  std::string out;
  const std::size_t first =
      lines.size() > static_cast<std::size_t>(max_lines) ? lines.size() - max_lines : 0;
  for (std::size_t i = first; i < lines.size(); ++i) {
    if (!out.empty()) out += " | ";
    out += lines[i];
  }
  return out;
}

long long cut_torn_last_line(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  long long cut = 0;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    const long long keep = end_of_whole_lines(fd, st.st_size);
    if (keep < st.st_size && ::ftruncate(fd, keep) == 0) cut = st.st_size - keep;
  }
  ::close(fd);
  return cut;
}

const char* env_value(const std::vector<std::string>& env, const std::string& name) {
  for (const std::string& e : env) {
    if (e.size() > name.size() && e[name.size()] == '=' && e.compare(0, name.size(), name) == 0) {
      return e.c_str() + name.size() + 1;
    }
  }
  return nullptr;
}

}  // namespace tandem::detail
