#pragma once
// Instances submitted while the run goes (adaptive workflows, issue 20), as
// the journal keeps them: one line per submission, written and made durable
// before the submitter hears its handle, so that a resumed run adds the same
// instances with the same ids (in the same order) before anything else is
// decided, reruns those that had not finished, and gives a rerun submitter
// its old handles back by key instead of submitting twice.
//
//   {"submitted":"KEY","task":"sim","index":12,"priority":0,
//    "after":[["sim",3],["prep",0]],"args":{...},
//    "by":["think",0],"call":3,"at_us":1796480885670894,"round":2,
//    "after_tasks":["prep"],"retries":2,"timeout":30.0}
//
// The last four only when given. `after_tasks` names workflow tasks whose
// every instance it waits for, those there were when it was submitted:
// replayed in order, the same ones.
//
// `by` is the steering instance that submitted it and `call` which of its
// attempt's submit calls (from 1). `round` is the submitter's own label, if
// it gave one: `tandem report` groups by it, or else by call. `at_us` is
// when it was journaled.
//
// `after` names instances by task and index, not by id: ids are positions,
// and a resumed workflow may have given a task more instances.

#include <string>
#include <utility>
#include <vector>

#include "config/workflow.hpp"
#include "coordinator/scheduler.hpp"

namespace tandem::detail {

struct SubmissionRecord {
  std::string key;
  std::string task;  // the workflow task's name
  int index = 0;     // the instance's index in that task
  int priority = 0;
  std::vector<std::pair<std::string, int>> after;  // (task, index) of each
  std::string args_json = "{}";
  std::pair<std::string, int> by;        // the submitter, (task, index)
  int call = 0;                          // the submitter's call, from 1; 0: unknown
  long long at_us = 0;                   // when it was journaled
  int round = -1;                        // the submitter's label; -1: none
  std::vector<std::string> after_tasks;  // whole workflow tasks it waits for
  int retries = -1;                      // its own; -1: the task's
  double timeout_s = -1;                 // its own; -1: the task's
};

/// The journal line of @p r, with its newline.
std::string submission_line(const SubmissionRecord& r);

/// The submissions in the journal at @p path, in the order they were made.
/// A line that cannot be read (cut short by a crash) ends the list: what
/// follows it cannot have been acknowledged.
std::vector<SubmissionRecord> read_submissions(const std::string& path);

/// Adds @p records to @p sched in order, as they were first added (call
/// before the earlier jobs' final states are applied). Returns what a
/// person should know: a record whose task the workflow no longer has, or
/// that lands on another index than it had.
std::vector<std::string> replay_submissions(Scheduler& sched, const Workflow& wf,
                                            const std::vector<SubmissionRecord>& records,
                                            std::vector<int>& finals);

}  // namespace tandem::detail
