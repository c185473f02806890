#include "job/run_dir.hpp"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "base/files.hpp"
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
      throw io_error(
          root.string(),
          fmt::format("--resume: no earlier run of job '{}' in {}; name one with --run-dir",
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
  if (ec) {
    throw io_error(dir, fmt::format("cannot create the run directory {}: {}", dir, ec.message()));
  }
  for (const TaskSpec& t : wf.tasks) {
    fs::create_directories(fs::path(dir) / "tasks" / t.name, ec);
    if (ec) {
      throw io_error(dir + "/tasks/" + t.name,
                     fmt::format("cannot create {}/tasks/{}: {}", dir, t.name, ec.message()));
    }
  }
  write_file_atomically(dir + "/workflow.toml", wf.text);
  write_file_atomically(dir + "/workflow.resolved.toml", resolved_toml(wf));
  write_file_atomically(dir + "/allocation.json", read_allocation().to_json().dump(2) + "\n");
}

namespace {

// FNV-1a, 64 bits: stable across builds and machines, which std::hash is not.
std::string text_hash(const std::string& text) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

}  // namespace

nlohmann::json workflow_fields(const Workflow& wf) {
  return {{"workflow", wf.path}, {"workflow_hash", text_hash(wf.text)}};
}

bool record_job_without_summary(const std::string& dir) {
  const std::string marker = dir + "/running.json";
  std::ifstream in(marker);
  if (!in) return false;
  auto before = nlohmann::json::parse(in, nullptr, false);
  if (!before.is_object()) before = nlohmann::json::object();
  before["ended_us"] = nullptr;
  before["ended_without_summary"] = true;
  before["exit_code"] = nullptr;
  append_line_durably(dir + "/history.jsonl", before.dump() + "\n");
  std::error_code ec;
  fs::remove(marker, ec);
  return true;
}

void job_started(const std::string& dir, const Workflow& wf, bool resume) {
  if (record_job_without_summary(dir)) {
    spdlog::warn(
        "the previous job on {} ended without a summary (a rank died, the job was killed hard, "
        "or a node was lost); history.jsonl records it, and its finished results are in the "
        "journal",
        dir);
  }
  nlohmann::json now = workflow_fields(wf);
  now["started_us"] = now_us();
  now["resumed"] = resume;
  now["allocation"] = read_allocation().to_json();
  write_file_atomically(dir + "/running.json", now.dump() + "\n");
  // `tandem supervise` learns the run directory this way, to resume it.
  if (const char* report = std::getenv("TANDEM_REPORT_RUN_DIR"); report && *report) {
    write_file_atomically(report, dir + "\n");
  }
}

void job_ended_with_summary(const std::string& dir) {
  std::error_code ec;
  fs::remove(dir + "/running.json", ec);
}

}  // namespace tandem::detail
