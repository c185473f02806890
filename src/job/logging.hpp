#pragma once
// Per-rank logging through spdlog. Every line carries the rank and the role,
// so that a job's merged stderr and its per-rank log files can be read at
// scale. Logging never throws into the job: spdlog's errors are swallowed
// and counted.

#include <string>

#include <spdlog/spdlog.h>

#include "base/role.hpp"

namespace tandem::detail {

/// Sets up the default logger for this rank, its lines tagged "rank R
/// @p label": stderr at @p stderr_level for the coordinator, at warn and
/// above for the other roles.
void setup_logging(int rank, Role role, const std::string& label, const std::string& stderr_level);

/// Adds the rank's log file in @p log_dir (rank-NNNNN.log), at info level.
void add_log_file(const std::string& log_dir, int rank);

/// Sends this process's stderr (fd 2: what function tasks and the libraries
/// they call print) to @p path, while Tandem's own log lines and a dying
/// rank's last line still reach the job's stderr. False, with @p why, when
/// the file cannot be opened; stderr is then left as it was.
bool send_stderr_to(const std::string& path, std::string* why);

/// Flushes and drops the file sink (at the end of a run).
void close_log_file();

/// Parses a level name; throws tandem::error for an unknown one.
spdlog::level::level_enum parse_level(const std::string& name);

}  // namespace tandem::detail
