#include "job/sockets.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail {

std::string socket_path(const std::string& dir, int worker_index) {
  return fmt::format("{}/worker-{}.sock", dir, worker_index);
}

void check_socket_path(const std::string& path) {
  constexpr std::size_t kMax = sizeof(sockaddr_un::sun_path) - 1;
  if (path.size() > kMax) {
    throw io_error(
        path,
        fmt::format(
            "the proxy's socket path {} is {} bytes, longer than the {} a Unix socket allows; "
            "set [job.proxy] socket_dir to a shorter private directory (for example "
            "/tmp/tandem-$USER)",
            path, path.size(), kMax));
  }
}

void ensure_private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw io_error(
        dir, fmt::format("cannot create the socket directory {}: {}", dir, std::strerror(errno)));
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw io_error(
        dir, fmt::format("cannot inspect the socket directory {}: {}", dir, std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode))
    throw io_error(dir, fmt::format("the socket directory {} is not a directory", dir));
  if (st.st_uid != ::getuid()) {
    throw io_error(dir, fmt::format("the socket directory {} belongs to uid {}, not to us (uid {})",
                                    dir, st.st_uid, ::getuid()));
  }
  if ((st.st_mode & 0077) != 0) {
    throw io_error(
        dir,
        fmt::format(
            "the socket directory {} has mode {:o}; it must be private (0700) so that no other "
            "user can reach the services through it",
            dir, st.st_mode & 0777));
  }
}

}  // namespace tandem::detail
