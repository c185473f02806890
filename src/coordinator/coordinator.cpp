// The coordinator: hands tasks to workers that ask for them, records what
// they report, and ends the run in order.
//
// Workers pull. A worker asks for work when its queue is about to run dry and
// says how many tasks it wants; the coordinator answers with up to that many
// at once, or parks the request until something is ready. Results come back
// in batches with the next request, so at full speed one message each way
// carries dozens to hundreds of tasks and the coordinator's cost per task is
// a few array operations and one journal line. A multi-rank task waits at the
// head of the queue until enough workers are idle at once; meanwhile no one
// gets new work, so busy workers drain and join the group in bounded time.

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/clock.hpp"
#include "base/files.hpp"
#include "base/mpi_check.hpp"
#include "base/send_queue.hpp"
#include "base/signals.hpp"
#include "coordinator/gpu_pool.hpp"
#include "coordinator/journal.hpp"
#include "coordinator/live_view.hpp"
#include "coordinator/scaler.hpp"
#include "coordinator/scheduler.hpp"
#include "coordinator/service_monitor.hpp"
#include "coordinator/session_coordinator.hpp"
#include "coordinator/submissions.hpp"
#include "job/allocation.hpp"
#include "job/idle_mode.hpp"
#include "job/roles.hpp"
#include "job/run_dir.hpp"
#include "protocol/pilot_messages.hpp"
#include "trace/trace.hpp"

namespace tandem::detail {

namespace {

using namespace protocol;

// What history.jsonl keeps of each service per job: enough for a report
// over all the jobs of a run (the latency detail is in each job's trace).
nlohmann::json service_counts(const nlohmann::json& services) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, v] : services.items()) {
    out[name] = {{"requests", v.value("requests", 0LL)},
                 {"errors", v.value("errors", 0LL)},
                 {"batches", v.value("batches", 0LL)}};
  }
  return out;
}

struct WorkerInfo {
  bool parked = false;  // a request for work waits for an answer
  bool lent = false;    // an elastic service's: reserved for it, or serving it
  int want = 0;
  bool idle = true;
  bool gone = false;  // sent bye
  std::int64_t busy_us = 0;
  // Instances handed to it that it has not reported yet, by kind: what it
  // can run at once is worker_slots commands, or one function.
  int commands_held = 0;
  int functions_held = 0;
  // The steering task it runs (-1: none): it blocks the worker in its
  // waits, so the worker gets no other work until that task ends.
  int steering_id = -1;
  // Requests that attempt has submitted: the default keys
  // "NAME[INDEX]#N", the same on every attempt, so that a rerun steering
  // task's submissions find those of the attempt before.
  int submitted = 0;
  int calls = 0;  // its submit calls so far: the rounds of `tandem report`
};

// A steering task waiting for instances to end (TaskContext::wait), or
// for the first of them (wait_any: as-completed iteration).
struct Waiter {
  int source = 0;  // its worker's pilot rank
  std::vector<int> ids;
  bool any = false;
  std::size_t ended = 0;  // ids[0, ended) have ended (a wait for all)
};

// A steering task's submit past its outstanding_cap: it waits (blocked in
// submit) until enough of what it submitted has ended.
struct PendingSubmit {
  int source = 0;
  nlohmann::json requests;
};

class Coordinator {
 public:
  explicit Coordinator(const Job& job)
      : job_(job),
        wf_(job.wf),
        sched_(wf_),
        journal_(job.run_dir + "/journal.jsonl", wf_, wf_.job.journal_sync_s),
        monitor_(wf_, job.plan, job.control, job.plan.client_ranks()),
        live_(wf_, job.run_dir, job.progress_interval_s),
        // Workers queue their work ahead (kPrefetchWindowS), so the
        // coordinator is never what a task waits for: it sleeps between
        // looks even on a dedicated node, where its spinning only took a
        // core from the processes command tasks start (/bin/true ran at
        // half the rate with one worker on two cores).
        backoff_(off_path_backoff(wf_.job)),
        gpus_(job.plan.task_gpus),
        scaler_(wf_, job.plan, job.control, monitor_, scaler_host()),
        ended_known_(wf_.tasks.size(), 0) {
    MPI_Comm_size(job_.pilot, &size_);
    workers_.resize(size_);
    worker_rank_.resize(static_cast<std::size_t>(std::max(size_ - 1, 0)), -1);
    for (const RankPlacement& p : job.plan.ranks) {
      if (p.role == Role::worker && p.role_index < static_cast<int>(worker_rank_.size())) {
        worker_rank_[p.role_index] = p.rank;
      }
    }
    if (job.resume) read_earlier_jobs();
  }

  int run();

 private:
  /// The workers, as the elastic services' Scaler sees them.
  Scaler::Host scaler_host();
  void read_earlier_jobs();
  void journal_failed();
  void stop_dispatch();
  bool receive_one();
  void handle_update(int source, const std::vector<char>& bytes);
  void serve_requests();
  /// The first @p n idle parked workers (pilot ranks); empty if fewer.
  std::vector<int> idle_workers(int n) const;
  std::vector<int> idle_by_node(const TaskSpec& spec) const;
  /// The node of the worker at @p pilot_rank.
  int node_of_worker(int pilot_rank) const;
  /// Hands the GPU task at the head to a waiting worker on a node with
  /// enough free GPUs; false when there is none.
  bool dispatch_alone(const TaskSpec& spec);
  /// Sends @p w, in one message, the args of those of @p ids that were
  /// submitted.
  void define_submitted(int w, const std::vector<int>& ids);
  /// A steering task's request: submit or wait (coordinator/steering).
  void handle_steer(int source, const std::string& text);
  void steer_for(int source, const std::string& text);
  /// A steering task's attempt has ended on worker @p source.
  void steering_ended(int source);
  /// Answers a submit once its journal lines are durable (now, or from
  /// answer_durable() in the loop).
  void answer_when_durable(int source, nlohmann::json reply);
  bool answer_durable();
  nlohmann::json submit_for(int source, const nlohmann::json& requests);
  void answer(int source, const nlohmann::json& reply);
  /// Answers the waiters whose instances have all ended.
  void answer_waiters();
  nlohmann::json result_of(int id) const;
  /// Gives the first waiting worker the one-rank CPU tasks behind a head
  /// that waits for a GPU; false when there are none.
  bool backfill();
  /// Sends the first parked worker up to its share of @p take's tasks;
  /// false (and the worker still parked) when @p take gave none.
  bool send_batch(const std::function<int(int, int, std::vector<int>&)>& take);
  void send(int worker, std::vector<std::int32_t> data);
  void append_finals();  // finals_ into the journal's buffer
  void record_finals();  // ... and the buffer into the file
  void interrupt(int sig);
  void finish_workers();
  void write_summary(int exit_code);
  int workers_count() const { return size_ - 1; }
  int steering_workers() const { return steering_workers_; }
  /// How logs name the worker at @p pilot_rank: its index, as the journal,
  /// the report and `tandem plan` give it, and its world rank.
  std::string worker_name(int pilot_rank) const;
  /// What the trace may hold: events and bytes per rank, on the fullest node.
  nlohmann::json trace_budget() const;
  /// Counts instance @p id as handed to (+1) or reported by (-1) @p w.
  void hold(WorkerInfo& w, int id, int delta);
  /// What @p w runs now of what it holds.
  int running_on(const WorkerInfo& w) const;

  const Job& job_;
  const Workflow& wf_;
  Scheduler sched_;
  Journal journal_;
  ServiceMonitor monitor_;
  LiveView live_;
  TaskCounts counts() const;
  Backoff backoff_;
  GpuPool gpus_;
  Scaler scaler_;                 // elastic services; inactive without them
  std::vector<int> ended_known_;  // per task: instances known to have ended ([[scale]] rules)
  int size_ = 0;
  std::vector<WorkerInfo> workers_;  // by pilot rank; [0] unused
  std::deque<int> parked_order_;     // pilot ranks, in the order they asked
  SendQueue<std::vector<std::int32_t>> sends_;
  std::vector<char> recv_buf_;
  std::vector<int> finals_;
  // Return values that wait for their instance's final state, by id: the
  // attempt they came with, and the JSON.
  std::unordered_map<int, std::pair<int, std::string>> results_;
  std::unordered_map<int, std::string> submitted_results_;  // by id, for wait()
  std::vector<Waiter> waiters_;
  std::deque<PendingSubmit> pending_submits_;
  // Submit answers whose journal lines are not on disk yet, in order.
  struct Undurable {
    int source = 0;
    nlohmann::json reply;
    long long ticket = 0;
  };
  std::deque<Undurable> not_durable_;
  long long submit_ticket_ = 0;          // of the last submit_for's lines; 0: none written
  int steering_workers_ = 0;             // workers that run a steering task now
  std::unordered_map<int, int> parent_;  // submitted id -> its submitter's id
  std::unordered_map<int, std::vector<int>> children_;  // submitter's id -> what it submitted
  std::unordered_map<int, int> outstanding_of_;         // submitter's id -> children not ended
  int outstanding_ = 0;                                 // submitted and not ended, in all
  /// Submits what waits past the caps, in order, as far as it now fits.
  void serve_pending_submits();
  /// Counts a final instance off its submitter; a steering task that ended
  /// badly with cancel_children cancels the children not yet started.
  void settle_children(int id);
  long long running_ = 0;         // sum of running_on() over the workers
  std::vector<int> worker_rank_;  // world rank of each worker index
  std::vector<int> batch_;
  int done_earlier_ = 0;
  int failed_earlier_ = 0;  // used up their retries in earlier jobs
  bool stopping_ = false;   // no more dispatch: interrupted, or the journal failed
  long long in_flight_at_journal_failure_ = -1;
  int interrupted_by_ = 0;
  std::chrono::steady_clock::time_point t0_;
  std::chrono::steady_clock::time_point cancel_deadline_;
  std::int64_t started_us_ = 0;
  std::int64_t ended_us_ = 0;
  double makespan_s_ = 0;
};

// What earlier jobs finished is not run again; attempts they lost with a
// rank that died count against the instance's retries, and an instance
// that has used them all up stays FAILED (a poison task runs at most
// retries + 1 times, over all jobs).
void Coordinator::read_earlier_jobs() {
  const std::string path = job_.run_dir + "/journal.jsonl";
  // Submitted instances first, in their order, so that they have their ids
  // before the final states below are applied to them.
  for (const std::string& note : replay_submissions(sched_, wf_, read_submissions(path), finals_)) {
    spdlog::warn("{}: {}", path, note);
  }
  const auto entries = read_journal(path);
  auto id_of = [this](const std::pair<std::string, int>& key) {
    return sched_.find(wf_.find_task(key.first), key.second);
  };
  for (const auto& [key, e] : entries) {
    const int id = id_of(key);
    if (id >= 0 && e.state == TaskState::DONE) {
      sched_.mark_done_earlier(id);
      ++done_earlier_;
      // What a rerun steering task waits for may have ended in a job before.
      if (sched_.instance(id).submitted && !e.result.empty()) submitted_results_[id] = e.result;
    }
  }
  for (const auto& [key, e] : entries) {
    const int id = id_of(key);
    if (id < 0 || e.lost == 0 || e.state == TaskState::DONE) continue;
    if (e.attempts > sched_.retries_of(id)) {
      sched_.fail_earlier(id, e.attempts,
                          fmt::format("{} attempt(s) lost with the rank they ran on, the last: {}",
                                      e.lost, e.reason),
                          now_us(), finals_);
      ++failed_earlier_;
    } else {
      sched_.set_earlier_attempts(id, e.attempts);
    }
  }
  // FAILED or CANCELED by an earlier job: run again, numbered on.
  for (const auto& [key, e] : entries) {
    const int id = id_of(key);
    if (id < 0 || e.lost != 0 || !e.state || *e.state == TaskState::DONE) continue;
    sched_.number_after_earlier(id, e.attempts);
  }
}

void Coordinator::send(int worker, std::vector<std::int32_t> data) {
  auto [msg, request] = sends_.add(std::move(data));
  TANDEM_MPI_CHECK(MPI_Isend(msg.data(), static_cast<int>(msg.size()), MPI_INT32_T, worker,
                             tags::kWork, job_.pilot, &request));
}

bool Coordinator::receive_one() {
  int flag = 0;
  MPI_Status status;
  TANDEM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, tags::kUpdate, job_.pilot, &flag, &status));
  if (!flag) {
    // Rare, and only where a task steers: after the updates.
    TANDEM_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, tags::kSteer, job_.pilot, &flag, &status));
    if (!flag) return false;
    int n = 0;
    MPI_Get_count(&status, MPI_CHAR, &n);
    std::string text(static_cast<std::size_t>(n), '\0');
    TANDEM_MPI_CHECK(MPI_Recv(text.data(), n, MPI_CHAR, status.MPI_SOURCE, tags::kSteer, job_.pilot,
                              MPI_STATUS_IGNORE));
    handle_steer(status.MPI_SOURCE, text);
    return true;
  }
  int n = 0;
  MPI_Get_count(&status, MPI_BYTE, &n);
  recv_buf_.resize(n);
  TANDEM_MPI_CHECK(MPI_Recv(recv_buf_.data(), n, MPI_BYTE, status.MPI_SOURCE, tags::kUpdate,
                            job_.pilot, MPI_STATUS_IGNORE));
  handle_update(status.MPI_SOURCE, recv_buf_);
  return true;
}

nlohmann::json Coordinator::trace_budget() const {
  const std::vector<int> on_node = job_.plan.ranks_per_node();
  const int fullest = std::max(1, *std::max_element(on_node.begin(), on_node.end()));
  const MonitorSpec& m = wf_.job.monitor;
  const long long events = m.events_per_rank(fullest);
  return {{"enabled", m.trace},
          {"max_events_per_rank", events},
          {"buffer_bytes_per_rank", events * static_cast<long long>(sizeof(trace::Event))},
          {"node_budget_mb",
           m.trace_max_events > 0 ? nlohmann::json(nullptr) : nlohmann::json(m.trace_node_mb)},
          {"ranks_on_fullest_node", fullest}};
}

std::string Coordinator::worker_name(int pilot_rank) const {
  const int index = pilot_rank - 1;
  if (index >= 0 && index < static_cast<int>(worker_rank_.size())) {
    return fmt::format("worker {} (rank {})", index, worker_rank_[index]);
  }
  return fmt::format("worker {}", index);
}

int Coordinator::running_on(const WorkerInfo& w) const {
  return w.commands_held > 0 ? std::min(w.commands_held, wf_.layout.worker_slots)
                             : std::min(w.functions_held, 1);
}

void Coordinator::hold(WorkerInfo& w, int id, int delta) {
  const int before = running_on(w);
  int& held = wf_.tasks[sched_.instance(id).task].kind == TaskKind::function ? w.functions_held
                                                                             : w.commands_held;
  held = std::max(0, held + delta);
  running_ += running_on(w) - before;  // kept as it changes: counts() is called every loop
}

void Coordinator::handle_update(int source, const std::vector<char>& bytes) {
  ByteReader in(bytes.data(), bytes.size());
  UpdateHeader h;
  if (!in.get(h)) {
    spdlog::error("{} sent a message too short to read; ignored", worker_name(source));
    return;
  }
  std::string reason;
  std::string result;
  for (int i = 0; i < h.results; ++i) {
    ResultRecord r;
    reason.clear();
    result.clear();
    if (!in.get(r) || !in.get_text(static_cast<std::size_t>(r.reason_len), reason) ||
        !in.get_text(static_cast<std::size_t>(r.result_len), result)) {
      spdlog::error("{} sent a truncated result batch; {} of {} records read", worker_name(source),
                    i, h.results);
      break;
    }
    if (r.id < 0 || r.id >= sched_.size()) {
      spdlog::error("{} reported task id {}, which does not exist; ignored", worker_name(source),
                    r.id);
      continue;
    }
    hold(workers_[source], r.id, -1);
    if (workers_[source].steering_id == r.id) steering_ended(source);
    const auto outcome = static_cast<Outcome>(r.outcome);
    const auto settle_gpus = [&] {
      const Instance& inst = sched_.instance(r.id);
      gpus_.settle(r.id, inst.attempt,
                   inst.state == TaskState::SCHEDULED || inst.state == TaskState::RUNNING);
    };
    if (outcome == Outcome::failed) {
      const Instance& inst = sched_.instance(r.id);
      const TaskSpec& t = wf_.tasks[inst.task];
      const bool will_retry = inst.attempt <= sched_.retries_of(r.id);
      spdlog::warn("task {}[{}] attempt {} on {} failed: {}{}", t.name, inst.index, r.attempt,
                   worker_name(source), reason, will_retry ? " (will retry)" : "");
    }
    // A return value goes into the journal with the DONE it came with.
    if (outcome == Outcome::done && !result.empty()) results_[r.id] = {r.attempt, result};
    sched_.report(r.id, r.attempt, outcome, r.exit_code, r.t_start, r.t_end, reason, finals_);
    settle_gpus();
  }
  // Into the journal's buffer; the loop that received this writes it, once
  // for all the messages it took in (a write(2) per message was most of
  // the coordinator's time at 10^5 workers: bench/coordinator_sim.cpp).
  append_finals();
  WorkerInfo& w = workers_[source];
  w.idle = h.idle != 0;
  if (h.bye) {
    w.gone = true;
    w.busy_us = h.busy_us;
    return;
  }
  if (h.rejoined) {
    // Back from serving: it routes with today's table before any task.
    w.parked = false;
    scaler_.rejoined(source);
    send(source, {kResume, monitor_.table_version()});
  }
  if (h.want > 0 && !w.parked && w.steering_id < 0) {
    w.parked = true;
    if (!w.lent) parked_order_.push_back(source);
  }
  if (w.parked) w.want = std::max(h.want, w.want);
}

Scaler::Host Coordinator::scaler_host() {
  Scaler::Host h;
  h.idle_and_asking = [this](int w) {
    const WorkerInfo& info = workers_[w];
    return info.parked && info.idle && info.steering_id < 0 && running_on(info) == 0 &&
           info.functions_held + info.commands_held == 0;
  };
  h.lend = [this](int w, bool lent) {
    WorkerInfo& info = workers_[w];
    info.lent = lent;
    std::erase(parked_order_, w);
    if (!lent && info.parked) parked_order_.push_back(w);
  };
  h.serve = [this](int w, int slot) {
    WorkerInfo& info = workers_[w];
    info.parked = false;
    info.want = 0;
    info.idle = false;
    send(w, {kServe, slot});
  };
  h.tasks_waiting = [this] { return parked_order_.empty() && sched_.has_ready(); };
  h.task_ended = [this](int task) {
    return sched_.task_ended(task, ended_known_[static_cast<std::size_t>(task)]);
  };
  h.receive = [this] {
    bool any = false;
    for (int i = 0; i < 64 && receive_one(); ++i) any = true;
    if (any) record_finals();
    sends_.progress();
    return any;
  };
  return h;
}

void Coordinator::append_finals() {
  // settle_children may cancel more instances, into finals_: by index.
  for (std::size_t k = 0; k < finals_.size(); ++k) {
    const int id = finals_[k];
    if (!parent_.empty() || !children_.empty()) settle_children(id);
    const Instance& inst = sched_.instance(id);
    const auto it = results_.empty() ? results_.end() : results_.find(id);
    if (inst.submitted && it != results_.end() && it->second.first == inst.attempt &&
        inst.state == TaskState::DONE) {
      submitted_results_[id] = it->second.second;
    }
    if (it == results_.end()) {
      journal_.append(inst);
      continue;
    }
    // One of an earlier attempt (a multi-rank one that another rank
    // failed) is not this one's.
    const bool ours = it->second.first == inst.attempt && inst.state == TaskState::DONE;
    journal_.append(inst, ours ? std::string_view(it->second.second) : std::string_view());
    results_.erase(it);
  }
  finals_.clear();
}

void Coordinator::record_finals() {
  append_finals();
  if (!journal_.flush()) {
    journal_failed();  // nothing buffered: no write
    return;
  }
  // Steering tasks hear of what the journal holds, never of more.
  if (!waiters_.empty()) answer_waiters();
  if (!pending_submits_.empty()) serve_pending_submits();
}

// A result that cannot be recorded is a result lost: start nothing more,
// let what runs end, and say what to do.
void Coordinator::journal_failed() {
  if (in_flight_at_journal_failure_ >= 0) return;
  in_flight_at_journal_failure_ = sched_.in_flight() + journal_.unrecorded();
  spdlog::error(
      "{}. No new task starts; the {} task(s) running or not yet recorded will run again when "
      "the run is resumed, with the {} that had not started. Free space (or fix the directory), "
      "then continue with: tandem run --resume --run-dir {} {}",
      journal_.failure(), in_flight_at_journal_failure_, sched_.count(TaskState::NEW), job_.run_dir,
      wf_.path);
  stop_dispatch();
  for (int w = 1; w < size_; ++w) send(w, {kCancel});
  cancel_deadline_ = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(wf_.job.kill_grace_s + 10.0));
}

// Nothing new is handed out; what is ready is cancelled (a retry that
// becomes ready later is cancelled too, by the loop).
void Coordinator::stop_dispatch() {
  stopping_ = true;
  const std::string reason =
      interrupted_by_
          ? fmt::format("canceled: the run was interrupted by signal {}", interrupted_by_)
          : std::string("canceled: the journal could not be written");
  sched_.cancel_pending(reason, now_us(), finals_);
  if (!journal_.failed()) record_finals();
  finals_.clear();
}

std::vector<int> Coordinator::idle_workers(int n) const {
  std::vector<int> group;
  for (int w : parked_order_) {
    if (workers_[w].idle) group.push_back(w);
    if (static_cast<int>(group.size()) == n) return group;
  }
  return {};
}

// An MPI command task's workers: cores_per_rank of one node for each rank,
// on as few nodes as will do (the nodes with the most idle workers first),
// a node's ranks one after another. Empty until enough are idle.
std::vector<int> Coordinator::idle_by_node(const TaskSpec& spec) const {
  std::map<int, std::vector<int>> on_node;
  for (int w : parked_order_) {
    if (!workers_[w].idle) continue;
    const int world = worker_rank_[static_cast<std::size_t>(w - 1)];
    on_node[job_.plan.ranks[static_cast<std::size_t>(world)].node].push_back(w);
  }
  std::vector<const std::vector<int>*> nodes;
  nodes.reserve(on_node.size());
  for (const auto& [node, list] : on_node) nodes.push_back(&list);
  std::stable_sort(nodes.begin(), nodes.end(),
                   [](const auto* a, const auto* b) { return a->size() > b->size(); });
  std::vector<int> group;
  int left = spec.ranks;
  const int per = spec.cores_per_rank;
  for (const std::vector<int>* list : nodes) {
    int take = std::min(left, static_cast<int>(list->size()) / per);
    if (spec.gpus_per_rank > 0) {
      take = std::min(take, gpus_.free_on(node_of_worker(list->front())) / spec.gpus_per_rank);
    }
    group.insert(group.end(), list->begin(),
                 list->begin() + static_cast<std::ptrdiff_t>(take) * per);
    left -= take;
    if (left == 0) return group;
  }
  return {};
}

// --- steering tasks: submit and wait (docs/user-guide.md#adaptive-workflows)

void Coordinator::answer(int source, const nlohmann::json& reply) {
  const std::string text = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // The worker waits in a receive for exactly this: small, sent at once.
  TANDEM_MPI_CHECK(MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, source,
                            tags::kSteerAnswer, job_.pilot));
}

void Coordinator::handle_steer(int source, const std::string& text) {
  // An executable task's request comes from the user's code through the
  // proxy as it was written: a field of the wrong type is the caller's
  // error, never the coordinator's end.
  try {
    steer_for(source, text);
  } catch (const nlohmann::json::exception& e) {
    answer(source,
           {{"error", fmt::format("a steering request that makes no sense: {}", e.what())}});
  }
}

void Coordinator::steer_for(int source, const std::string& text) {
  // "ID REQUEST": the instance that asks, so that a request that comes in
  // after its task's end (a command's, sent just before it exited) is not
  // taken for the next steering task's on that worker.
  const auto space = text.find(' ');
  long long by = -1;
  if (space != std::string::npos) std::from_chars(text.data(), text.data() + space, by);
  const nlohmann::json request = nlohmann::json::parse(
      space == std::string::npos ? std::string_view() : std::string_view(text).substr(space + 1),
      nullptr, false);
  if (workers_[source].steering_id < 0 || by != workers_[source].steering_id ||
      !request.is_object()) {
    answer(source, {{"error", "only a running task with steering = true may submit or wait"}});
    return;
  }
  if (request.contains("submit")) {
    if (!pending_submits_.empty()) {  // behind others that wait: in order
      pending_submits_.push_back({source, request["submit"]});
      return;
    }
    nlohmann::json reply = submit_for(source, request["submit"]);
    if (reply.contains("defer")) {
      pending_submits_.push_back({source, request["submit"]});
      return;
    }
    answer_when_durable(source, std::move(reply));
    return;
  }
  std::vector<int> ids;
  for (const nlohmann::json& h : request.value("wait", nlohmann::json::array())) {
    const long long id = h.is_number_integer() ? h.get<long long>() : -1;
    if (id < 0 || id >= sched_.size()) {
      answer(source,
             {{"error", fmt::format("wait: there is no task instance with handle {}", h.dump())}});
      return;
    }
    if (id == workers_[source].steering_id) {
      answer(source, {{"error", "wait: a task cannot wait for its own end"}});
      return;
    }
    ids.push_back(static_cast<int>(id));
  }
  waiters_.push_back({source, std::move(ids), request.value("any", false)});
  answer_waiters();
}

nlohmann::json Coordinator::submit_for(int source, const nlohmann::json& requests) {
  submit_ticket_ = 0;  // an error below answers at once
  if (stopping_) return {{"error", "submit: the run is stopping; nothing new is started"}};
  // Every request is checked before any is added: all or nothing.
  std::vector<Submission> subs;
  std::vector<int> rounds;  // the submitter's labels for `tandem report`; -1: none
  // What each waits for as the journal keeps it: the handles it named, and
  // the workflow tasks it named (resolved again on replay).
  std::vector<std::vector<int>> after_handles;
  std::vector<std::vector<std::string>> after_tasks;
  for (const nlohmann::json& r : requests) {
    const std::string name = r.value("task", std::string());
    const int task = wf_.find_task(name);
    if (task < 0) {
      std::vector<std::string> names;
      for (const TaskSpec& t : wf_.tasks) names.push_back(t.name);
      return {{"error", fmt::format("submit: the workflow has no task '{}' (it has: {})", name,
                                    fmt::join(names, ", "))}};
    }
    const TaskSpec& t = wf_.tasks[static_cast<std::size_t>(task)];
    // Multi-rank and GPU instances take the same ways out as the file's
    // (each of their workers learns the args first). A steering task
    // cannot be submitted: a job's thinkers are the ones it starts with.
    if (t.steering) {
      return {{"error", fmt::format("submit: task '{}' is a steering task, which cannot be "
                                    "submitted: steering tasks are the workflow file's",
                                    name)}};
    }
    // Without a key of its own, a request's key is its place among the
    // attempt's submissions: a rerun submitter gets the same ones back.
    std::string key = r.value("key", std::string());
    if (key.empty()) {
      const Instance& me = sched_.instance(workers_[source].steering_id);
      key = fmt::format("{}[{}]#{}", wf_.tasks[static_cast<std::size_t>(me.task)].name, me.index,
                        workers_[source].submitted + static_cast<int>(subs.size()));
    }
    Submission s{task,
                 r.value("args", nlohmann::json::object()).dump(),
                 r.value("priority", 0),
                 {},
                 std::move(key)};
    if (r.contains("retries")) {
      s.retries = r["retries"].get<int>();
      if (s.retries < 0) {
        return {{"error", fmt::format("submit: a '{}' request asks for {} retries: give 0 or more",
                                      name, s.retries)}};
      }
    }
    if (r.contains("timeout")) {
      s.timeout_s = r["timeout"].get<double>();
      if (!(s.timeout_s > 0)) {
        return {{"error", fmt::format("submit: a '{}' request's timeout is {} s: give a number of "
                                      "seconds above 0",
                                      name, s.timeout_s)}};
      }
    }
    rounds.push_back(r.value("round", -1));
    after_handles.emplace_back();
    after_tasks.emplace_back();
    for (const nlohmann::json& a : r.value("after", nlohmann::json::array())) {
      if (a.is_string()) {
        // A workflow task's name: every instance of it there is now.
        const int other = wf_.find_task(a.get<std::string>());
        if (other < 0) {
          return {{"error", fmt::format("submit: a '{}' request waits for task '{}', which the "
                                        "workflow does not have",
                                        name, a.get<std::string>())}};
        }
        const std::vector<int> all = sched_.instances_of(other);
        s.after.insert(s.after.end(), all.begin(), all.end());
        after_tasks.back().push_back(a.get<std::string>());
        continue;
      }
      const long long id = a.is_number_integer() ? a.get<long long>() : -1;
      if (id < 0 || id >= sched_.size()) {
        return {{"error", fmt::format("submit: a '{}' request waits for handle {}, which does "
                                      "not exist",
                                      name, a.dump())}};
      }
      s.after.push_back(static_cast<int>(id));
      after_handles.back().push_back(static_cast<int>(id));
    }
    subs.push_back(std::move(s));
  }
  // The caps: a call that could never fit is an error; one that does not
  // fit now waits (the submitter stays blocked in submit).
  const int submitter = workers_[source].steering_id;
  const int cap =
      wf_.tasks[static_cast<std::size_t>(sched_.instance(submitter).task)].outstanding_cap;
  const int fresh = static_cast<int>(std::count_if(
      subs.begin(), subs.end(), [&](const Submission& s) { return !sched_.has_key(s.key); }));
  if (fresh > cap || fresh > wf_.job.outstanding_cap) {
    return {{"error", fmt::format("submit: {} new instances in one call, more than the "
                                  "outstanding_cap of {}: submit them in smaller calls",
                                  fresh, std::min(cap, wf_.job.outstanding_cap))}};
  }
  if (outstanding_of_[submitter] + fresh > cap || outstanding_ + fresh > wf_.job.outstanding_cap) {
    return {{"defer", true}};
  }
  // Added, then journaled, then answered: a handle the submitter holds is
  // always in the journal.
  nlohmann::json handles = nlohmann::json::array();
  std::string lines;
  const Instance& me = sched_.instance(submitter);
  const std::pair<std::string, int> by{wf_.tasks[static_cast<std::size_t>(me.task)].name, me.index};
  const long long at = now_us();
  for (std::size_t k = 0; k < subs.size(); ++k) {
    const Submission& s = subs[k];
    const int before = sched_.size();
    const int id = sched_.submit(s, now_us(), finals_);
    handles.push_back(id);
    if (id < before) continue;  // its key was submitted before
    parent_[id] = submitter;
    children_[submitter].push_back(id);
    ++outstanding_of_[submitter];
    ++outstanding_;
    const Instance& inst = sched_.instance(id);
    SubmissionRecord rec;
    rec.key = s.key;
    rec.task = wf_.tasks[static_cast<std::size_t>(s.task)].name;
    rec.index = inst.index;
    rec.priority = s.priority;
    rec.args_json = s.args_json;
    rec.by = by;
    rec.call = workers_[source].calls + 1;
    rec.at_us = at;
    rec.round = rounds[k];
    rec.after_tasks = after_tasks[k];
    rec.retries = s.retries;
    rec.timeout_s = s.timeout_s;
    for (int a : after_handles[k]) {
      rec.after.emplace_back(wf_.tasks[static_cast<std::size_t>(sched_.instance(a).task)].name,
                             sched_.instance(a).index);
    }
    lines += submission_line(rec);
  }
  // Made durable in the background while the instances are handed out:
  // the answer waits for it (answer_when_durable), the workers need not.
  submit_ticket_ = 0;
  if (!lines.empty()) {
    submit_ticket_ = journal_.write_for_durability(lines);
    if (submit_ticket_ == 0) {
      journal_failed();
      return {{"error", fmt::format("submit: {}", journal_.failure())}};
    }
  }
  workers_[source].submitted += static_cast<int>(subs.size());
  ++workers_[source].calls;
  return {{"handles", std::move(handles)}};
}

void Coordinator::steering_ended(int source) {
  workers_[source].steering_id = -1;
  --steering_workers_;
  // What it still waits for gets an answer all the same: its worker (a
  // command's, which does not block) expects one answer per request.
  const std::string why = "the steering task ended before its answer";
  std::erase_if(waiters_, [&](const Waiter& w) {
    if (w.source != source) return false;
    answer(source, {{"error", why}});
    return true;
  });
  std::erase_if(pending_submits_, [&](const PendingSubmit& p) {
    if (p.source != source) return false;
    answer(source, {{"error", why}});
    return true;
  });
}

void Coordinator::serve_pending_submits() {
  while (!pending_submits_.empty()) {
    const PendingSubmit& p = pending_submits_.front();
    nlohmann::json reply = submit_for(p.source, p.requests);
    if (reply.contains("defer")) return;
    answer_when_durable(p.source, std::move(reply));
    pending_submits_.pop_front();
  }
}

void Coordinator::answer_when_durable(int source, nlohmann::json reply) {
  if (submit_ticket_ == 0 || journal_.is_durable(submit_ticket_)) {
    answer(source, reply);
    return;
  }
  not_durable_.push_back({source, std::move(reply), submit_ticket_});
}

bool Coordinator::answer_durable() {
  bool any = false;
  while (!not_durable_.empty()) {
    Undurable& u = not_durable_.front();
    if (journal_.failed()) {
      journal_failed();
      u.reply = {{"error", fmt::format("submit: {}", journal_.failure())}};
    } else if (!journal_.is_durable(u.ticket)) {
      break;
    }
    answer(u.source, u.reply);
    not_durable_.pop_front();
    any = true;
  }
  return any;
}

// Called for every final instance of a run that steers: the instance's own
// flags first, the maps only for the few they concern (a static instance
// has no parent; only a steering task has children).
void Coordinator::settle_children(int id) {
  const Instance& inst = sched_.instance(id);
  if (inst.submitted) {
    if (const auto it = parent_.find(id); it != parent_.end()) {
      --outstanding_of_[it->second];
      --outstanding_;
      parent_.erase(it);
    }
  }
  const TaskSpec& t = wf_.tasks[static_cast<std::size_t>(inst.task)];
  if (!t.steering || !t.cancel_children || inst.state == TaskState::DONE) return;
  const auto kids = children_.find(id);
  if (kids == children_.end()) return;
  const std::string why = fmt::format("canceled: its submitter {}[{}] ended {} (cancel_children)",
                                      t.name, inst.index, name_of(inst.state));
  for (int child : kids->second) sched_.cancel_new(child, why, now_us(), finals_);
}

nlohmann::json Coordinator::result_of(int id) const {
  const Instance& inst = sched_.instance(id);
  nlohmann::json j = {{"handle", id},
                      {"task", wf_.tasks[static_cast<std::size_t>(inst.task)].name},
                      {"index", inst.index},
                      {"state", std::string(name_of(inst.state))},
                      {"exit_code", inst.exit_code}};
  if (!inst.reason.empty()) j["reason"] = inst.reason;
  if (const auto it = submitted_results_.find(id); it != submitted_results_.end()) {
    j["result"] = nlohmann::json::parse(it->second, nullptr, false);
  }
  return j;
}

void Coordinator::answer_waiters() {
  const auto final = [&](int id) { return is_final(sched_.instance(id).state); };
  std::erase_if(waiters_, [&](Waiter& w) {
    if (w.any) {
      if (!w.ids.empty() && std::none_of(w.ids.begin(), w.ids.end(), final)) return false;
    } else {
      // Ended ones stay ended: each id is passed once, however many
      // times the coordinator looks (a wait for 100,000 would otherwise
      // cost a scan of them for every batch of results).
      while (w.ended < w.ids.size() && final(w.ids[w.ended])) ++w.ended;
      if (w.ended < w.ids.size()) return false;
    }
    nlohmann::json results = nlohmann::json::array();
    for (int id : w.ids) {
      if (final(id)) results.push_back(result_of(id));
    }
    answer(w.source, {{"results", std::move(results)}});
    return true;
  });
}

int Coordinator::node_of_worker(int pilot_rank) const {
  const int world = worker_rank_[static_cast<std::size_t>(pilot_rank - 1)];
  return job_.plan.ranks[static_cast<std::size_t>(world)].node;
}

bool Coordinator::send_batch(const std::function<int(int, int, std::vector<int>&)>& take) {
  const int w = parked_order_.front();
  WorkerInfo& info = workers_[w];
  // Share what is ready among the workers; never more than they asked.
  // (Workers that steer take no share: they run nothing else.)
  const int fair =
      std::max(1, sched_.count(TaskState::NEW) / (workers_count() - steering_workers()));
  const int n = std::min({info.want, fair, wf_.job.max_chunk});
  batch_.clear();
  take(n, w - 1, batch_);
  // Nothing to give: the request stays parked (an empty answer would only
  // make the worker ask again at once).
  if (batch_.empty()) return false;
  parked_order_.pop_front();
  info.parked = false;
  std::vector<std::int32_t> msg;
  msg.reserve(2 + 2 * batch_.size());
  msg.push_back(kTasks);
  msg.push_back(static_cast<std::int32_t>(batch_.size()));
  for (int id : batch_) {
    msg.push_back(id);
    msg.push_back(sched_.instance(id).attempt);
  }
  info.want = 0;
  for (int id : batch_) hold(info, id, +1);
  if (sched_.submitted_count() > 0) define_submitted(w, batch_);
  trace::record(trace::kTaskDispatch, batch_.front(), static_cast<std::int64_t>(batch_.size()),
                w - 1);
  send(w, std::move(msg));
  return true;
}

bool Coordinator::dispatch_alone(const TaskSpec& spec) {
  // A GPU task may go to any waiting worker with the GPUs free on its
  // node, busy or not: the GPUs are the task's from now until its attempt
  // ends, and a worker asks for work only when it has a free slot or soon
  // will. A steering task needs an idle one: nothing may be queued behind
  // a task that waits.
  // Steering tasks never hold every worker: what they submit must run.
  if (spec.steering && steering_workers() + 1 >= workers_count()) return false;
  const auto it = std::find_if(parked_order_.begin(), parked_order_.end(), [&](int w) {
    return gpus_.free_on(node_of_worker(w)) >= spec.gpus_per_rank &&
           (!spec.steering || workers_[w].idle);
  });
  if (it == parked_order_.end()) return false;
  const int w = *it;
  parked_order_.erase(it);
  const int id = sched_.take_multi(w - 1, 1, now_us());
  const int attempt = sched_.instance(id).attempt;
  std::vector<std::int32_t> msg{kPlaced, id, attempt};
  if (spec.gpus_per_rank > 0) {
    for (int g : gpus_.take(id, attempt, node_of_worker(w), spec.gpus_per_rank)) {
      msg.push_back(g);
    }
  }
  WorkerInfo& info = workers_[w];
  info.parked = false;
  info.want = 0;
  if (spec.steering) {
    ++steering_workers_;
    info.steering_id = id;
    info.submitted = 0;
    info.calls = 0;
  }
  hold(info, id, +1);
  trace::record(trace::kTaskDispatch, id, 1, w - 1);
  define_submitted(w, {id});
  send(w, std::move(msg));
  return true;
}

void Coordinator::define_submitted(int w, const std::vector<int>& ids) {
  std::vector<std::int32_t> msg{kDefine, 0};
  for (int id : ids) {
    const std::string* args = sched_.submitted_args(id);
    if (!args) continue;
    const Instance& inst = sched_.instance(id);
    // Its own timeout, in milliseconds (-1: the task's).
    const double timeout = sched_.submitted_timeout(id);
    const auto timeout_ms = static_cast<std::int32_t>(
        timeout < 0 ? -1.0 : std::min(std::ceil(timeout * 1e3), 2147483647.0));
    const std::size_t at = msg.size() + 5;
    msg.insert(msg.end(),
               {id, inst.task, inst.index, timeout_ms, static_cast<std::int32_t>(args->size())});
    msg.resize(at + (args->size() + 3) / 4);
    std::memcpy(msg.data() + at, args->data(), args->size());
    ++msg[1];
  }
  if (msg[1] > 0) send(w, std::move(msg));
}

bool Coordinator::backfill() {
  return send_batch([&](int n, int worker, std::vector<int>& out) {
    return sched_.take_backfill(n, worker, now_us(), out);
  });
}

void Coordinator::serve_requests() {
  if (stopping_) return;
  while (!parked_order_.empty() && sched_.has_ready()) {
    const int ranks = sched_.head_ranks();
    const TaskSpec& spec = wf_.tasks[static_cast<std::size_t>(sched_.head_task())];
    if (ranks == 1 && !spec.goes_alone()) {
      if (!send_batch([&](int n, int worker, std::vector<int>& out) {
            return sched_.take(n, worker, now_us(), out);
          })) {
        return;  // cannot happen: the head is such a task
      }
      continue;
    }
    if (ranks == 1) {
      // A task that waits for a GPU (or a steering task for an idle
      // worker) holds back only its like: the CPU tasks behind it run
      // meanwhile.
      if (dispatch_alone(spec) || backfill()) continue;
      return;
    }
    // A multi-rank task: wait until enough parked workers are idle.
    const std::vector<int> group = spec.kind == TaskKind::command || spec.gpus_per_rank > 0
                                       ? idle_by_node(spec)
                                       : idle_workers(ranks);
    if (group.empty()) return;
    const int id = sched_.take_multi(group[0] - 1, ranks, now_us());
    const int attempt = sched_.instance(id).attempt;
    trace::record(trace::kTaskDispatch, id, 1, group[0] - 1);
    std::vector<std::int32_t> msg{kMulti, id, attempt, ranks};
    for (int w : group) msg.push_back(w - 1);  // worker index = pilot rank - 1
    // Each of the task's ranks takes its GPUs on the node of its first worker.
    for (int r = 0; r < spec.ranks && spec.gpus_per_rank > 0; ++r) {
      const int w =
          group[static_cast<std::size_t>(r) * static_cast<std::size_t>(spec.cores_per_rank)];
      for (int g : gpus_.take(id, attempt, node_of_worker(w), spec.gpus_per_rank)) {
        msg.push_back(g);
      }
    }
    for (int w : group) {
      define_submitted(w, {id});
      hold(workers_[w], id, +1);
      workers_[w].parked = false;
      workers_[w].want = 0;
      workers_[w].idle = false;
      std::erase(parked_order_, w);
      send(w, msg);
    }
  }
}

void Coordinator::interrupt(int sig) {
  interrupted_by_ = sig;
  spdlog::warn(
      "received signal {} ({}): stopping running tasks and cancelling the rest; "
      "finished results are kept, continue with --resume",
      sig, strsignal(sig));
  stop_dispatch();
  for (int w = 1; w < size_; ++w) send(w, {kCancel});
  const double wait_s = wf_.job.kill_grace_s + 10.0;
  cancel_deadline_ = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(wait_s));
}

void Coordinator::finish_workers() {
  for (int w = 1; w < size_; ++w) send(w, {kStop});
  Backoff backoff(off_path_backoff(wf_.job));
  auto all_gone = [&] {
    for (int w = 1; w < size_; ++w) {
      if (!workers_[w].gone) return false;
    }
    return true;
  };
  while (!all_gone()) {
    if (receive_one()) {
      record_finals();
      backoff.reset();
    } else {
      sends_.progress();
      backoff.pause();
    }
  }
  sends_.wait_all(wf_.job.backoff);
}

int Coordinator::run() {
  t0_ = std::chrono::steady_clock::now();
  started_us_ = now_us();
  record_finals();  // instances that used up their retries in earlier jobs
  sched_.start();
  trace::record(trace::kPhase, trace::kPhaseRunStart);
  const long long to_run = sched_.size() - done_earlier_;
  spdlog::info("run directory {}", job_.run_dir);
  spdlog::info("{} task instance(s) from {} task(s) on {} worker(s){}", sched_.size(),
               wf_.tasks.size(), workers_count(),
               done_earlier_ ? fmt::format("; {} finished in an earlier run are skipped, {} to run",
                                           done_earlier_, to_run)
                             : std::string());
  for (int n = 0; job_.plan.gpus_managed && n < job_.plan.node_count; ++n) {
    const NodeGpus& g = job_.plan.node_gpus[static_cast<std::size_t>(n)];
    const std::vector<int>& pool = job_.plan.task_gpus[static_cast<std::size_t>(n)];
    spdlog::info("node {}: GPUs {} (from {}), for tasks {}", n,
                 g.ids.empty() ? "none" : fmt::format("{}", fmt::join(g.ids, ",")),
                 g.source.empty() ? "nowhere" : g.source,
                 pool.empty() ? "none" : job_.plan.gpu_ids(n, pool));
  }
  if (failed_earlier_ > 0) {
    spdlog::error(
        "{} task instance(s) FAILED without running again: earlier jobs lost all their attempts "
        "with the ranks they ran on (see the journal's \"lost\" lines)",
        failed_earlier_);
  }
  while (!sched_.finished()) {
    bool worked = false;
    for (int i = 0; i < 64 && receive_one(); ++i) worked = true;
    if (worked) record_finals();  // recorded before anything else is decided
    if (monitor_.poll()) worked = true;
    if (scaler_.active() && scaler_.tick()) worked = true;
    if (!not_durable_.empty() && answer_durable()) worked = true;
    // A [[scale]] rule whose task has just ended moves the workers it
    // needs before the tasks that end released are handed to them.
    if (scaler_.active() && sched_.has_ready() && scaler_.before_dispatch()) worked = true;
    serve_requests();
    sends_.progress();
    live_.tick(counts(), monitor_);
    if (!interrupted_by_ && stop_signal()) interrupt(stop_signal());
    if (stopping_ && sched_.count(TaskState::NEW) > 0) stop_dispatch();
    if (stopping_ && std::chrono::steady_clock::now() > cancel_deadline_) {
      // Workers that did not answer in time: their tasks are lost causes.
      for (int id = 0; id < sched_.size(); ++id) {
        const Instance& inst = sched_.instance(id);
        if (is_final(inst.state)) continue;
        const int members = inst.members_left;
        for (int m = 0; m < members; ++m) {
          sched_.report(id, inst.attempt, Outcome::canceled, 0, 0, now_us(),
                        "canceled: no report from its worker after the interrupt", finals_);
        }
      }
      record_finals();
    }
    if (worked) {
      backoff_.reset();
    } else {
      backoff_.pause();
    }
  }
  ended_us_ = now_us();
  trace::record(trace::kPhase, trace::kPhaseRunEnd);
  makespan_s_ = seconds_since(t0_);
  // Every replica past an elastic service's min goes back to its workers,
  // who then stop with the others.
  if (scaler_.active()) scaler_.finish(off_path_backoff(wf_.job));
  finish_workers();
  if (!journal_.close()) journal_failed();
  // The workers are gone, so nothing can ask the services any more: they
  // answer what they hold, then stop.
  monitor_.stop_all(wf_.job.backoff);
  live_.finish(counts(), monitor_);

  int exit_code = 0;
  const std::string recording_failure = monitor_.recording_failure();
  if (!recording_failure.empty()) spdlog::error("{}", recording_failure);
  if (journal_.failed() || !recording_failure.empty()) {
    exit_code = kExitRecordsLost;
  } else if (interrupted_by_) {
    exit_code = 128 + interrupted_by_;
  } else if (sched_.count(TaskState::FAILED) + sched_.count(TaskState::CANCELED) > 0) {
    exit_code = 1;
  }
  try {
    write_summary(exit_code);
  } catch (const std::exception& e) {
    spdlog::error("{}; the journal holds every result, but this job's record is incomplete",
                  e.what());
    exit_code = kExitRecordsLost;
  }
  if (journal_.failed()) {
    spdlog::error("{}; {} task(s) were running or not yet recorded when it failed",
                  journal_.failure(), in_flight_at_journal_failure_);
  }
  return exit_code;
}

TaskCounts Coordinator::counts() const {
  TaskCounts c;
  c.total = sched_.size();
  c.done = sched_.count(TaskState::DONE);
  c.failed = sched_.count(TaskState::FAILED);
  c.canceled = sched_.count(TaskState::CANCELED);
  c.done_earlier = done_earlier_;
  // The workers start what they hold as their slots free up: what does not
  // fit yet is queued there, not running.
  const long long in_flight = sched_.in_flight();
  c.running = std::min(running_, in_flight);
  c.queued = in_flight - c.running;
  return c;
}

void Coordinator::write_summary(int exit_code) {
  using nlohmann::json;
  const int done = sched_.count(TaskState::DONE);
  const int failed = sched_.count(TaskState::FAILED);
  const int canceled = sched_.count(TaskState::CANCELED);
  const int done_now = done - done_earlier_;
  std::int64_t busy = 0;
  for (int w = 1; w < size_; ++w) busy += workers_[w].busy_us;
  long long attempts = 0;
  for (int id = 0; id < sched_.size(); ++id) {
    const Instance& inst = sched_.instance(id);
    if (!inst.from_earlier_run) attempts += inst.attempt - inst.attempts_before;
  }
  const double rate = makespan_s_ > 0 ? done_now / makespan_s_ : 0.0;
  const double util = makespan_s_ > 0
                          ? static_cast<double>(busy) / 1e6 /
                                (makespan_s_ * workers_count() * wf_.layout.worker_slots)
                          : 0.0;
  json failures = json::array();
  for (int id = 0; id < sched_.size() && failures.size() < 50; ++id) {
    const Instance& inst = sched_.instance(id);
    if (inst.state != TaskState::FAILED && inst.state != TaskState::CANCELED) continue;
    failures.push_back({{"task", wf_.tasks[inst.task].name},
                        {"index", inst.index},
                        {"state", name_of(inst.state)},
                        {"attempts", inst.attempt},
                        {"exit_code", inst.exit_code},
                        {"reason", inst.reason}});
  }
  json per_task = json::object();
  for (int t = 0; t < static_cast<int>(wf_.tasks.size()); ++t) {
    int counts[kTaskStateCount] = {};
    for (int i = 0; i < wf_.tasks[t].count; ++i) {
      ++counts[static_cast<int>(sched_.instance(sched_.id_of(t, i)).state)];
    }
    per_task[wf_.tasks[t].name] = {{"count", wf_.tasks[t].count},
                                   {"done", counts[static_cast<int>(TaskState::DONE)]},
                                   {"failed", counts[static_cast<int>(TaskState::FAILED)]},
                                   {"canceled", counts[static_cast<int>(TaskState::CANCELED)]}};
  }
  json summary = {
      {"job", wf_.job.name},
      {"workflow", wf_.path},
      {"run_dir", job_.run_dir},
      {"resumed", job_.resume},
      {"world_size", job_.plan.world_size},
      {"nodes", job_.plan.node_count},
      {"workers", workers_count()},
      {"worker_slots", wf_.layout.worker_slots},
      {"started_us", started_us_},
      {"ended_us", ended_us_},
      {"makespan_s", makespan_s_},
      {"tasks",
       {{"total", sched_.size()},
        {"done", done},
        {"done_earlier", done_earlier_},
        {"failed", failed},
        {"canceled", canceled},
        {"attempts", attempts}}},
      {"per_task", per_task},
      {"tasks_per_s", rate},
      {"worker_utilisation", util},
      {"interrupted_by_signal", interrupted_by_ ? json(interrupted_by_) : json(nullptr)},
      {"failures", failures},
      {"services", monitor_.summary()},
      {"trace", trace_budget()},
      {"idle_mode", std::string(name_of(job_.idle))},
      {"allocation", read_allocation().to_json()},
      {"journal_error", journal_.failed() ? json(journal_.failure()) : json(nullptr)},
      {"exit_code", exit_code},
  };
  if (scaler_.active()) summary["elastic"] = scaler_.summary();
  // A replayed run says so: its services answered from another run.
  if (!wf_.replay_of.empty()) summary["replay_of"] = wf_.replay_of;
  write_file_atomically(job_.run_dir + "/summary.json", summary.dump(2) + "\n");
  // summary.json describes the run as it stands; history.jsonl keeps one
  // line per job that worked on it, so that a run finished over several
  // batch jobs still shows what each of them did and why it stopped.
  json history = {{"started_us", started_us_},
                  {"ended_us", ended_us_},
                  {"resumed", job_.resume},
                  {"done", done_now},
                  {"failed", failed},
                  {"canceled", canceled},
                  {"interrupted_by_signal", summary["interrupted_by_signal"]},
                  {"journal_error", summary["journal_error"]},
                  {"exit_code", exit_code},
                  {"makespan_s", makespan_s_},
                  {"world_size", job_.plan.world_size},
                  {"services", service_counts(summary["services"])},
                  {"allocation", summary["allocation"]}};
  history.update(workflow_fields(wf_));
  append_line_durably(job_.run_dir + "/history.jsonl", history.dump() + "\n");
  job_ended_with_summary(job_.run_dir);

  spdlog::info(
      "finished in {:.3f} s: {} done{}, {} failed, {} canceled; {:.1f} tasks/s, worker "
      "utilisation {:.0f}%",
      makespan_s_, done_now,
      done_earlier_ ? fmt::format(" (+{} from an earlier run)", done_earlier_) : "", failed,
      canceled, rate, util * 100);
  for (const auto& f : failures) {
    if (f["state"] == "FAILED") {
      spdlog::error("task {}[{}] FAILED after {} attempt(s): {}", f["task"].get<std::string>(),
                    f["index"].get<int>(), f["attempts"].get<int>(),
                    f["reason"].get<std::string>());
    }
  }
  spdlog::info("summary: {}/summary.json", job_.run_dir);
}

}  // namespace

int run_coordinator(const Job& job) {
  if (job.mode == Mode::spmd) return coordinate_session(job);
  Coordinator c(job);
  return c.run();
}

}  // namespace tandem::detail
