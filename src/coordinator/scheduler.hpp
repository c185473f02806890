#pragma once
// The scheduler's logic, free of MPI so that tests can drive it directly.
//
// A task of the workflow with `count = N` is N instances with dense ids. An
// instance is NEW until it is ready and handed out (SCHEDULED), RUNNING once
// a worker has started it, and ends DONE, FAILED or CANCELED. Dependencies
// are between tasks: every instance of B waits until all instances of each
// task in B's `after` are DONE; a task that fails for good cancels everything
// downstream of it. Ready instances leave in order of priority (higher first)
// and then in the order they became ready, so a task's instances run in
// index order and a retried attempt goes to the back of its priority.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/workflow.hpp"
#include "protocol/task_state.hpp"

namespace tandem::detail {

struct Instance {
  int task = 0;   // index into Workflow::tasks
  int index = 0;  // index among the task's instances
  int attempt = 0;
  int attempts_before = 0;  // attempts earlier jobs made (resume)
  int free_attempts = 0;    // of those, the ones that do not count against retries
  TaskState state = TaskState::NEW;
  bool from_earlier_run = false;  // DONE in the journal of a run we resume
  int exit_code = 0;
  int worker = -1;
  int members_left = 0;  // ranks of a multi-rank attempt yet to report
  bool member_failed = false;
  std::int64_t t_scheduled = 0;
  std::int64_t t_started = 0;
  std::int64_t t_ended = 0;
  std::string reason;
  bool submitted = false;  // added while the run goes (Scheduler::submit)
  int unmet_after = 0;     // submitted: instances in its `after` not yet DONE
};

/// An instance added while the run goes (docs/user-guide.md#adaptive-workflows):
/// one more instance of workflow task @p task, with its own args, that
/// waits until every instance in @p after is DONE.
struct Submission {
  int task = 0;
  std::string args_json = "{}";
  int priority = 0;
  std::vector<int> after;  // instance ids
  // The same key gives back the same instance: a rerun submitter does not
  // submit twice.
  std::string key;
  int retries = -1;       // -1: the task's
  double timeout_s = -1;  // -1: the task's; 0: none
};

/// Ready instances by priority (highest first), each priority a FIFO of id
/// ranges: a task of a million instances is one entry, and taking from the
/// front is O(1), where a heap of ids paid a cache-missing O(log n) per pop.
class ReadyQueue {
 public:
  void push(int priority, int first, int last);  // ids [first, last)
  bool empty() const { return buckets_.empty(); }
  int front() const { return buckets_.begin()->second.front().first; }
  void pop();
  /// What take_if() asks of an id.
  enum class Look { stale, other_task, take };
  /// Takes the first id, in queue order, that @p look says to take, and
  /// returns it (-1: none). Stale ids before it are dropped; a range whose
  /// first live id is of another kind is passed over whole (a range is one
  /// task's). For backfilling past a head that must wait.
  template <typename LookAt>
  int take_if(LookAt&& look);

 private:
  std::map<int, std::deque<std::pair<int, int>>, std::greater<int>> buckets_;
};

template <typename LookAt>
int ReadyQueue::take_if(LookAt&& look) {
  for (auto bucket = buckets_.begin(); bucket != buckets_.end(); ++bucket) {
    auto& ranges = bucket->second;
    for (auto range = ranges.begin(); range != ranges.end(); ++range) {
      while (range->first < range->second && look(range->first) == Look::stale) ++range->first;
      if (range->first == range->second || look(range->first) != Look::take) continue;
      const int id = range->first++;
      if (range->first == range->second) {
        ranges.erase(range);
        if (ranges.empty()) buckets_.erase(bucket);
      }
      return id;
    }
  }
  return -1;
}

class Scheduler {
 public:
  explicit Scheduler(const Workflow& wf);

  int size() const { return static_cast<int>(instances_.size()); }
  const Instance& instance(int id) const { return instances_[id]; }
  /// Id of instance @p index of task @p task.
  int id_of(int task, int index) const { return first_id_[task] + index; }

  /// Marks an instance DONE by an earlier run (resume); call before start().
  void mark_done_earlier(int id);
  /// Counts @p attempts made by earlier jobs (attempts lost with the rank
  /// they ran on) against the instance's retries; call before start().
  /// An instance that earlier jobs FAILED or CANCELED runs again with
  /// fresh retries, its attempts numbered on from theirs (@p attempts), so
  /// that its files (INDEX.tryN.out) do not mix with theirs.
  void number_after_earlier(int id, int attempts);
  void set_earlier_attempts(int id, int attempts);
  /// Marks an instance FAILED before it runs: its earlier jobs used up its
  /// retries. Dependants are cancelled; finals go to @p finals. Call before
  /// start().
  void fail_earlier(int id, int attempts, const std::string& reason, std::int64_t now,
                    std::vector<int>& finals);
  /// Makes the instances without unmet dependencies ready.
  void start();

  /// True when an instance is ready to hand out.
  bool has_ready();
  /// How many workers the next ready instance needs (0 when none is ready).
  int head_ranks();
  /// The task of the next ready instance (-1 when none is ready).
  int head_task();
  /// Hands out up to @p max ready one-rank instances to @p worker; stops early
  /// at a multi-rank instance so that it keeps its place. Appends ids to @p out.
  int take(int max, int worker, std::int64_t now, std::vector<int>& out);
  /// Hands out up to @p max ready instances of one rank that need no GPU,
  /// from anywhere in the queue: what workers run while the head waits for
  /// a GPU. Appends ids to @p out.
  int take_backfill(int max, int worker, std::int64_t now, std::vector<int>& out);
  /// Hands out the multi-rank instance at the head to @p ranks workers.
  int take_multi(int lead_worker, int ranks, std::int64_t now);

  /// Records what a worker reported for one rank of an attempt. Instances
  /// that reached a final state (this one, or dependants cancelled because it
  /// failed for good) are appended to @p finals. Stale reports are ignored.
  void report(int id, int attempt, Outcome outcome, int exit_code, std::int64_t t_start,
              std::int64_t t_end, const std::string& reason, std::vector<int>& finals);

  /// Adds the instance @p s asks for and returns its id; the id it already
  /// has when its key was submitted before. Its index is after the task's
  /// `count` and earlier submissions'. An `after` instance that already
  /// failed or was cancelled cancels it at once (into @p finals).
  /// @throws tandem::argument_error for a task or an `after` id that does
  /// not exist.
  int submit(const Submission& s, std::int64_t now, std::vector<int>& finals);
  /// Whether a submission with key @p key was made.
  bool has_key(const std::string& key) const { return key_ids_.contains(key); }
  /// Cancels instance @p id if it has not been handed out (and what waits
  /// for it, in turn); false if it had.
  bool cancel_new(int id, const std::string& why, std::int64_t now, std::vector<int>& finals);
  /// A submitted instance's args as JSON text; null for the workflow's own.
  const std::string* submitted_args(int id) const;
  /// The retries instance @p id has: its submission's, or its task's.
  int retries_of(int id) const;
  /// A submitted instance's own timeout (-1: its task's).
  double submitted_timeout(int id) const;
  /// Id of instance @p index of task @p task, workflow or submitted; -1
  /// when there is none.
  int find(int task, int index) const;
  /// Every instance of @p task there is now: the file's, then those
  /// submitted, in index order.
  std::vector<int> instances_of(int task) const;
  /// Whether every instance of @p task (submitted ones too) has ended.
  /// @p known: how many of them the caller already knows have ended, a
  /// cursor it keeps between calls, so that asking often costs only what
  /// changed (instances end for good).
  bool task_ended(int task, int& known) const;
  /// Instances added by submit().
  int submitted_count() const { return size() - static_size_; }

  /// Cancels every instance that has not been handed out, with @p reason.
  void cancel_pending(const std::string& reason, std::int64_t now, std::vector<int>& finals);

  /// True when every instance is final.
  bool finished() const { return final_count_ == size(); }
  /// Instances in state @p s.
  int count(TaskState s) const { return counts_[static_cast<int>(s)]; }
  /// Instances that still hold a worker (SCHEDULED or RUNNING).
  int in_flight() const { return count(TaskState::SCHEDULED) + count(TaskState::RUNNING); }

 private:
  void set_state(Instance& inst, TaskState s);
  void push_ready(int id);
  void push_ready_task(int task);
  void finish(int id, TaskState s, std::int64_t now, std::vector<int>& finals);
  void task_complete(int task);
  void cancel_downstream(int task, const std::string& why, std::int64_t now,
                         std::vector<int>& finals);
  void skip_stale_heads();
  void cancel_instance(int id, const std::string& why, std::int64_t now, std::vector<int>& finals);
  void after_final(int id, std::int64_t now, std::vector<int>& finals);
  void hand_out(Instance& inst, int worker, int members, std::int64_t now);

  const Workflow& wf_;
  std::vector<Instance> instances_;
  std::vector<int> first_id_;  // per task
  std::vector<int> not_done_;  // per task: instances not DONE
  std::vector<int> unmet_;     // per task: dependencies not complete
  std::vector<std::vector<int>> dependants_;
  ReadyQueue ready_;
  int static_size_ = 0;                 // instances of the workflow file; submitted ones follow
  std::vector<int> submitted_of_task_;  // per task
  std::unordered_map<int, std::vector<int>> after_dependants_;  // id -> submitted ids
  std::unordered_map<std::string, int> key_ids_;
  std::unordered_map<long long, int> submitted_ids_;  // (task << 32 | index) -> id
  struct Submitted {
    std::string args_json;
    int priority = 0;
    int retries = -1;
    double timeout_s = -1;
  };
  std::unordered_map<int, Submitted> submitted_;  // by id
  int counts_[kTaskStateCount] = {};
  int final_count_ = 0;
};

}  // namespace tandem::detail
