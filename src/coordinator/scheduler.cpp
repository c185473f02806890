#include "coordinator/scheduler.hpp"

#include <fmt/format.h>

#include "base/raise.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

void ReadyQueue::push(int priority, int first, int last) {
  if (first < last) buckets_[priority].emplace_back(first, last);
}

void ReadyQueue::pop() {
  auto bucket = buckets_.begin();
  auto& range = bucket->second.front();
  if (++range.first == range.second) {
    bucket->second.pop_front();
    if (bucket->second.empty()) buckets_.erase(bucket);
  }
}

Scheduler::Scheduler(const Workflow& wf) : wf_(wf) {
  const int ntasks = static_cast<int>(wf.tasks.size());
  first_id_.resize(ntasks);
  not_done_.resize(ntasks);
  unmet_.assign(ntasks, 0);
  dependants_.resize(ntasks);
  // A workflow that steers grows while it runs. Room reserved is address
  // space, not memory, until used; growing past it moves every instance
  // into pages touched for the first time (0.6 s for two million on the
  // development VM, with the coordinator doing nothing else meanwhile).
  const bool steers =
      std::any_of(wf.tasks.begin(), wf.tasks.end(), [](const TaskSpec& t) { return t.steering; });
  const std::size_t room = static_cast<std::size_t>(wf.instance_count());
  instances_.reserve(steers ? room + std::max<std::size_t>(room, std::size_t{1} << 20) : room);
  for (int t = 0; t < ntasks; ++t) {
    first_id_[t] = static_cast<int>(instances_.size());
    not_done_[t] = wf.tasks[t].count;
    for (int i = 0; i < wf.tasks[t].count; ++i) {
      Instance inst;
      inst.task = t;
      inst.index = i;
      instances_.push_back(inst);
    }
    for (int d : wf.tasks[t].after_index) dependants_[d].push_back(t);
  }
  counts_[static_cast<int>(TaskState::NEW)] = size();
  static_size_ = size();
  submitted_of_task_.assign(static_cast<std::size_t>(ntasks), 0);
}

void Scheduler::set_state(Instance& inst, TaskState s) {
  --counts_[static_cast<int>(inst.state)];
  ++counts_[static_cast<int>(s)];
  if (is_final(s) && !is_final(inst.state)) ++final_count_;
  inst.state = s;
}

void Scheduler::mark_done_earlier(int id) {
  Instance& inst = instances_[id];
  if (inst.state != TaskState::NEW) return;
  inst.from_earlier_run = true;
  set_state(inst, TaskState::DONE);
  if (!inst.submitted) --not_done_[inst.task];
  // Submitted instances that waited for it are ready (no finals: DONE
  // releases, it never cancels).
  std::vector<int> none;
  after_final(id, 0, none);
}

void Scheduler::set_earlier_attempts(int id, int attempts) {
  Instance& inst = instances_[id];
  if (inst.state != TaskState::NEW) return;
  inst.attempt = attempts;
  inst.attempts_before = attempts;
}

void Scheduler::number_after_earlier(int id, int attempts) {
  Instance& inst = instances_[id];
  if (inst.state != TaskState::NEW) return;
  inst.attempt = attempts;
  inst.attempts_before = attempts;
  inst.free_attempts = attempts;
}

void Scheduler::fail_earlier(int id, int attempts, const std::string& reason, std::int64_t now,
                             std::vector<int>& finals) {
  Instance& inst = instances_[id];
  if (inst.state != TaskState::NEW) return;
  inst.attempt = attempts;
  inst.attempts_before = attempts;
  inst.from_earlier_run = true;
  inst.reason = reason;
  finish(id, TaskState::FAILED, now, finals);
}

void Scheduler::start() {
  const int ntasks = static_cast<int>(wf_.tasks.size());
  for (int t = 0; t < ntasks; ++t) {
    unmet_[t] = 0;
    for (int d : wf_.tasks[t].after_index) {
      if (not_done_[d] > 0) ++unmet_[t];
    }
  }
  for (int t = 0; t < ntasks; ++t) {
    if (unmet_[t] == 0) push_ready_task(t);
  }
}

void Scheduler::push_ready(int id) {
  const Instance& inst = instances_[id];
  // A submitted instance keeps the priority it was submitted with.
  const int priority = inst.submitted ? submitted_.at(id).priority : wf_.tasks[inst.task].priority;
  ready_.push(priority, id, id + 1);
}

void Scheduler::push_ready_task(int task) {
  // Instances that are not NEW (done in an earlier run) are skipped on take.
  ready_.push(wf_.tasks[task].priority, first_id_[task], first_id_[task] + wf_.tasks[task].count);
}

void Scheduler::skip_stale_heads() {
  while (!ready_.empty() && instances_[ready_.front()].state != TaskState::NEW) ready_.pop();
}

bool Scheduler::has_ready() {
  skip_stale_heads();
  return !ready_.empty();
}

int Scheduler::head_ranks() {
  skip_stale_heads();
  if (ready_.empty()) return 0;
  return wf_.tasks[instances_[ready_.front()].task].workers_needed();
}

int Scheduler::head_task() {
  skip_stale_heads();
  if (ready_.empty()) return -1;
  return instances_[ready_.front()].task;
}

void Scheduler::hand_out(Instance& inst, int worker, int members, std::int64_t now) {
  ++inst.attempt;
  inst.worker = worker;
  inst.t_scheduled = now;
  inst.members_left = members;
  inst.member_failed = false;
  set_state(inst, TaskState::SCHEDULED);
}

int Scheduler::take(int max, int worker, std::int64_t now, std::vector<int>& out) {
  int n = 0;
  while (n < max) {
    skip_stale_heads();
    if (ready_.empty()) break;
    const int id = ready_.front();
    Instance& inst = instances_[id];
    const TaskSpec& t = wf_.tasks[inst.task];
    if (t.workers_needed() > 1 || t.goes_alone()) break;
    ready_.pop();
    hand_out(inst, worker, 1, now);
    out.push_back(id);
    ++n;
  }
  return n;
}

int Scheduler::take_backfill(int max, int worker, std::int64_t now, std::vector<int>& out) {
  int n = 0;
  auto look = [this](int id) {
    const Instance& inst = instances_[id];
    if (inst.state != TaskState::NEW) return ReadyQueue::Look::stale;
    const TaskSpec& t = wf_.tasks[inst.task];
    return t.workers_needed() == 1 && !t.goes_alone() ? ReadyQueue::Look::take
                                                      : ReadyQueue::Look::other_task;
  };
  for (int id = 0; n < max && (id = ready_.take_if(look)) >= 0; ++n) {
    hand_out(instances_[id], worker, 1, now);
    out.push_back(id);
  }
  return n;
}

int Scheduler::take_multi(int lead_worker, int ranks, std::int64_t now) {
  skip_stale_heads();
  const int id = ready_.front();
  ready_.pop();
  Instance& inst = instances_[id];
  hand_out(inst, lead_worker, ranks, now);
  inst.reason.clear();
  return id;
}

void Scheduler::report(int id, int attempt, Outcome outcome, int exit_code, std::int64_t t_start,
                       std::int64_t t_end, const std::string& reason, std::vector<int>& finals) {
  if (id < 0 || id >= size()) return;
  Instance& inst = instances_[id];
  if (inst.attempt != attempt || is_final(inst.state) || inst.members_left <= 0) return;
  if (inst.state == TaskState::SCHEDULED && t_start > 0) {
    set_state(inst, TaskState::RUNNING);
    inst.t_started = t_start;
  }
  if (outcome != Outcome::done && !inst.member_failed) {
    // The first failing rank gives the reason and exit code.
    inst.member_failed = true;
    inst.exit_code = exit_code;
    inst.reason = reason;
  } else if (!inst.member_failed) {
    inst.exit_code = exit_code;
  }
  if (outcome == Outcome::canceled && inst.reason.empty()) inst.reason = "canceled";
  inst.t_ended = std::max(inst.t_ended, t_end);
  if (--inst.members_left > 0) return;

  if (!inst.member_failed) {
    finish(id, TaskState::DONE, t_end, finals);
    return;
  }
  if (outcome == Outcome::canceled) {
    finish(id, TaskState::CANCELED, t_end, finals);
    return;
  }
  if (inst.attempt - inst.free_attempts <= retries_of(id)) {
    set_state(inst, TaskState::NEW);  // retry; keeps the last reason until then
    push_ready(id);
    return;
  }
  finish(id, TaskState::FAILED, t_end, finals);
}

void Scheduler::finish(int id, TaskState s, std::int64_t now, std::vector<int>& finals) {
  Instance& inst = instances_[id];
  set_state(inst, s);
  if (inst.t_ended == 0) inst.t_ended = now;
  finals.push_back(id);
  after_final(id, now, finals);
  if (s == TaskState::DONE) {
    inst.reason.clear();
    // A task's own instances complete it; submitted ones are waited for by id.
    if (!inst.submitted && --not_done_[inst.task] == 0) task_complete(inst.task);
  } else if (s == TaskState::FAILED) {
    const TaskSpec& t = wf_.tasks[inst.task];
    cancel_downstream(
        inst.task,
        fmt::format("dependency '{}' failed ({}[{}]: {})", t.name, t.name, inst.index, inst.reason),
        now, finals);
  }
}

void Scheduler::task_complete(int task) {
  for (int d : dependants_[task]) {
    if (--unmet_[d] == 0) push_ready_task(d);
  }
}

void Scheduler::cancel_downstream(int task, const std::string& why, std::int64_t now,
                                  std::vector<int>& finals) {
  for (int d : dependants_[task]) {
    bool any = false;
    for (int i = 0; i < wf_.tasks[d].count; ++i) {
      if (instances_[first_id_[d] + i].state != TaskState::NEW) continue;
      cancel_instance(first_id_[d] + i, why, now, finals);
      any = true;
    }
    if (any) cancel_downstream(d, why, now, finals);
  }
}

void Scheduler::cancel_pending(const std::string& reason, std::int64_t now,
                               std::vector<int>& finals) {
  for (int id = 0; id < size(); ++id) {
    if (instances_[id].state == TaskState::NEW) cancel_instance(id, reason, now, finals);
  }
}

void Scheduler::cancel_instance(int id, const std::string& why, std::int64_t now,
                                std::vector<int>& finals) {
  Instance& inst = instances_[id];
  inst.reason = why;
  inst.t_ended = now;
  set_state(inst, TaskState::CANCELED);
  finals.push_back(id);
  after_final(id, now, finals);
}

// What waited for instance @p id by id: ready once every instance it waits
// for is DONE, cancelled when one of them ends any other way.
void Scheduler::after_final(int id, std::int64_t now, std::vector<int>& finals) {
  if (after_dependants_.empty()) return;  // every final instance comes here: keep it cheap
  const auto it = after_dependants_.find(id);
  if (it == after_dependants_.end()) return;
  const std::vector<int> waiting = std::move(it->second);
  after_dependants_.erase(it);
  const Instance& done = instances_[id];
  for (int d : waiting) {
    Instance& inst = instances_[d];
    if (inst.state != TaskState::NEW) continue;
    if (done.state == TaskState::DONE) {
      if (--inst.unmet_after == 0) push_ready(d);
      continue;
    }
    const TaskSpec& t = wf_.tasks[done.task];
    cancel_instance(d,
                    fmt::format("dependency {}[{}] {}{}", t.name, done.index,
                                done.state == TaskState::FAILED ? "failed" : "was canceled",
                                done.reason.empty() ? "" : ": " + done.reason),
                    now, finals);
  }
}

int Scheduler::submit(const Submission& s, std::int64_t now, std::vector<int>& finals) {
  if (!s.key.empty()) {
    const auto known = key_ids_.find(s.key);
    if (known != key_ids_.end()) return known->second;
  }
  if (s.task < 0 || s.task >= static_cast<int>(wf_.tasks.size())) {
    raise<argument_error>(fmt::format("submit: there is no task {} in the workflow", s.task));
  }
  for (int a : s.after) {
    if (a < 0 || a >= size()) {
      raise<argument_error>(
          fmt::format("submit: `after` names instance {}, which does not exist", a));
    }
  }
  const int id = size();
  Instance inst;
  inst.task = s.task;
  inst.index = wf_.tasks[static_cast<std::size_t>(s.task)].count +
               submitted_of_task_[static_cast<std::size_t>(s.task)]++;
  inst.submitted = true;
  instances_.push_back(inst);
  ++counts_[static_cast<int>(TaskState::NEW)];
  submitted_[id] = {s.args_json, s.priority, s.retries, s.timeout_s};
  submitted_ids_[(static_cast<long long>(s.task) << 32) | inst.index] = id;
  if (!s.key.empty()) key_ids_[s.key] = id;
  for (int a : s.after) {
    if (!is_final(instances_[a].state)) {
      ++instances_[id].unmet_after;
      after_dependants_[a].push_back(id);
    }
  }
  for (int a : s.after) {
    const Instance& before = instances_[a];
    if (is_final(before.state) && before.state != TaskState::DONE) {
      // Already failed: the new one can never run. after_final sends the
      // same reason.
      after_dependants_[a].push_back(id);
      after_final(a, now, finals);
      return id;
    }
  }
  if (instances_[id].unmet_after == 0) push_ready(id);
  return id;
}

bool Scheduler::cancel_new(int id, const std::string& why, std::int64_t now,
                           std::vector<int>& finals) {
  if (id < 0 || id >= size() || instances_[id].state != TaskState::NEW) return false;
  cancel_instance(id, why, now, finals);
  return true;
}

int Scheduler::find(int task, int index) const {
  if (task < 0 || task >= static_cast<int>(wf_.tasks.size()) || index < 0) return -1;
  if (index < wf_.tasks[static_cast<std::size_t>(task)].count) return first_id_[task] + index;
  const auto it = submitted_ids_.find((static_cast<long long>(task) << 32) | index);
  return it == submitted_ids_.end() ? -1 : it->second;
}

const std::string* Scheduler::submitted_args(int id) const {
  // Called for every instance handed out once anything was submitted: the
  // flag first, the map only for those that are.
  if (!instances_[static_cast<std::size_t>(id)].submitted) return nullptr;
  const auto it = submitted_.find(id);
  return it == submitted_.end() ? nullptr : &it->second.args_json;
}

int Scheduler::retries_of(int id) const {
  const Instance& inst = instances_[static_cast<std::size_t>(id)];
  if (inst.submitted) {
    const int own = submitted_.at(id).retries;
    if (own >= 0) return own;
  }
  return wf_.tasks[static_cast<std::size_t>(inst.task)].retries;
}

double Scheduler::submitted_timeout(int id) const {
  if (!instances_[static_cast<std::size_t>(id)].submitted) return -1;
  return submitted_.at(id).timeout_s;
}

std::vector<int> Scheduler::instances_of(int task) const {
  const TaskSpec& t = wf_.tasks[static_cast<std::size_t>(task)];
  std::vector<int> ids;
  const int submitted = submitted_of_task_[static_cast<std::size_t>(task)];
  ids.reserve(static_cast<std::size_t>(t.count) + static_cast<std::size_t>(submitted));
  for (int i = 0; i < t.count; ++i) ids.push_back(first_id_[static_cast<std::size_t>(task)] + i);
  for (int i = 0; i < submitted; ++i) ids.push_back(find(task, t.count + i));
  return ids;
}

bool Scheduler::task_ended(int task, int& known) const {
  const int count = wf_.tasks[static_cast<std::size_t>(task)].count;
  const int total = count + submitted_of_task_[static_cast<std::size_t>(task)];
  for (; known < total; ++known) {
    const int id = known < count ? id_of(task, known) : find(task, known);
    if (!is_final(instance(id).state)) return false;
  }
  return true;
}

}  // namespace tandem::detail
