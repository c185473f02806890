#pragma once
// The run directory: everything a run leaves behind.
//
//   workflow.toml            the file as given
//   workflow.resolved.toml   with every default filled in
//   journal.jsonl            one line per task instance that reached a final
//                            state, appended as they finish (resume reads it)
//   summary.json             counts, makespan, rates, utilisation, failures
//   logs/rank-NNNNN.log      one log per rank
//   tasks/NAME/              per-task outputs: INDEX.out and INDEX.err for
//                            commands; output_dir() of function tasks

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/workflow.hpp"
#include "coordinator/scheduler.hpp"

namespace tandem::detail {

/// Chooses the run directory: @p explicit_dir if given; with @p resume the
/// newest earlier run of this job under the run root; else a new one named
/// after the job and the time. @throws tandem::error when resuming finds none.
std::string choose_run_dir(const Workflow& wf, const std::string& explicit_dir,
                           const std::string& run_root, bool resume);

/// Creates the directory and its layout, and records the workflow.
void prepare_run_dir(const std::string& dir, const Workflow& wf);

/// Final states of an earlier run, by (task name, index): the last line wins.
std::map<std::pair<std::string, int>, TaskState> read_journal(const std::string& path);

/// Appends final task states, one JSON object a line. Lines are buffered and
/// reach the file at each flush(), which the coordinator calls after every
/// batch of results, so a crash loses at most the batch being recorded.
class Journal {
 public:
  Journal(const std::string& path, const Workflow& wf);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  void append(const Instance& inst);
  void flush();

 private:
  std::FILE* file_ = nullptr;
  std::vector<std::string> quoted_names_;
  std::vector<char> buffer_;
  std::size_t used_ = 0;
  bool write_failed_ = false;
};

}  // namespace tandem::detail
