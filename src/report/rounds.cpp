// The rounds of steering tasks (adaptive workflows): the rounds the
// submitter labelled its submissions with (`round`), or else each submit
// call one. The journal's submission lines say who
// submitted what in which call and when (coordinator/submissions.hpp); the
// instances' own lines say how they ended. Together they show what the
// thinker decided and how long each round took.

#include <fstream>
#include <map>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "report/report.hpp"

namespace tandem::detail::report {

namespace {

struct Ended {
  std::string state;
  long long started_us = 0;
  long long ended_us = 0;
};

}  // namespace

std::vector<SteeringRound> read_rounds(const std::string& run_dir, long long origin_us) {
  std::ifstream in(run_dir + "/journal.jsonl");
  using Instance = std::pair<std::string, int>;
  std::map<std::tuple<std::string, int, int>, SteeringRound> rounds;  // (by, index, round)
  std::map<Instance, std::tuple<std::string, int, int>> round_of;
  std::map<Instance, Ended> ended;  // the last line of each instance wins
  const auto seconds = [&](long long us) { return static_cast<double>(us - origin_us) / 1e6; };
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("task") || !j["task"].is_string() ||
        !j.value("index", nlohmann::json()).is_number_integer()) {
      continue;  // cut short by a crash, or not an instance's
    }
    const Instance me{j["task"].get<std::string>(), j["index"].get<int>()};
    try {
      if (j.contains("submitted")) {
        if (!j.contains("by") || j.value("call", 0) <= 0) continue;  // older journals
        const auto by = j["by"].get<std::pair<std::string, int>>();
        // The submitter's own round label, or else one round per call.
        const int round = j.value("round", -1) >= 0 ? j["round"].get<int>() : j["call"].get<int>();
        const std::tuple<std::string, int, int> key{by.first, by.second, round};
        SteeringRound& r = rounds[key];
        if (r.instances == 0) {
          r.submitter = fmt::format("{}[{}]", by.first, by.second);
          r.call = std::get<2>(key);
          r.at_s = seconds(j.value("at_us", origin_us));
        }
        ++r.instances;
        ++r.tasks[me.first];
        round_of[me] = key;
      } else if (j.contains("state") && j["state"].is_string()) {
        ended[me] = {j["state"].get<std::string>(), j.value("started_us", 0LL),
                     j.value("ended_us", 0LL)};
      }
    } catch (const nlohmann::json::exception&) {
      continue;  // a field of the wrong type: not ours to judge here
    }
  }
  for (const auto& [instance, key] : round_of) {
    const auto e = ended.find(instance);
    if (e == ended.end()) continue;
    SteeringRound& r = rounds[key];
    r.done += e->second.state == "DONE";
    r.failed += e->second.state == "FAILED";
    r.canceled += e->second.state == "CANCELED";
    if (e->second.started_us > 0) {
      const double start = seconds(e->second.started_us);
      if (r.first_start_s < 0 || start < r.first_start_s) r.first_start_s = start;
    }
    if (e->second.ended_us > 0) r.last_end_s = std::max(r.last_end_s, seconds(e->second.ended_us));
  }
  std::vector<SteeringRound> out;
  out.reserve(rounds.size());
  for (auto& [key, r] : rounds) out.push_back(std::move(r));
  return out;
}

}  // namespace tandem::detail::report
