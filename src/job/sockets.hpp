#pragma once
// The workers' socket directory (RUN_DIR/sockets, or [job.proxy]
// socket_dir): private to the user, and paths that fit a Unix socket
// address. Rank 0 checks both before the run starts, so that a bad
// directory stops the run with its reason instead of failing tasks later.

#include <string>

namespace tandem::detail {

/// The socket path for worker @p worker_index in directory @p dir.
std::string socket_path(const std::string& dir, int worker_index);

/// Creates @p dir (mode 0700) if missing and checks that it is a directory
/// owned by us that nobody else may enter. @throws tandem::error saying what
/// is wrong.
void ensure_private_dir(const std::string& dir);

/// @throws tandem::error when @p path does not fit a Unix socket address.
void check_socket_path(const std::string& path);

}  // namespace tandem::detail
