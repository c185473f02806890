#include "job/logging.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "tandem/error.hpp"

namespace tandem::detail {

namespace {
std::string g_tag;
}

spdlog::level::level_enum parse_level(const std::string& name) {
  const auto level = spdlog::level::from_str(name);
  if (level == spdlog::level::off && name != "off") {
    throw error(
        fmt::format("unknown log level '{}': use trace, debug, info, warn, error or off", name));
  }
  return level;
}

void setup_logging(int rank, const std::string& role, const std::string& stderr_level) {
  g_tag = fmt::format("rank {} {}", rank, role);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_st>();
  const auto wanted = parse_level(stderr_level);
  sink->set_level(role == "coordinator" ? wanted : std::max(wanted, spdlog::level::warn));
  auto logger = std::make_shared<spdlog::logger>("tandem", sink);
  logger->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [{}] [%l] %v", g_tag));
  logger->set_level(spdlog::level::debug);
  logger->set_error_handler([](const std::string&) {});
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

void add_log_file(const std::string& log_dir, int rank) {
  try {
    auto file = std::make_shared<spdlog::sinks::basic_file_sink_st>(
        fmt::format("{}/rank-{:05d}.log", log_dir, rank), false);
    file->set_level(spdlog::level::info);
    file->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%f] [{}] [%l] %v", g_tag));
    spdlog::default_logger()->sinks().push_back(file);
  } catch (const spdlog::spdlog_ex& e) {
    spdlog::warn("cannot open the log file in {}: {}", log_dir, e.what());
  }
}

void close_log_file() {
  auto logger = spdlog::default_logger();
  logger->flush();
  auto& sinks = logger->sinks();
  if (sinks.size() > 1) sinks.resize(1);
}

}  // namespace tandem::detail
