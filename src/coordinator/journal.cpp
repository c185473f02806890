// The journal: one JSON line per task instance that reached a final state.

#include "coordinator/journal.hpp"

#include <charconv>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "tandem/error.hpp"

namespace tandem::detail {

std::map<std::pair<std::string, int>, TaskState> read_journal(const std::string& path) {
  std::map<std::pair<std::string, int>, TaskState> states;
  std::ifstream in(path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      // Only final states are journaled; anything else is not ours.
      const auto st = parse_name<TaskState>(j.at("state").get<std::string>());
      if (!st || !is_final(*st)) throw std::runtime_error("no final state");
      states[{j.at("task").get<std::string>(), j.at("index").get<int>()}] = *st;
    } catch (const std::exception& e) {
      // A line cut short by a crash: that task simply runs again.
      spdlog::warn("{}:{}: skipping an unreadable journal line ({})", path, lineno, e.what());
    }
  }
  return states;
}

Journal::Journal(const std::string& path, const Workflow& wf) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) {
    throw error(fmt::format("cannot open the journal {}: {}", path, std::strerror(errno)));
  }
  buffer_.resize(1 << 20);
  for (const TaskSpec& t : wf.tasks) quoted_names_.push_back(nlohmann::json(t.name).dump());
}

Journal::~Journal() {
  flush();
  if (file_) std::fclose(file_);
}

namespace {

// Appends a literal and a number to the journal's buffer without the
// format-string parsing, strlen and bounds checks of the general tools.
template <std::size_t N>
char* put(char* p, const char (&literal)[N]) {
  std::memcpy(p, literal, N - 1);
  return p + N - 1;
}

char* put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

char* put(char* p, long long v) {
  return std::to_chars(p, p + 24, v).ptr;
}

}  // namespace

void Journal::append(const Instance& inst) {
  // Written by hand rather than through a format string: at a million tasks
  // a second this line is the coordinator's largest cost per task.
  std::string reason;
  if (!inst.reason.empty()) {
    reason =
        nlohmann::json(inst.reason).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  const std::string& name = quoted_names_[inst.task];
  const std::size_t most = 256 + name.size() + reason.size();
  if (buffer_.size() - used_ < most) {
    flush();
    if (buffer_.size() < most) buffer_.resize(most);
  }
  char* p = buffer_.data() + used_;
  p = put(p, "{\"task\":");
  p = put(p, std::string_view(name));
  p = put(p, ",\"index\":");
  p = put(p, static_cast<long long>(inst.index));
  p = put(p, ",\"state\":\"");
  p = put(p, name_of(inst.state));
  p = put(p, "\",\"attempts\":");
  p = put(p, static_cast<long long>(inst.attempt));
  p = put(p, ",\"exit_code\":");
  p = put(p, static_cast<long long>(inst.exit_code));
  p = put(p, ",\"worker\":");
  p = put(p, static_cast<long long>(inst.worker));
  p = put(p, ",\"scheduled_us\":");
  p = put(p, static_cast<long long>(inst.t_scheduled));
  p = put(p, ",\"started_us\":");
  p = put(p, static_cast<long long>(inst.t_started));
  p = put(p, ",\"ended_us\":");
  p = put(p, static_cast<long long>(inst.t_ended));
  if (!reason.empty()) {
    p = put(p, ",\"reason\":");
    p = put(p, std::string_view(reason));
  }
  p = put(p, "}\n");
  used_ = static_cast<std::size_t>(p - buffer_.data());
}

void Journal::flush() {
  if (used_ > 0) {
    if (std::fwrite(buffer_.data(), 1, used_, file_) != used_ && !write_failed_) {
      write_failed_ = true;
      spdlog::error("writing the journal failed: {}; results are still in summary.json",
                    std::strerror(errno));
    }
    used_ = 0;
  }
  std::fflush(file_);
}

}  // namespace tandem::detail
