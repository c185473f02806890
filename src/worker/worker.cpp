// A worker: asks the coordinator for tasks, runs them, and reports what
// happened in batches. Function tasks run on the worker's thread, one at a
// time; command tasks run as child processes, up to `worker_slots` at once,
// while the worker keeps relaying their output and talking to the
// coordinator in one event loop that sleeps in poll().
//
// The worker asks for more before its queue runs dry, judging by how long its
// tasks take: short tasks are fetched in large batches well ahead, long ones
// one at a time and only when the worker is idle, so that a slow task never
// holds a queued one back while another worker waits.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/access.hpp"
#include "base/backoff.hpp"
#include "base/client_env.hpp"
#include "base/clock.hpp"
#include "base/files.hpp"
#include "base/mpi_check.hpp"
#include "base/mpi_wait.hpp"
#include "base/raise.hpp"
#include "base/rank_record.hpp"
#include "base/signals.hpp"
#include "client/client_impl.hpp"
#include "exec/command.hpp"
#include "exec/mpi_launch.hpp"
#include "job/logging.hpp"
#include "job/resources.hpp"
#include "job/roles.hpp"
#include "job/sockets.hpp"
#include "protocol/pilot_messages.hpp"
#include "protocol/tags.hpp"
#include "tandem/client.hpp"
#include "tandem/error.hpp"
#include "tandem/task.hpp"
#include "tasks/context_data.hpp"
#include "tasks/python_tasks.hpp"
#include "tasks/registry.hpp"
#include "trace/trace.hpp"
#include "transport/direct_layout.hpp"
#include "worker/isolated.hpp"
#include "worker/proxy.hpp"
#include "worker/task_resources.hpp"
#include "worker/watchdog.hpp"

namespace tandem::detail {

namespace {

using namespace protocol;

// Ask for more while the queue holds less than this much work.
constexpr double kPrefetchWindowS = 0.005;
// Aim for batches of about this much work.
constexpr double kBatchTargetS = 0.020;
// Send results at least this often while busy.
constexpr double kReportIntervalS = 0.020;
// While function tasks are queued, look for messages at most this often.
// Every MPI call that finds nothing yields the core (Open MPI's
// yield_when_idle), and with more ranks than cores a yield hands the core
// to another rank: polling once per task cost a context switch per task.
// Batches are fetched 5 ms ahead, so 0.5 ms between looks delays nothing.
constexpr std::int64_t kBusyPollIntervalUs = 500;

struct Assignment {
  int id = 0;
  int attempt = 0;
  std::vector<int> members;  // multi-rank attempts: worker indices
  std::vector<int> gpus;     // GPU indices on their nodes, each rank's in turn
};

struct ActiveCommand {
  Assignment assignment;
  bool mpi = false;  // an MPI command task's launcher: the worker's slots are all its
  int slot = 0;      // which of the worker's slots it occupies (for the trace)
  std::int64_t t_start = 0;
  std::unique_ptr<RunningCommand> command;
};

// What each task of the workflow needs at run time, prepared once. (Its
// implicit members are nlohmann::json's and std::filesystem::path's, which
// clang-tidy cannot prove non-throwing.)
// NOLINTNEXTLINE(bugprone-exception-escape)
struct TaskRuntime {
  TaskFunction function = nullptr;
  nlohmann::json args;
  std::vector<nlohmann::json> instance_args;  // a sweep's, by index; empty without one
  std::vector<std::string> base_env;
  std::filesystem::path output_dir;
  int first_id = 0;
  Launcher launcher = Launcher::mpirun;  // MPI command tasks: resolved
  std::string launcher_path;             // empty: not found
  std::string guard_path;                // setpriv, for the parent-death signal; empty: none
};

// A worker lent to an MPI command task that another worker, the lead,
// launched: it starts nothing until the lead says how the task ended.
struct Lent {
  Assignment assignment;
  std::int64_t t_start = 0;
};

// What the lead of an MPI command task sends to the other workers it held,
// on Job::workers with tags::kMultiRelease, followed by the reason's bytes.
struct ReleaseHeader {
  std::int32_t id = 0;
  std::int32_t attempt = 0;
  std::int32_t outcome = 0;
  std::int32_t exit_code = 0;
};

class Worker {
 public:
  explicit Worker(const Job& job)
      : job_(job),
        wf_(job.wf),
        backoff_(wf_.job.backoff),
        client_impl_(std::make_shared<ClientImpl>(job)),
        client_(Access::make_client(client_impl_)) {
    MPI_Comm_rank(job_.workers, &index_);
    slots_ = wf_.layout.worker_slots;
    int first = 0;
    for (const TaskSpec& t : wf_.tasks) {
      TaskRuntime rt;
      rt.first_id = first;
      first += t.count;
      rt.output_dir = std::filesystem::path(job_.run_dir) / "tasks" / t.name;
      rt.args = nlohmann::json::parse(t.args_json);
      for (const std::string& a : t.instance_args)
        rt.instance_args.push_back(nlohmann::json::parse(a));
      if (t.is_python()) {
        // start_job started the interpreter and imported the modules.
        const PythonPlugin* python = python_plugin();
        if (!python)
          raise<environment_error>(fmt::format("task '{}': Python is not started", t.name));
        rt.function = python->run;
      } else if (t.kind == TaskKind::function) {
        rt.function = find_task_function(t.function);
      } else {
        // An MPI program's own launcher must not see ours.
        rt.base_env = inherited_environment(t.clean_mpi_env || t.is_mpi_command());
        for (const auto& [key, value] : t.env) {
          const std::string prefix = key + "=";
          std::erase_if(rt.base_env,
                        [&prefix](const std::string& e) { return e.rfind(prefix, 0) == 0; });
          rt.base_env.push_back(prefix + value);
        }
        rt.base_env.push_back("TANDEM_RUN_DIR=" + job_.run_dir);
        rt.base_env.push_back("TANDEM_TASK_NAME=" + t.name);
        rt.base_env.push_back(fmt::format("TANDEM_TASK_COUNT={}", t.count));
        rt.base_env.push_back(fmt::format("TANDEM_WORKER={}", index_));
        rt.base_env.push_back(fmt::format("TANDEM_TASK_RANKS={}", t.ranks));
        if (t.is_mpi_command()) {
          rt.launcher = resolve_launcher(wf_.job.launcher, rt.base_env);
          rt.launcher_path = find_launcher(rt.launcher, rt.base_env);
          rt.guard_path = find_parent_death_guard(rt.base_env);
          if (!t.env.contains("OMP_NUM_THREADS")) {
            std::erase_if(rt.base_env,
                          [](const std::string& e) { return e.rfind("OMP_NUM_THREADS=", 0) == 0; });
            rt.base_env.push_back(fmt::format("OMP_NUM_THREADS={}", t.cores_per_rank));
          }
        }
      }
      runtimes_.push_back(std::move(rt));
    }
    static_size_ = first;
    const std::vector<int> clients = job_.plan.client_ranks();
    for (int r : clients) worker_node_.push_back(job_.plan.ranks[r].node);
    worker_world_ = clients;
    if (needs_proxy(wf_)) start_proxy();
    // (A submitted instance may bring a timeout its task has not.)
    const bool steers = std::any_of(wf_.tasks.begin(), wf_.tasks.end(),
                                    [](const TaskSpec& t) { return t.steering; });
    const bool watched = std::any_of(wf_.tasks.begin(), wf_.tasks.end(), [&](const TaskSpec& t) {
      return t.kind == TaskKind::function && !t.isolate && (t.timeout_s > 0 || steers);
    });
    if (watched) watchdog_ = std::make_unique<Watchdog>();
    // What function tasks print on stderr goes into the run directory, next
    // to the rank's log; Tandem's own lines still reach the job's stderr.
    const bool functions = std::any_of(wf_.tasks.begin(), wf_.tasks.end(), [](const TaskSpec& t) {
      return t.kind == TaskKind::function;
    });
    if (functions) {
      std::string why;
      const std::string path = fmt::format("{}/logs/rank-{:05d}.stderr", job_.run_dir, job_.rank);
      if (!send_stderr_to(path, &why))
        spdlog::warn("{}; function tasks print to the job's stderr", why);
    }
  }

  void run();

 private:
  void start_proxy();
  proxy::DirectRoutes direct_routes() const;
  void poll_messages();
  void handle_work(const std::vector<std::int32_t>& msg);
  bool start_next();
  void run_function(const Assignment& a);
  void start_command(const Assignment& a);
  void add_mpi_launch(const TaskSpec& spec, const TaskRuntime& rt, const Assignment& a,
                      const std::string& stem, const std::vector<RankResources>& given,
                      CommandLaunch& launch) const;
  void give_resources(const RankResources& given, CommandLaunch& launch) const;
  void release_members(const Assignment& a, const CommandResult& r);
  void poll_release();
  bool holds_all_slots() const;
  bool progress_commands(int wait_ms);
  void finished_attempt(std::int64_t t_start, std::int64_t t_end);
  void add_result(int id, int attempt, Outcome outcome, int exit_code, std::int64_t t_start,
                  std::int64_t t_end, const std::string& reason, const std::string& result = {});
  void maybe_send_update();
  bool poll_due() const;
  void send_update(int want, bool bye);
  void cancel_queue();
  int task_of(int id) const;
  /// The instance's index in its task, and its args: the workflow's, or a
  /// submitted instance's as kDefine gave them.
  int index_of(int id) const;
  const nlohmann::json& args_of(int id) const;
  /// Its timeout in seconds (0: none): a submitted instance's own, or its task's.
  double timeout_of(int id) const;
  /// A steering function task's request to the coordinator (for
  /// instance @p id), and its answer.
  std::string steer(int id, const std::string& request);
  /// A steering command's requests, through the proxy: passed on one at a
  /// time without blocking the loop. True if anything moved.
  bool relay_steering();
  bool should_request() const;
  int wanted() const;
  /// Serves as elastic replica plan.replicas[serve_slot_] until the
  /// coordinator shrinks the service, then comes back to tasks.
  void serve_elastic();
  /// Whether tasks may start: not right after serving before the
  /// coordinator's kResume, nor with a routing table older than it gave.
  bool routing_current();

  const Job& job_;
  const Workflow& wf_;
  Backoff backoff_;
  std::shared_ptr<ClientImpl> client_impl_;  // the services' client, shared with the proxy
  Client client_;                            // the same, as function tasks see it
  int index_ = 0;
  std::vector<TaskRuntime> runtimes_;
  int static_size_ = 0;  // the workflow's own instances; submitted ones follow
  // (nlohmann::json's implicit members, which clang-tidy cannot prove
  // non-throwing, as TaskRuntime's.)
  // NOLINTNEXTLINE(bugprone-exception-escape)
  struct Defined {
    int task = 0;
    int index = 0;
    nlohmann::json args;
    double timeout_s = -1;  // its own (-1: the task's)
  };
  std::unordered_map<int, Defined> defined_;  // submitted instances handed to this worker
  std::vector<int> worker_node_;              // node of every worker, by worker index
  std::vector<int> worker_world_;             // world rank of every worker, by worker index
  std::optional<Lent> lent_;                  // lent to another worker's MPI command task
  std::deque<Assignment> queue_;
  std::vector<ActiveCommand> active_;
  std::vector<pollfd> poll_fds_;
  std::unique_ptr<proxy::Proxy> proxy_;  // when executable tasks may call services
  bool steer_out_ = false;               // relay_steering: an answer is due
  std::unique_ptr<Watchdog> watchdog_;   // when function tasks that are not isolated have timeouts
  int slots_ = 1;
  bool request_outstanding_ = false;
  bool cancelled_ = false;
  bool stop_ = false;
  double avg_task_s_ = -1;  // moving average; -1 until the first task ends
  ByteWriter out_;
  int pending_results_ = 0;
  std::chrono::steady_clock::time_point last_report_ = std::chrono::steady_clock::now();
  MPI_Request send_req_ = MPI_REQUEST_NULL;
  std::vector<char> in_flight_;  // the bytes of the update being sent
  std::vector<std::int32_t> recv_buf_;
  std::int64_t busy_us_ = 0;
  std::int64_t last_poll_us_ = 0;  // when poll_messages last ran
  int serve_slot_ = -1;            // kServe: the elastic replica to become
  bool awaiting_resume_ = false;   // back from serving, before kResume
  int resume_version_ = 0;         // kResume: the routing table to route with, or newer
};

// Where an attempt's stdout and stderr go: tasks/NAME/INDEX.out (.err),
// INDEX.tryN.out for later attempts (Python tasks name theirs the same way
// in tandem/_task.py: _stem).
std::string attempt_stem(const TaskRuntime& rt, int index, int attempt) {
  return (rt.output_dir / std::to_string(index)).string() +
         (attempt > 1 ? fmt::format(".try{}", attempt) : std::string());
}

int Worker::task_of(int id) const {
  if (id >= static_size_) {
    const auto it = defined_.find(id);
    return it == defined_.end() ? 0 : it->second.task;
  }
  // Tasks are few; a linear scan from the back is cheap and branch-friendly.
  for (int t = static_cast<int>(runtimes_.size()) - 1; t >= 0; --t) {
    if (id >= runtimes_[t].first_id) return t;
  }
  return 0;
}

int Worker::index_of(int id) const {
  if (id >= static_size_) return defined_.at(id).index;
  return id - runtimes_[static_cast<std::size_t>(task_of(id))].first_id;
}

double Worker::timeout_of(int id) const {
  if (id >= static_size_) {
    const double own = defined_.at(id).timeout_s;
    if (own >= 0) return own;
  }
  return wf_.tasks[task_of(id)].timeout_s;
}

const nlohmann::json& Worker::args_of(int id) const {
  if (id >= static_size_) return defined_.at(id).args;
  const TaskRuntime& rt = runtimes_[static_cast<std::size_t>(task_of(id))];
  return rt.instance_args.empty() ? rt.args
                                  : rt.instance_args[static_cast<std::size_t>(index_of(id))];
}

// Blocks the worker, as the steering task itself does: the coordinator
// gives a worker that steers no other work.
// How long a steering task's wait polls often before it backs off.
constexpr std::int64_t kQuickSteerUs = 2000;

std::string Worker::steer(int id, const std::string& request) {
  // An answer still due to a command that steered before on this worker
  // comes first: it is the proxy's to drop.
  for (Backoff drain(wf_.job.backoff); steer_out_;) {
    if (!relay_steering()) drain.pause();
  }
  const std::string text = fmt::format("{} {}", id, request);
  TANDEM_MPI_CHECK(
      MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, 0, tags::kSteer, job_.pilot));
  // Its answer comes in microseconds (handles) to seconds (a wait): poll
  // often at first, so that a round of short tasks is not spent asleep,
  // then back off as any idle rank does, so that a long wait does not take
  // the cores of the ranks that run what it waits for (half the pilot's
  // rate on 2 cores, bench/adaptive.py).
  BackoffSpec often = wf_.job.backoff;
  often.max_sleep_us = std::min(often.max_sleep_us, 50);
  Backoff quick(often);
  Backoff slow(wf_.job.backoff);
  const std::int64_t since = now_us();
  MPI_Status status;
  for (int flag = 0; !flag;) {
    TANDEM_MPI_CHECK(MPI_Iprobe(0, tags::kSteerAnswer, job_.pilot, &flag, &status));
    if (flag) break;
    if (now_us() - since < kQuickSteerUs) {
      quick.pause();
    } else {
      slow.pause();
    }
  }
  int n = 0;
  MPI_Get_count(&status, MPI_CHAR, &n);
  std::string answer(static_cast<std::size_t>(n), '\0');
  TANDEM_MPI_CHECK(
      MPI_Recv(answer.data(), n, MPI_CHAR, 0, tags::kSteerAnswer, job_.pilot, MPI_STATUS_IGNORE));
  return answer;
}

// A command that steers sends its requests through the proxy. The loop
// must go on meanwhile (the proxy, the command's end), so the request goes
// out here and its answer is looked for on each turn. Requests from a
// command that has ended are still answered by the coordinator (with an
// error) and dropped by the proxy, so one answer always follows each send.
bool Worker::relay_steering() {
  bool moved = false;
  if (steer_out_) {
    int flag = 0;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Iprobe(0, tags::kSteerAnswer, job_.pilot, &flag, &status));
    if (!flag) return false;
    int n = 0;
    MPI_Get_count(&status, MPI_CHAR, &n);
    std::string answer(static_cast<std::size_t>(n), '\0');
    TANDEM_MPI_CHECK(
        MPI_Recv(answer.data(), n, MPI_CHAR, 0, tags::kSteerAnswer, job_.pilot, MPI_STATUS_IGNORE));
    proxy_->steer_answered(answer);
    steer_out_ = false;
    moved = true;
  }
  std::string request;
  if (!proxy_->next_steer(request)) return moved;
  // The steering command this worker runs (the coordinator gives a worker
  // that steers nothing else); -1 when there is none, which the
  // coordinator answers with an error.
  int by = -1;
  for (const ActiveCommand& c : active_) {
    if (wf_.tasks[task_of(c.assignment.id)].steering) by = c.assignment.id;
  }
  const std::string text = fmt::format("{} {}", by, request);
  TANDEM_MPI_CHECK(
      MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, 0, tags::kSteer, job_.pilot));
  steer_out_ = true;
  return true;
}

void Worker::poll_messages() {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    TANDEM_MPI_CHECK(MPI_Iprobe(0, tags::kWork, job_.pilot, &flag, &status));
    if (!flag) return;
    int n = 0;
    MPI_Get_count(&status, MPI_INT32_T, &n);
    recv_buf_.resize(n);
    TANDEM_MPI_CHECK(
        MPI_Recv(recv_buf_.data(), n, MPI_INT32_T, 0, tags::kWork, job_.pilot, MPI_STATUS_IGNORE));
    handle_work(recv_buf_);
  }
}

void Worker::handle_work(const std::vector<std::int32_t>& msg) {
  if (msg.empty()) return;
  switch (msg[0]) {
    case kTasks: {
      const int n = msg[1];
      for (int i = 0; i < n; ++i) queue_.push_back({msg[2 + 2 * i], msg[3 + 2 * i], {}, {}});
      request_outstanding_ = false;
      break;
    }
    case kDefine: {
      std::size_t at = 2;
      for (int k = 0; k < msg[1]; ++k) {
        Defined d{msg[at + 1], msg[at + 2], {}, msg[at + 3] < 0 ? -1.0 : msg[at + 3] / 1e3};
        const auto bytes = static_cast<std::size_t>(msg[at + 4]);
        const std::string text(reinterpret_cast<const char*>(msg.data() + at + 5), bytes);
        d.args = nlohmann::json::parse(text, nullptr, false);
        defined_[msg[at]] = std::move(d);
        at += 5 + (bytes + 3) / 4;
      }
      break;
    }
    case kPlaced:
      queue_.push_back({msg[1], msg[2], {}, std::vector<int>(msg.begin() + 3, msg.end())});
      request_outstanding_ = false;
      break;
    case kMulti: {
      Assignment a{msg[1], msg[2], {}, {}};
      const int ranks = msg[3];
      a.members.assign(msg.begin() + 4, msg.begin() + 4 + ranks);
      a.gpus.assign(msg.begin() + 4 + ranks, msg.end());
      request_outstanding_ = false;
      if (wf_.tasks[task_of(a.id)].kind == TaskKind::command && a.members[0] != index_) {
        // The lead runs the launcher; this worker's cores are the task's
        // until the lead says it ended.
        lent_ = Lent{std::move(a), now_us()};
        trace::record(trace::kTaskStart, lent_->assignment.id, lent_->assignment.attempt, 0);
        break;
      }
      queue_.push_back(std::move(a));
      break;
    }
    case kServe:
      serve_slot_ = msg[1];
      request_outstanding_ = false;  // the answer to our request for work
      break;
    case kResume:
      resume_version_ = msg[1];
      awaiting_resume_ = false;
      break;
    case kCancel:
      cancelled_ = true;
      break;
    case kStop:
      stop_ = true;
      break;
    default:
      spdlog::error("unknown message kind {} from the coordinator; ignored", msg[0]);
  }
}

// Adds @p dir to the colon-separated variable @p name of @p env, first or
// last, creating the variable when it is not there.
void add_to_path_variable(std::vector<std::string>& env, const std::string& name,
                          const std::string& dir, bool first) {
  const std::string prefix = name + "=";
  auto it = std::find_if(env.begin(), env.end(),
                         [&](const std::string& v) { return v.rfind(prefix, 0) == 0; });
  if (it == env.end() || it->size() == prefix.size()) {
    if (it != env.end()) env.erase(it);
    env.push_back(prefix + dir);
    return;
  }
  const std::string value = it->substr(prefix.size());
  *it = prefix + (first ? dir + ":" + value : value + ":" + dir);
}

// Executable tasks reach the services through this worker: a socket in the
// private directory, named in their environment with what the C, Python
// and Fortran clients need to find their library.
proxy::DirectRoutes Worker::direct_routes() const {
  proxy::DirectRoutes routes;
  routes.worker_rank = job_.rank;
  routes.dedicated = job_.idle == IdleMode::dedicated;
  routes.endpoints.resize(wf_.services.size());
  for (const ReplicaPlacement& r : job_.plan.replicas) {
    if (r.node != job_.me().node || r.ranks.empty()) continue;
    // Deadlines and fallbacks are the proxy's to keep (ClientImpl): the
    // direct path has neither.
    const ServiceSpec& spec = wf_.services[static_cast<std::size_t>(r.service)];
    if (spec.deadline_ms > 0 || spec.fallback_service >= 0) continue;
    routes.endpoints[static_cast<std::size_t>(r.service)].push_back(
        direct::endpoint_name(job_.pids[static_cast<std::size_t>(r.ranks[0])]));
  }
  return routes;
}

void Worker::start_proxy() {
  const std::string dir = proxy_socket_dir(wf_, job_.run_dir);
  try {
    ensure_private_dir(dir);
    proxy_ = std::make_unique<proxy::Proxy>(*client_impl_, socket_path(dir, index_), index_,
                                            direct_routes());
  } catch (const std::exception& e) {
    // Rank 0 checked the directory and the path at start, so this is rare
    // (a full disk, a directory changed meanwhile); the worker still runs
    // its tasks, and those that call services are told there is no socket.
    spdlog::error("proxy: {}; executable tasks on worker {} cannot reach the services", e.what(),
                  index_);
    return;
  }
  const ClientEnvironment env = client_environment();
  for (std::size_t t = 0; t < wf_.tasks.size(); ++t) {
    if (wf_.tasks[t].kind != TaskKind::command) continue;
    auto& e = runtimes_[t].base_env;
    e.push_back("TANDEM_SOCKET=" + proxy_->path());
    if (!env.library.empty()) {
      e.push_back("TANDEM_LIBRARY=" + env.library);
      // A program linked with -ltandem but no rpath still finds it; last,
      // so that the user's own LD_LIBRARY_PATH comes first.
      const auto slash = env.library.rfind('/');
      if (slash != std::string::npos) {
        add_to_path_variable(e, "LD_LIBRARY_PATH", env.library.substr(0, slash), false);
      }
    }
    if (!env.python_dir.empty()) add_to_path_variable(e, "PYTHONPATH", env.python_dir, true);
  }
  spdlog::debug("proxy listening on {}", proxy_->path());
}

void Worker::add_result(int id, int attempt, Outcome outcome, int exit_code, std::int64_t t_start,
                        std::int64_t t_end, const std::string& reason, const std::string& result) {
  if (id >= static_size_) defined_.erase(id);  // a retry is defined again
  if (out_.size() == 0) out_.put(UpdateHeader{});
  ResultRecord r{id,
                 attempt,
                 static_cast<std::int32_t>(outcome),
                 exit_code,
                 t_start,
                 t_end,
                 static_cast<std::int32_t>(reason.size()),
                 static_cast<std::int32_t>(result.size())};
  out_.put(r);
  out_.put_text(reason);
  out_.put_text(result);
  ++pending_results_;
  trace::record(trace::kTaskEnd, id, attempt, static_cast<std::int32_t>(outcome));
}

void Worker::send_update(int want, bool bye) {
  // One update in flight at a time; its bytes must live until it completes.
  if (send_req_ != MPI_REQUEST_NULL) wait_request(send_req_, wf_.job.backoff);
  if (out_.size() == 0) out_.put(UpdateHeader{});
  auto* h = out_.at<UpdateHeader>(0);
  h->want = want;
  h->results = pending_results_;
  h->idle = queue_.empty() && active_.empty() && !lent_;
  h->bye = bye;
  h->busy_us = busy_us_;
  std::swap(in_flight_, out_.bytes());
  out_.clear();
  pending_results_ = 0;
  last_report_ = std::chrono::steady_clock::now();
  TANDEM_MPI_CHECK(MPI_Isend(in_flight_.data(), static_cast<int>(in_flight_.size()), MPI_BYTE, 0,
                             tags::kUpdate, job_.pilot, &send_req_));
  if (want > 0) request_outstanding_ = true;
}

// An MPI command task holds every slot of each worker it runs on, the
// lead's included.
bool Worker::holds_all_slots() const {
  return lent_ ||
         std::any_of(active_.begin(), active_.end(), [](const ActiveCommand& c) { return c.mpi; });
}

bool Worker::should_request() const {
  if (request_outstanding_ || cancelled_ || stop_ || holds_all_slots()) return false;
  if (queue_.empty() && static_cast<int>(active_.size()) < slots_) return true;
  if (avg_task_s_ < 0 || avg_task_s_ >= kPrefetchWindowS) return false;
  return static_cast<double>(queue_.size()) * avg_task_s_ / slots_ < kPrefetchWindowS;
}

int Worker::wanted() const {
  if (avg_task_s_ <= 0) return slots_;
  const double n = slots_ * kBatchTargetS / std::max(avg_task_s_, 1e-7);
  return static_cast<int>(std::clamp(n, 1.0, static_cast<double>(wf_.job.max_chunk)));
}

void Worker::maybe_send_update() {
  if (should_request()) {
    send_update(wanted(), false);
    return;
  }
  if (pending_results_ == 0) return;
  const bool idle = queue_.empty() && active_.empty() && !lent_;
  if (idle || seconds_since(last_report_) >= kReportIntervalS) send_update(0, false);
}

void Worker::cancel_queue() {
  const std::int64_t t = now_us();
  for (const Assignment& a : queue_) {
    add_result(a.id, a.attempt, Outcome::canceled, 0, 0, t,
               "canceled before it started: the run was interrupted");
  }
  queue_.clear();
}

void Worker::finished_attempt(std::int64_t t_start, std::int64_t t_end) {
  busy_us_ += t_end - t_start;
  const double took = static_cast<double>(t_end - t_start) / 1e6;
  avg_task_s_ = avg_task_s_ < 0 ? took : 0.8 * avg_task_s_ + 0.2 * took;
}

void Worker::run_function(const Assignment& a) {
  const int task = task_of(a.id);
  const TaskSpec& spec = wf_.tasks[task];
  TaskContextData data;
  data.name = spec.name;
  data.task = task;
  data.index = index_of(a.id);
  data.count = spec.count;
  data.attempt = a.attempt;
  data.run_dir = job_.run_dir;
  data.output_dir = runtimes_[task].output_dir;
  data.args = &args_of(a.id);
  data.own_args = a.id >= static_size_;
  data.client = &client_;
  if (spec.steering) {
    data.steer = [this, id = a.id](const std::string& request) { return steer(id, request); };
  }
  // Only an isolated attempt's files are named here: a C++ function's
  // attempt has none, and a Python one names its own only if it prints
  // (tandem/_task.py), so that a million attempts a second make no paths.
  if (spec.isolate) data.stem = attempt_stem(runtimes_[task], data.index, a.attempt);
  MPI_Comm sub = MPI_COMM_NULL;
  if (!a.members.empty()) {
    // Only the members take part: MPI_Comm_create_group is collective over
    // the group, not over all workers.
    MPI_Group all_group;
    MPI_Group group;
    MPI_Comm_group(job_.workers, &all_group);
    MPI_Group_incl(all_group, static_cast<int>(a.members.size()), a.members.data(), &group);
    TANDEM_MPI_CHECK(MPI_Comm_create_group(job_.workers, group, a.id % 32768, &sub));
    return_errors(sub);
    MPI_Group_free(&group);
    MPI_Group_free(&all_group);
    data.comm = sub;
    MPI_Comm_rank(sub, &data.rank);
    MPI_Comm_size(sub, &data.size);
  }
  // Only a workflow that hands out GPUs pays for this, not a million null
  // tasks a second.
  std::string my_gpus;
  if (job_.plan.gpus_managed) {
    my_gpus = task_resources(job_, spec, a.members, index_, a.gpus,
                             worker_world_)[static_cast<std::size_t>(data.rank)]
                  .gpus;
    data.gpus = parse_gpu_list(my_gpus);
  }
  Outcome outcome = Outcome::failed;
  std::string reason;
  const std::int64_t t_start = now_us();
  trace::record(trace::kTaskStart, a.id, a.attempt, 0);
  // In the black box before it starts: if it takes the rank down, the next
  // job knows whom to charge.
  rank_record::take_slot(0, rank_record::kFunction, spec.name, data.index, a.attempt, t_start);
  int exit_code = 0;
  if (spec.isolate) {
    // A forked child cannot use the worker's MPI: no client, no comm.
    data.client = nullptr;
    data.comm = MPI_COMM_NULL;
    data.isolated = true;
    TaskContext ctx = Access::make_context(&data);
    IsolatedLaunch launch{spec.function, data.stem + ".out", data.stem + ".err", timeout_of(a.id),
                          wf_.job.kill_grace_s};
    launch.set_gpus = job_.plan.gpus_managed;
    launch.gpus = my_gpus;
    if (spec.is_python()) {
      const PythonPlugin* python = python_plugin();
      launch.before_fork = python->before_fork;
      launch.after_fork_parent = python->after_fork_parent;
      launch.after_fork_child = python->after_fork_child;
    }
    IsolatedResult r = run_isolated(runtimes_[task].function, ctx, launch);
    outcome = r.outcome;
    exit_code = r.exit_code;
    reason = std::move(r.reason);
    data.result = std::move(r.result);
  } else {
    TaskContext ctx = Access::make_context(&data);
    const double timeout = timeout_of(a.id);
    if (watchdog_ && timeout > 0) {
      watchdog_->arm(fmt::format("{}[{}] attempt {}", spec.name, data.index, a.attempt), timeout,
                     spec.on_timeout);
    }
    try {
      runtimes_[task].function(ctx);
      outcome = Outcome::done;
    } catch (const std::exception& e) {
      reason = spec.is_python()
                   ? fmt::format("Python function '{}' raised {}", spec.python, e.what())
                   : fmt::format("function '{}' threw: {}", spec.function, e.what());
    } catch (...) {
      reason = fmt::format("function '{}' threw an exception that is not a std::exception",
                           spec.function);
    }
    if (outcome != Outcome::done) exit_code = data.exit_code;
    if (watchdog_) watchdog_->disarm();
  }
  rank_record::free_slot(0);
  const std::int64_t t_end = now_us();
  if (sub != MPI_COMM_NULL) MPI_Comm_free(&sub);
  finished_attempt(t_start, t_end);
  // A multi-rank task's value is its rank 0's.
  if (outcome != Outcome::done || data.rank != 0) data.result.clear();
  add_result(a.id, a.attempt, outcome, exit_code, t_start, t_end, reason, data.result);
}

void Worker::start_command(const Assignment& a) {
  const int task = task_of(a.id);
  const TaskSpec& spec = wf_.tasks[task];
  const TaskRuntime& rt = runtimes_[task];
  const int index = index_of(a.id);
  const std::string idx = std::to_string(index);
  const nlohmann::json& args = args_of(a.id);
  CommandLaunch launch;
  for (const std::string& arg : spec.command) {
    std::string s = arg;
    auto replace = [&s](const std::string& key, const std::string& value) {
      for (std::size_t p = s.find(key); p != std::string::npos; p = s.find(key, p + value.size())) {
        s.replace(p, key.size(), value);
      }
    };
    if (s.find('{') != std::string::npos) {
      replace("{index}", idx);
      replace("{count}", std::to_string(spec.count));
      replace("{attempt}", std::to_string(a.attempt));
      replace("{name}", spec.name);
      replace("{run_dir}", job_.run_dir);
      replace("{output_dir}", rt.output_dir.string());
      // A sweep's values by key: strings as they are, numbers and booleans
      // as JSON writes them.
      for (const std::string& key : spec.sweep_keys) {
        const nlohmann::json& v = args[key];
        replace("{" + key + "}", v.is_string() ? v.get<std::string>() : v.dump());
      }
    }
    launch.argv.push_back(std::move(s));
  }
  launch.env = rt.base_env;
  launch.env.push_back("TANDEM_TASK_INDEX=" + idx);
  launch.env.push_back("TANDEM_ARGS=" + args.dump());
  launch.env.push_back(fmt::format("TANDEM_ATTEMPT={}", a.attempt));
  launch.cwd = spec.cwd;
  const std::string stem = attempt_stem(rt, index, a.attempt);
  launch.stdout_path = stem + ".out";
  launch.stderr_path = stem + ".err";
  launch.timeout_s = timeout_of(a.id);
  launch.kill_grace_s = wf_.job.kill_grace_s;
  ActiveCommand active;
  active.assignment = a;
  active.mpi = spec.is_mpi_command();
  // A command on its own worker's cores, without GPUs to hand out, runs as
  // the worker does: nothing to work out.
  const bool as_worker =
      !job_.plan.gpus_managed && spec.workers_needed() == 1 && spec.bind == Bind::cores;
  const std::vector<RankResources> given =
      as_worker ? std::vector<RankResources>{}
                : task_resources(job_, spec, a.members, index_, a.gpus, worker_world_);
  if (active.mpi) {
    add_mpi_launch(spec, rt, a, stem, given, launch);
  } else if (!as_worker) {
    give_resources(given.front(), launch);
  }
  for (bool taken = true; taken; ++active.slot) {  // the lowest free slot
    taken = std::any_of(active_.begin(), active_.end(),
                        [&](const ActiveCommand& c) { return c.slot == active.slot; });
    if (!taken) break;
  }
  active.t_start = now_us();
  trace::record(trace::kTaskStart, a.id, a.attempt, active.slot);
  rank_record::take_slot(active.slot, rank_record::kCommand, spec.name, index, a.attempt,
                         active.t_start);
  active.command = std::make_unique<RunningCommand>(launch);
  rank_record::set_slot_pid(active.slot, static_cast<int>(active.command->pid()));
  active_.push_back(std::move(active));
}

// A one-process command's GPUs (CUDA_VISIBLE_DEVICES="" for none, once
// Tandem hands GPUs out) and CPUs, where they differ from the worker's own.
void Worker::give_resources(const RankResources& given, CommandLaunch& launch) const {
  if (job_.plan.gpus_managed) {
    launch.env.push_back("CUDA_VISIBLE_DEVICES=" + given.gpus);
    launch.env.push_back("TANDEM_TASK_GPUS=" + given.gpus);
  }
  if (!job_.rank_cpus.empty() &&
      given.cpus != job_.rank_cpus[static_cast<std::size_t>(job_.rank)]) {
    launch.cpus = given.cpus;
  }
}

// The launcher's command line around the task's own, and what its ranks
// need to find the services: the proxy of the first of the task's workers
// on each node, by host name (tandem_connect picks its own host's).
void Worker::add_mpi_launch(const TaskSpec& spec, const TaskRuntime& rt, const Assignment& a,
                            const std::string& stem, const std::vector<RankResources>& given,
                            CommandLaunch& launch) const {
  MpiLaunch mpi;
  mpi.launcher = rt.launcher;
  mpi.program_launcher = rt.launcher_path.empty()
                             ? std::string(rt.launcher == Launcher::srun ? "srun" : "mpirun")
                             : rt.launcher_path;
  mpi.cores_per_rank = spec.cores_per_rank;
  mpi.extra_args = wf_.job.launcher_args;
  std::string sockets;
  const std::string socket_dir = proxy_ ? proxy_socket_dir(wf_, job_.run_dir) : std::string();
  // The coordinator reserves a rank's workers together on one node, and a
  // node's ranks one after another.
  for (int r = 0; r < spec.ranks; ++r) {
    const int w =
        a.members[static_cast<std::size_t>(r) * static_cast<std::size_t>(spec.cores_per_rank)];
    const std::string& host = job_.hosts[static_cast<std::size_t>(worker_node_[w])];
    if (mpi.hosts.empty() || mpi.hosts.back().name != host) {
      mpi.hosts.push_back({host, 0});
      if (proxy_) {
        sockets +=
            fmt::format("{}{}={}", sockets.empty() ? "" : ";", host, socket_path(socket_dir, w));
      }
    }
    ++mpi.hosts.back().ranks;
  }
  if (!sockets.empty()) launch.env.push_back("TANDEM_NODE_SOCKETS=" + sockets);
  // Each rank's GPUs and CPUs, picked by the rank wrapper; the wrapper
  // only where a rank has GPUs to be given or fewer CPUs than its node
  // (ranks that are not bound run as the launcher starts them).
  std::string gpus;
  std::string cpus;
  bool narrower = false;
  for (std::size_t r = 0; r < given.size(); ++r) {
    if (r > 0) {
      gpus += ';';
      cpus += ';';
    }
    gpus += given[r].gpus;
    cpus += cpu_list_text(given[r].cpus);
    narrower = narrower || given[r].cpus != given[r].node_cpus;
  }
  if (job_.plan.gpus_managed) launch.env.push_back("TANDEM_RANK_GPUS=" + gpus);
  if (narrower) launch.env.push_back("TANDEM_RANK_CPUS=" + cpus);
  mpi.per_rank_resources = job_.plan.gpus_managed || narrower;
  // The launcher itself (and a nested mpirun's ranks, which inherit its
  // CPUs) may use all of the node's, not only the lead worker's.
  if (!given.empty() && !job_.rank_cpus.empty() &&
      given.front().node_cpus != job_.rank_cpus[static_cast<std::size_t>(job_.rank)]) {
    launch.cpus = given.front().node_cpus;
  }
  if (mpi.launcher == Launcher::srun) {
    // Read once by the srun about to start, on this node: written without
    // fsync (which cost 6% of the srun tasks per second here).
    const std::string hostfile = stem + ".hosts";
    const std::string text = slurm_hostfile_text(mpi.hosts);
    const int fd = ::open(hostfile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const bool written = fd >= 0 && write_all(fd, text.data(), text.size());
    if (fd >= 0) ::close(fd);
    if (written) {
      launch.env.push_back("SLURM_HOSTFILE=" + hostfile);
    } else {
      // srun then places the ranks itself, which is still correct on one
      // node; the attempt goes on.
      spdlog::warn("task '{}': cannot write {}: {}; srun places its ranks itself", spec.name,
                   hostfile, std::strerror(errno));
    }
  }
  // mpirun gives its own environment to the ranks on this host only.
  for (const std::string& e : launch.env) {
    const std::string name = e.substr(0, e.find('='));
    if (name.rfind("TANDEM_", 0) == 0 || name == "PATH" || name == "LD_LIBRARY_PATH" ||
        name == "PYTHONPATH" || name == "OMP_NUM_THREADS" || spec.env.contains(name)) {
      mpi.forward_env.push_back(name);
    }
  }
  mpi.parent_death_guard = rt.guard_path;
  launch.argv = launch_argv(mpi, launch.argv);
  spdlog::debug("task '{}' attempt {}: {}", spec.name, a.attempt, fmt::join(launch.argv, " "));
  launch.own_session = true;
}

// Tells the other workers of an MPI command task how it ended; they report
// the same, and are free again.
void Worker::release_members(const Assignment& a, const CommandResult& r) {
  const std::string reason = r.reason.substr(0, 4000);
  std::vector<char> bytes(sizeof(ReleaseHeader) + reason.size());
  const ReleaseHeader h{a.id, a.attempt, static_cast<std::int32_t>(r.outcome), r.exit_code};
  std::memcpy(bytes.data(), &h, sizeof h);
  std::memcpy(bytes.data() + sizeof h, reason.data(), reason.size());
  for (std::size_t m = 1; m < a.members.size(); ++m) {
    // Small and sent once per task: the eager protocol returns at once.
    TANDEM_MPI_CHECK(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, a.members[m],
                              tags::kMultiRelease, job_.workers));
  }
}

void Worker::poll_release() {
  const int lead = lent_->assignment.members[0];
  int flag = 0;
  MPI_Status status;
  TANDEM_MPI_CHECK(MPI_Iprobe(lead, tags::kMultiRelease, job_.workers, &flag, &status));
  if (!flag) return;
  int n = 0;
  MPI_Get_count(&status, MPI_BYTE, &n);
  std::vector<char> bytes(static_cast<std::size_t>(n));
  TANDEM_MPI_CHECK(MPI_Recv(bytes.data(), n, MPI_BYTE, lead, tags::kMultiRelease, job_.workers,
                            MPI_STATUS_IGNORE));
  ReleaseHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  const std::string reason(bytes.data() + sizeof h, bytes.size() - sizeof h);
  const std::int64_t t_end = now_us();
  finished_attempt(lent_->t_start, t_end);
  add_result(h.id, h.attempt, static_cast<Outcome>(h.outcome), h.exit_code, lent_->t_start, t_end,
             reason);
  lent_.reset();
}

void Worker::serve_elastic() {
  const RankPlacement& me = job_.me();
  const std::string& service = wf_.services[me.service].name;
  spdlog::info("worker {} becomes service '{}' replica {}", index_, service, me.replica);
  trace::record(trace::kRole, trace::kRoleLoading, me.replica, me.service);
  run_replica(job_);  // returns when the coordinator shrinks the service, or the load failed
  trace::record(trace::kRole, trace::kRoleWorker, me.replica, me.service);
  spdlog::info("worker {} is back from service '{}' replica {}", index_, service, me.replica);
  serve_slot_ = -1;
  awaiting_resume_ = true;
  // Idle, asking for work: the coordinator answers with kResume first.
  if (out_.size() == 0) out_.put(UpdateHeader{});
  out_.at<UpdateHeader>(0)->rejoined = 1;
  send_update(slots_, false);
}

bool Worker::routing_current() {
  if (awaiting_resume_) return false;
  if (resume_version_ == 0 || client_impl_->table_version() >= resume_version_) {
    resume_version_ = 0;
    return true;
  }
  client_impl_->progress();
  return client_impl_->table_version() >= resume_version_;
}

// Starts what the slots allow; true if anything started or ran.
bool Worker::start_next() {
  bool started = false;
  if (holds_all_slots() || !routing_current()) return false;
  while (!queue_.empty() && !cancelled_) {
    const Assignment& a = queue_.front();
    if (wf_.tasks[task_of(a.id)].kind == TaskKind::function) {
      // A function holds the worker's thread: run it when no command needs
      // relaying, then come back to the loop.
      if (!active_.empty()) break;
      const Assignment taken = std::move(queue_.front());
      queue_.pop_front();
      maybe_send_update();  // ask ahead, so the next batch travels meanwhile
      run_function(taken);
      return true;
    }
    if (static_cast<int>(active_.size()) >= slots_) break;
    start_command(a);
    queue_.pop_front();
    started = true;
  }
  return started;
}

// Relays output and reaps; sleeps in poll() up to @p wait_ms when nothing is
// ready. True when a command finished.
bool Worker::progress_commands(int wait_ms) {
  bool any = false;
  for (int pass = 0; pass < 2 && !any; ++pass) {
    for (auto it = active_.begin(); it != active_.end();) {
      it->command->progress();
      if (!it->command->finished()) {
        ++it;
        continue;
      }
      const CommandResult& r = it->command->result();
      // A task stopped because the job is going down stays in the black
      // box: if a replica crashed with its request, the next --resume
      // charges it (job/lost_attempts.hpp) rather than run it into the
      // same crash again. In a job that ends cleanly nothing is charged.
      if (!cancelled_) rank_record::free_slot(it->slot);
      const std::int64_t t_end = now_us();
      finished_attempt(it->t_start, t_end);
      add_result(it->assignment.id, it->assignment.attempt, r.outcome, r.exit_code, it->t_start,
                 t_end, r.reason);
      if (it->mpi) release_members(it->assignment, r);
      it = active_.erase(it);
      any = true;
    }
    if (any || active_.empty() || pass == 1) break;
    poll_fds_.clear();
    for (const auto& c : active_) c.command->add_poll_fds(poll_fds_);
    if (proxy_) proxy_->add_poll_fds(poll_fds_);  // a task's request wakes us too
    ::poll(poll_fds_.data(), poll_fds_.size(), wait_ms);
  }
  return any;
}

// Whether to look for messages now: between function tasks that are
// already queued only every kBusyPollIntervalUs, otherwise on every turn
// of the loop. By the clock (a vDSO read, not a system call), so that a
// queue whose front cannot start yet still hears from the coordinator.
bool Worker::poll_due() const {
  if (queue_.empty() || !active_.empty() || (request_outstanding_ && queue_.size() < 2))
    return true;
  return now_us() - last_poll_us_ >= kBusyPollIntervalUs;
}

void Worker::run() {
  send_update(slots_, false);  // the first request
  int wait_ms = 1;
  while (!stop_) {
    if (poll_due()) {
      poll_messages();
      client_impl_->progress();  // routing updates, even between tasks
      last_poll_us_ = now_us();
    }
    if (!cancelled_ && stop_signal()) cancelled_ = true;
    if (cancelled_) {
      if (!queue_.empty()) cancel_queue();
      for (auto& c : active_) c.command->cancel("stopped: the run was interrupted");
    }
    if (lent_) poll_release();
    if (serve_slot_ >= 0 && queue_.empty() && active_.empty() && !lent_) {
      serve_elastic();
      continue;
    }
    bool worked = start_next();
    maybe_send_update();
    if (proxy_ && proxy_->progress()) worked = true;
    if (proxy_ && relay_steering()) worked = true;
    if (!active_.empty()) {
      // Requests out at the services: come back soon for their replies.
      // A steering answer comes over MPI, which wakes no poll(): look
      // every millisecond.
      const bool hurry = worked || (proxy_ && proxy_->busy());
      if (progress_commands(hurry ? 0 : (steer_out_ ? 1 : wait_ms))) {
        worked = true;
        wait_ms = 1;
      } else {
        wait_ms = std::min(wait_ms * 2, 10);
      }
      maybe_send_update();
    }
    if (worked) {
      backoff_.reset();
    } else if (active_.empty()) {
      backoff_.pause();
    }
  }
  reap_isolated_children();
  // Whatever is left goes with the goodbye, which also carries our totals.
  send_update(0, true);
  wait_request(send_req_, wf_.job.backoff);
}

}  // namespace

void run_worker(const Job& job) {
  Worker w(job);
  w.run();
  finish_python_tasks();
}

}  // namespace tandem::detail
