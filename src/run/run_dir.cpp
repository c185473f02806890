#include "run/run_dir.hpp"

#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "tandem/error.hpp"

namespace fs = std::filesystem;

namespace tandem::detail {

std::string choose_run_dir(const Workflow& wf, const std::string& explicit_dir,
                           const std::string& run_root, bool resume) {
  if (!explicit_dir.empty()) return fs::absolute(explicit_dir).lexically_normal().string();
  const fs::path root = run_root.empty() ? fs::path(wf.job.run_root) : fs::absolute(run_root);
  const std::string prefix = wf.job.name + "-";
  if (resume) {
    // The names sort by time, so the greatest is the newest.
    std::string newest;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) == 0 && fs::exists(e.path() / "journal.jsonl") && name > newest) {
        newest = name;
      }
    }
    if (newest.empty()) {
      throw error(fmt::format("--resume: no earlier run of job '{}' in {}; name one with --run-dir",
                              wf.job.name, root.string()));
    }
    return (root / newest).string();
  }
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
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
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  for (const TaskSpec& t : wf.tasks) quoted_names_.push_back(nlohmann::json(t.name).dump());
}

Journal::~Journal() {
  if (file_) std::fclose(file_);
}

void Journal::append(const Instance& inst) {
  line_.clear();
  fmt::format_to(std::back_inserter(line_),
                 "{{\"task\":{},\"index\":{},\"state\":\"{}\",\"attempts\":{},\"exit_code\":{},"
                 "\"worker\":{},\"scheduled_us\":{},\"started_us\":{},\"ended_us\":{}",
                 quoted_names_[inst.task], inst.index, state_name(inst.state), inst.attempt,
                 inst.exit_code, inst.worker, inst.t_scheduled, inst.t_started, inst.t_ended);
  if (!inst.reason.empty()) {
    line_ += ",\"reason\":";
    line_ +=
        nlohmann::json(inst.reason).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  line_ += "}\n";
  std::fwrite(line_.data(), 1, line_.size(), file_);
}

void Journal::flush() {
  std::fflush(file_);
}

}  // namespace tandem::detail
