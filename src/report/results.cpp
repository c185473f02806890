#include "report/results.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace tandem::detail::report {

std::vector<InstanceResult> read_results(const std::string& run_dir, const std::string& task) {
  const fs::path path = fs::path(run_dir) / "journal.jsonl";
  std::ifstream in(path);
  if (!in) {
    throw io_error(path.string(),
                   fs::is_directory(run_dir)
                       ? fmt::format("{} does not exist: is {} a Tandem run directory (one of "
                                     "`tandem run`, not an SPMD session, which runs no tasks)?",
                                     path.string(), run_dir)
                       : fmt::format("{}: no such run directory", run_dir));
  }
  std::map<std::pair<std::string, int>, InstanceResult> last;
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    const json j = json::parse(text, nullptr, false);
    // A line cut short by a crash is skipped, as --resume skips it; a lost
    // attempt's line says nothing of the final state.
    if (!j.is_object() || j.contains("lost") || !j.contains("state")) continue;
    if (!j["state"].is_string() || !j.contains("task") || !j["task"].is_string()) continue;
    InstanceResult r;
    r.task = j["task"].get<std::string>();
    if (!task.empty() && r.task != task) continue;
    auto integer = [&](const char* key) {
      const auto it = j.find(key);
      return it != j.end() && it->is_number_integer() ? it->get<int>() : 0;
    };
    r.index = integer("index");
    r.state = j["state"].get<std::string>();
    r.attempts = integer("attempts");
    r.exit_code = integer("exit_code");
    if (const auto it = j.find("reason"); it != j.end() && it->is_string()) r.reason = *it;
    if (const auto it = j.find("result"); it != j.end() && !it->is_null()) r.result = it->dump();
    r.line = line;
    last[{r.task, r.index}] = std::move(r);
  }
  std::vector<InstanceResult> out;
  out.reserve(last.size());
  for (auto& [key, r] : last) out.push_back(std::move(r));
  return out;
}

json results_json(const std::vector<InstanceResult>& results) {
  json out = json::array();
  for (const InstanceResult& r : results) {
    out.push_back({{"task", r.task},
                   {"index", r.index},
                   {"state", r.state},
                   {"attempts", r.attempts},
                   {"exit_code", r.exit_code},
                   {"reason", r.reason},
                   {"result", r.result.empty() ? json(nullptr) : json::parse(r.result)},
                   {"line", r.line}});
  }
  return out;
}

std::string results_text(const std::vector<InstanceResult>& results) {
  std::size_t width = 4;
  for (const InstanceResult& r : results) width = std::max(width, r.task.size());
  std::string out = fmt::format("{:<{}}  {:>6}  {:<8}  {:>8}  {}\n", "task", width, "index",
                                "state", "attempts", "result or reason");
  long long done = 0;
  for (const InstanceResult& r : results) {
    done += r.state == "DONE";
    const std::string& what = r.state == "DONE" ? r.result : r.reason;
    out += fmt::format("{:<{}}  {:>6}  {:<8}  {:>8}  {}\n", r.task, width, r.index, r.state,
                       r.attempts, what);
  }
  out += fmt::format("{} instance(s) finished, {} DONE; instances not listed have not finished\n",
                     results.size(), done);
  return out;
}

}  // namespace tandem::detail::report
