#pragma once
// `tandem results RUN_DIR`: each task instance's final state, return value
// and reason, read from the run's journal across every job that worked on
// it. An instance's last state line wins (after --resume a CANCELED line
// and a later DONE line both stand; DONE is its state). The Python package
// reads the journal the same way (python/tandem/results.py).

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem::detail::report {

struct InstanceResult {
  std::string task;
  int index = 0;
  std::string state;  // DONE, FAILED or CANCELED
  int attempts = 0;
  int exit_code = 0;
  std::string reason;
  std::string result;  // the return value as JSON text; empty when there is none
  int line = 0;        // in journal.jsonl, from 1
};

/// The final instances of the run in @p run_dir, sorted by task name and
/// index (only @p task's when not empty).
/// @throws tandem::io_error when the directory has no journal.
std::vector<InstanceResult> read_results(const std::string& run_dir, const std::string& task = {});

/// As `tandem results --json` prints them: an array of objects.
nlohmann::json results_json(const std::vector<InstanceResult>& results);
/// One line per instance, for a person.
std::string results_text(const std::vector<InstanceResult>& results);

}  // namespace tandem::detail::report
