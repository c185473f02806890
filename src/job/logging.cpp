#include "job/logging.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <chrono>

#include "base/raise.hpp"
#include "base/rank_record.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {
std::string g_tag;

// A rank that dies of a fatal signal still leaves its last lines: its black
// box is written first, then this flushes the log. Flushing takes the
// sinks' locks, which the dying thread may hold; the alarm ends the process
// if it hangs, so a crash never becomes a hung job.
void flush_before_dying() {
  ::alarm(2);
  if (auto* logger = spdlog::default_logger_raw()) logger->flush();
}
}  // namespace

spdlog::level::level_enum parse_level(const std::string& name) {
  const auto level = spdlog::level::from_str(name);
  if (level == spdlog::level::off && name != "off") {
    throw argument_error(
        fmt::format("unknown log level '{}': use trace, debug, info, warn, error or off", name));
  }
  return level;
}

void setup_logging(int rank, Role role, const std::string& label, const std::string& stderr_level) {
  g_tag = fmt::format("rank {} {}", rank, label);
  set_error_origin(g_tag);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  const auto wanted = parse_level(stderr_level);
  sink->set_level(role == Role::coordinator ? wanted : std::max(wanted, spdlog::level::warn));
  auto logger = std::make_shared<spdlog::logger>("tandem", sink);
  logger->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [{}] [%l] %v", g_tag));
  logger->set_level(spdlog::level::debug);
  logger->set_error_handler([](const std::string&) {});
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void add_log_file(const std::string& log_dir, int rank) {
  try {
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        fmt::format("{}/rank-{:05d}.log", log_dir, rank), false);
    file->set_level(spdlog::level::info);
    file->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%f] [{}] [%l] %v", g_tag));
    spdlog::default_logger()->sinks().push_back(file);
    // Logs fill while the run goes: a killed rank leaves at most a second
    // unwritten (and warnings at once, flush_on). Started after the sink is
    // in place; the flusher must not see the list of sinks change.
    spdlog::flush_every(std::chrono::seconds(1));
    rank_record::set_flush_hook(flush_before_dying);
  } catch (const spdlog::spdlog_ex& e) {
    spdlog::warn("cannot open the log file in {}: {}", log_dir, e.what());
  }
}

bool send_stderr_to(const std::string& path, std::string* why) {
  const int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (file < 0) {
    if (why) *why = fmt::format("cannot open {}: {}", path, std::strerror(errno));
    return false;
  }
  const int terminal = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
  std::FILE* out = terminal >= 0 ? ::fdopen(terminal, "w") : nullptr;
  if (!out) {
    if (why) *why = fmt::format("cannot keep the job's stderr: {}", std::strerror(errno));
    if (terminal >= 0) ::close(terminal);
    ::close(file);
    return false;
  }
  std::setvbuf(out, nullptr, _IONBF, 0);
  // The flusher walks the sinks: stop it while the first one is replaced.
  spdlog::flush_every(std::chrono::seconds(0));
  auto logger = spdlog::default_logger();
  auto& sinks = logger->sinks();
  auto log_sink =
      std::make_shared<spdlog::sinks::stdout_sink_base<spdlog::details::console_mutex>>(out);
  log_sink->set_level(sinks[0]->level());
  log_sink->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [{}] [%l] %v", g_tag));
  sinks[0] = log_sink;
  std::fflush(stderr);
  ::dup2(file, 2);
  ::close(file);
  rank_record::set_report_fd(terminal);
  if (sinks.size() > 1) spdlog::flush_every(std::chrono::seconds(1));
  return true;
}

void close_log_file() {
  spdlog::flush_every(std::chrono::seconds(0));  // stops the flusher
  rank_record::set_flush_hook(nullptr);
  auto logger = spdlog::default_logger();
  logger->flush();
  auto& sinks = logger->sinks();
  if (sinks.size() > 1) sinks.resize(1);
}

}  // namespace tandem::detail
