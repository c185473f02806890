#include "job/run_dir.hpp"

#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "job/allocation.hpp"
#include "tandem/error.hpp"

namespace fs = std::filesystem;

namespace tandem::detail {

std::string choose_run_dir(const Workflow& wf, const std::string& explicit_dir,
                           const std::string& run_root, bool resume) {
  if (!explicit_dir.empty()) return fs::absolute(explicit_dir).lexically_normal().string();
  const fs::path root = run_root.empty() ? fs::path(wf.job.run_root) : fs::absolute(run_root);
  const std::string prefix = wf.job.name + "-";
  if (resume) {
    // The run whose journal changed last: names carry times or job ids,
    // which do not sort by age.
    std::string newest;
    fs::file_time_type newest_time{};
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      const fs::path journal = e.path() / "journal.jsonl";
      if (name.rfind(prefix, 0) != 0 || !fs::exists(journal)) continue;
      const auto t = fs::last_write_time(journal, ec);
      if (newest.empty() || t > newest_time) {
        newest = name;
        newest_time = t;
      }
    }
    if (newest.empty()) {
      throw error(fmt::format("--resume: no earlier run of job '{}' in {}; name one with --run-dir",
                              wf.job.name, root.string()));
    }
    return (root / newest).string();
  }
  // In a batch job the directory is named after the job id, which is what a
  // person has at hand when looking for it; elsewhere after the time.
  std::string stamp = read_allocation().job_id;
  if (stamp.empty()) {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
    stamp = buf;
  }
  fs::path dir = root / (prefix + stamp);
  for (int i = 2; fs::exists(dir); ++i) dir = root / fmt::format("{}{}-{}", prefix, stamp, i);
  return dir.string();
}

void prepare_run_dir(const std::string& dir, const Workflow& wf) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "logs", ec);
  if (ec) throw error(fmt::format("cannot create the run directory {}: {}", dir, ec.message()));
  for (const TaskSpec& t : wf.tasks) {
    fs::create_directories(fs::path(dir) / "tasks" / t.name, ec);
    if (ec) throw error(fmt::format("cannot create {}/tasks/{}: {}", dir, t.name, ec.message()));
  }
  std::ofstream(fs::path(dir) / "workflow.toml", std::ios::binary) << wf.text;
  std::ofstream(fs::path(dir) / "workflow.resolved.toml") << resolved_toml(wf);
  std::ofstream(fs::path(dir) / "allocation.json") << read_allocation().to_json().dump(2) << "\n";
}

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
      const std::string s = j.at("state").get<std::string>();
      TaskState st = s == "DONE"     ? TaskState::DONE
                     : s == "FAILED" ? TaskState::FAILED
                                     : TaskState::CANCELED;
      states[{j.at("task").get<std::string>(), j.at("index").get<int>()}] = st;
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
  p = put(p, std::string_view(state_name(inst.state)));
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
