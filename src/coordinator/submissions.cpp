#include "coordinator/submissions.hpp"

#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/clock.hpp"

namespace tandem::detail {

// Written by hand rather than through a json object: a round of a
// thousand submissions is a thousand lines, and the args are JSON text
// already (the coordinator made them compact).
std::string submission_line(const SubmissionRecord& r) {
  const auto text = [](const std::string& v) {
    return nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string after = "[";
  for (const auto& [task, index] : r.after) {
    fmt::format_to(std::back_inserter(after), "{}[{},{}]", after.size() > 1 ? "," : "", text(task),
                   index);
  }
  after += "]";
  std::string line = fmt::format(
      R"({{"submitted":{},"task":{},"index":{},"priority":{},"after":{},"args":{},"by":[{},{}],)"
      R"("call":{},"at_us":{})",
      text(r.key), text(r.task), r.index, r.priority, after,
      r.args_json.empty() ? "{}" : r.args_json, text(r.by.first), r.by.second, r.call, r.at_us);
  if (r.round >= 0) fmt::format_to(std::back_inserter(line), R"(,"round":{})", r.round);
  if (!r.after_tasks.empty()) {
    line += R"(,"after_tasks":[)";
    for (std::size_t i = 0; i < r.after_tasks.size(); ++i) {
      line += (i > 0 ? "," : "") + text(r.after_tasks[i]);
    }
    line += "]";
  }
  if (r.retries >= 0) fmt::format_to(std::back_inserter(line), R"(,"retries":{})", r.retries);
  if (r.timeout_s >= 0) fmt::format_to(std::back_inserter(line), R"(,"timeout":{})", r.timeout_s);
  line += "}\n";
  return line;
}

std::vector<SubmissionRecord> read_submissions(const std::string& path) {
  std::vector<SubmissionRecord> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"submitted\"") == std::string::npos) continue;  // cheap: most lines are not
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("submitted")) {
      if (j.is_discarded()) break;  // cut short by a crash: never acknowledged
      continue;
    }
    try {
      SubmissionRecord r;
      r.key = j.at("submitted").get<std::string>();
      r.task = j.at("task").get<std::string>();
      r.index = j.at("index").get<int>();
      r.priority = j.value("priority", 0);
      r.after = j.value("after", std::vector<std::pair<std::string, int>>{});
      r.args_json = j.contains("args") ? j["args"].dump() : "{}";
      r.by = j.value("by", std::pair<std::string, int>{});
      r.call = j.value("call", 0);
      r.at_us = j.value("at_us", 0LL);
      r.round = j.value("round", -1);
      r.after_tasks = j.value("after_tasks", std::vector<std::string>{});
      r.retries = j.value("retries", -1);
      r.timeout_s = j.value("timeout", -1.0);
      out.push_back(std::move(r));
    } catch (const std::exception&) {
      break;
    }
  }
  return out;
}

std::vector<std::string> replay_submissions(Scheduler& sched, const Workflow& wf,
                                            const std::vector<SubmissionRecord>& records,
                                            std::vector<int>& finals) {
  std::vector<std::string> notes;
  for (const SubmissionRecord& r : records) {
    const int task = wf.find_task(r.task);
    if (task < 0) {
      // Ids after it would shift: stop here; the submitter submits again.
      notes.push_back(fmt::format(
          "the journal's submission '{}' is of task '{}', which the workflow no longer has: "
          "it and the {} submission(s) after it are not added again",
          r.key, r.task, records.size() - static_cast<std::size_t>(&r - records.data()) - 1));
      break;
    }
    Submission sub{task, r.args_json, r.priority, {}, r.key, r.retries, r.timeout_s};
    for (const std::string& name : r.after_tasks) {
      const int other = wf.find_task(name);
      if (other < 0) {
        notes.push_back(
            fmt::format("submission '{}' waits for task '{}', which the workflow no "
                        "longer has: it is added without waiting for it",
                        r.key, name));
        continue;
      }
      const std::vector<int> all = sched.instances_of(other);
      sub.after.insert(sub.after.end(), all.begin(), all.end());
    }
    for (const auto& [name, index] : r.after) {
      const int before = sched.find(wf.find_task(name), index);
      if (before < 0) {
        notes.push_back(
            fmt::format("submission '{}' waits for {}[{}], which does not exist: "
                        "it is added without waiting for it",
                        r.key, name, index));
        continue;
      }
      sub.after.push_back(before);
    }
    const int id = sched.submit(sub, now_us(), finals);
    if (sched.instance(id).index != r.index) {
      notes.push_back(fmt::format("submission '{}' was {}[{}] and is now {}[{}]", r.key, r.task,
                                  r.index, r.task, sched.instance(id).index));
    }
  }
  return notes;
}

}  // namespace tandem::detail
