#pragma once
// The journal, RUN_DIR/journal.jsonl: one line per task instance that
// reached a final state, appended as they finish. It is what --resume
// reads to skip finished work.

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config/workflow.hpp"
#include "coordinator/scheduler.hpp"

namespace tandem::detail {

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
