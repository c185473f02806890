// Setting up and ending a job, for both ways in (pilot and SPMD).

#include "job/job.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/string.hpp>
#include <nlohmann/json.hpp>

#include "base/backoff.hpp"
#include "base/files.hpp"
#include "base/host.hpp"
#include "base/mpi_check.hpp"
#include "base/mpi_wait.hpp"
#include "base/rank_record.hpp"
#include "base/signals.hpp"
#include "hdf5/library.hpp"
#include "job/idle_mode.hpp"
#include "job/logging.hpp"
#include "job/lost_attempts.hpp"
#include "job/resources.hpp"
#include "job/run_dir.hpp"
#include "job/sockets.hpp"
#include "tandem/error.hpp"
#include "tasks/python_tasks.hpp"
#include "tasks/registry.hpp"
#include "trace/trace.hpp"
#include "transport/shm.hpp"

namespace mpi = boost::mpi;
namespace fs = std::filesystem;

namespace tandem::detail {

namespace {

// Why a job cannot start, as rank 0 found it: carried to every rank with
// its class, so that a Session user, the C API and the CLI all see the
// error it was (a config_error with its file, line, column and key, an
// io_error with its path), with its status and exit code.
struct SetupError {
  enum Kind : int { none, plain, config, io, argument, environment, model, mpi };
  int kind = none;
  std::string what;
  std::string file;  // config: the workflow file; io: the path at fault
  int line = 0;
  int column = 0;
  std::string key;
  std::string reason;

  void set(const std::exception& e) {
    what = e.what();
    if (const auto* c = dynamic_cast<const config_error*>(&e)) {
      kind = config;
      file = c->file();
      line = c->line();
      column = c->column();
      key = c->key();
      reason = c->reason();
    } else if (const auto* f = dynamic_cast<const io_error*>(&e)) {
      kind = io;
      file = f->path();
    } else if (dynamic_cast<const argument_error*>(&e)) {
      kind = argument;
    } else if (dynamic_cast<const environment_error*>(&e)) {
      kind = environment;
    } else if (dynamic_cast<const model_error*>(&e)) {
      kind = model;
    } else if (dynamic_cast<const mpi_error*>(&e)) {
      kind = mpi;
    } else {
      kind = plain;
    }
  }
  [[noreturn]] void raise() const {
    switch (kind) {
      case config:
        throw config_error(file, line, column, key, reason);
      case io:
        throw io_error(file, what);
      case argument:
        throw argument_error(what);
      case environment:
        throw environment_error(what);
      case model:
        throw model_error(what);
      case mpi:
        throw mpi_error(MPI_ERR_OTHER, what);
      default:
        throw error(what);
    }
  }
  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& kind& what& file& line& column& key& reason;
  }
};

// What rank 0 tells every rank before the roles start.
struct RunSetup {
  SetupError error;  // kind != none: the run cannot start
  std::string workflow_path;
  std::string workflow_text;
  std::string replay;  // RunOptions::replay
  std::string run_dir;
  bool resume = false;

  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& error& workflow_path& workflow_text& replay& run_dir& resume;
  }
};

// Node index of every rank, from the ranks that share memory.
std::vector<int> node_indices(MPI_Comm world) {
  MPI_Comm node;
  TANDEM_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int world_rank = 0;
  int node_rank = 0;
  MPI_Comm_rank(world, &world_rank);
  MPI_Comm_rank(node, &node_rank);
  // The lowest world rank on each node names the node.
  int leader = world_rank;
  TANDEM_MPI_CHECK(MPI_Bcast(&leader, 1, MPI_INT, 0, node));
  MPI_Comm_free(&node);
  mpi::communicator comm(world, mpi::comm_attach);
  std::vector<int> leaders;
  mpi::all_gather(comm, leader, leaders);
  std::vector<int> distinct = leaders;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<int> nodes(leaders.size());
  for (std::size_t r = 0; r < leaders.size(); ++r) {
    nodes[r] = static_cast<int>(std::lower_bound(distinct.begin(), distinct.end(), leaders[r]) -
                                distinct.begin());
  }
  return nodes;
}

// The name of every node, by node index, as its ranks see it (node_name):
// what a launcher is told to start an MPI command task's ranks on.
std::vector<std::string> node_hosts(MPI_Comm world, const Plan& plan) {
  constexpr int kHostMax = 256;
  char mine[kHostMax] = {};
  const std::string name = node_name();
  name.copy(mine, kHostMax - 1);
  const int size = static_cast<int>(plan.ranks.size());
  std::vector<char> all(static_cast<std::size_t>(size) * kHostMax);
  TANDEM_MPI_CHECK(MPI_Allgather(mine, kHostMax, MPI_CHAR, all.data(), kHostMax, MPI_CHAR, world));
  std::vector<std::string> hosts(static_cast<std::size_t>(plan.node_count));
  for (int r = size - 1; r >= 0; --r) {  // the lowest rank of a node names it
    hosts[static_cast<std::size_t>(plan.ranks[r].node)] = all.data() + std::size_t(r) * kHostMax;
  }
  return hosts;
}

void check_changes(const std::string& run_dir, const Workflow& now, bool allowed);

RunSetup prepare_on_root(const RunOptions& options, int world_size, Mode mode) {
  RunSetup setup;
  try {
    Workflow wf = load_workflow(options.workflow);
    if (!options.replay.empty()) {
      if (mode != Mode::pilot) {
        throw argument_error(
            "--replay is for tandem run; a session replays with backend = "
            "\"replay\" in its workflow file");
      }
      apply_replay(wf, options.replay);
      setup.replay = wf.replay_of;
    }
    if (mode == Mode::pilot && wf.tasks.empty()) {
      throw config_error(wf.path, 1, 1, "task",
                         "the workflow has no [[task]], so tandem run has nothing to do; a file "
                         "with services only is for SPMD mode (tandem::Session)");
    }
    if (mode == Mode::spmd && !wf.tasks.empty()) {
      throw config_error(wf.path, wf.tasks[0].pos.line, wf.tasks[0].pos.column, "task",
                         "a session runs no tasks: the application's ranks are its work. Remove "
                         "the [[task]] tables, or run the file with tandem run");
    }
    for (std::size_t i = 0; mode == Mode::spmd && i < wf.services.size(); ++i) {
      const ServiceSpec& sv = wf.services[i];
      if (!sv.elastic()) continue;
      throw config_error(wf.path, sv.replicas_pos.line, sv.replicas_pos.column,
                         fmt::format("service[{}].replicas", i),
                         fmt::format("service '{}' is elastic, but a session's ranks are the "
                                     "application's and cannot serve: give it a fixed count",
                                     sv.name));
    }
    check_fits(wf, world_size);
    if (mode == Mode::pilot) load_task_functions(wf);
    setup.workflow_path = fs::absolute(options.workflow).lexically_normal().string();
    setup.workflow_text = wf.text;
    setup.run_dir = choose_run_dir(wf, options.run_dir, options.run_root, options.resume);
    setup.resume = options.resume;
    const std::string journal = setup.run_dir + "/journal.jsonl";
    // The coordinator reads the journal when it starts (coordinator/journal.hpp).
    if (options.resume) {
      if (!fs::exists(journal)) {
        throw io_error(journal,
                       fmt::format("--resume: {} has no journal.jsonl; nothing to resume from",
                                   setup.run_dir));
      }
      check_changes(setup.run_dir, wf, options.allow_changes);
      // What the ranks of the job before had in hand when it died.
      charge_lost_attempts(setup.run_dir + "/ranks", journal);
    } else if (fs::exists(journal)) {
      throw io_error(setup.run_dir,
                     fmt::format("the run directory {} holds an earlier run; use --resume to "
                                 "continue it or choose another directory",
                                 setup.run_dir));
    }
    prepare_run_dir(setup.run_dir, wf);
    if (mode == Mode::pilot) job_started(setup.run_dir, wf, options.resume);
    if (mode == Mode::pilot && needs_proxy(wf)) {
      // The workers' sockets: a private directory and paths that fit, or
      // a clear error now rather than tasks failing later.
      const std::string dir = proxy_socket_dir(wf, setup.run_dir);
      ensure_private_dir(dir);
      check_socket_path(socket_path(dir, world_size));
    }
    // HDF5 staging files go here; it exists before any rank can send one.
    std::error_code ec;
    fs::create_directories(
        wf.job.staging.dir.empty() ? setup.run_dir + "/staging" : wf.job.staging.dir, ec);
  } catch (const std::exception& e) {
    setup.error.set(e);
  }
  return setup;
}

// A resume with an edited workflow: the finished results must still mean
// what they meant. More instances, higher retries and longer timeouts are
// safe; anything else is refused unless the user says --allow-changes.
void check_changes(const std::string& run_dir, const Workflow& now, bool allowed) {
  const std::string path = run_dir + "/workflow.toml";
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text == now.text) return;
  std::vector<std::string> changes;
  try {
    // Read as if it were where the current file is, so that relative paths
    // (cwd, libraries) compare as what they were meant to be.
    changes = unsafe_changes(parse_workflow(text, now.path, /*check_files=*/false), now);
  } catch (const std::exception& e) {
    changes.push_back(
        fmt::format("the run's first workflow cannot be read any more ({})", e.what()));
  }
  if (changes.empty()) {
    spdlog::info("the workflow changed since the run began, in safe ways only");
    return;
  }
  const std::string list = fmt::format("{}", fmt::join(changes, "; "));
  if (allowed) {
    spdlog::warn("--allow-changes: resuming with a workflow that changed: {}", list);
    return;
  }
  throw config_error(now.path, 0, 0, "",
                     fmt::format("--resume: the workflow changed since the run began ({}): {}. "
                                 "Safe changes are more instances, higher retries and longer "
                                 "timeouts; to resume anyway, add --allow-changes",
                                 path, list));
}

// RUN_DIR/placement.json: where every rank ran (host, node index) and what
// it did, next to what `tandem plan` predicted. Collective; rank 0 writes.
void write_placement(const Job& job, const char* host) {
  constexpr int kHost = 64;
  char mine[kHost] = {0};
  std::snprintf(mine, sizeof mine, "%s", host);
  std::vector<char> all(job.rank == 0 ? static_cast<std::size_t>(job.size) * kHost : 0);
  TANDEM_MPI_CHECK(MPI_Gather(mine, kHost, MPI_CHAR, all.data(), kHost, MPI_CHAR, 0, job.control));
  if (job.rank != 0) return;
  nlohmann::json ranks = nlohmann::json::array();
  nlohmann::json nodes = nlohmann::json::array();
  for (int r = 0; r < job.size; ++r) {
    const RankPlacement& p = job.plan.ranks[r];
    const std::string h(&all[static_cast<std::size_t>(r) * kHost]);
    ranks.push_back({{"rank", r}, {"node", p.node}, {"host", h}, {"role", job.role_of(r)}});
    if (p.node >= static_cast<int>(nodes.size())) {
      nodes.push_back({{"node", p.node}, {"host", h}, {"ranks", nlohmann::json::array()}});
    }
    nodes[p.node]["ranks"].push_back(r);
  }
  try {
    write_file_atomically(job.run_dir + "/placement.json",
                          nlohmann::json{{"nodes", nodes}, {"ranks", ranks}}.dump(1) + "\n");
  } catch (const std::exception& e) {
    spdlog::warn("{}", e.what());  // the run goes on; only this record is missing
  }
}

// The one "agree or raise" of set-up: every rank does its @p local part;
// if any failed, every rank throws the error of the lowest rank that
// failed, of its kind (config_error with its line, io_error with its path),
// so that the command and a Session user see what it was. Rank 0 logs it.
// Collective over job.control.
void agree_or_raise(const Job& job, const std::function<void()>& local) {
  SetupError mine;
  try {
    local();
  } catch (const std::exception& e) {
    mine.set(e);
  }
  const int me = mine.kind == SetupError::none ? job.size : job.rank;
  int first = job.size;
  TANDEM_MPI_CHECK(MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, job.control));
  if (first == job.size) return;
  mpi::communicator comm(job.control, mpi::comm_attach);
  mpi::broadcast(comm, mine, first);
  if (job.rank == 0) spdlog::error("{}", mine.what);
  mine.raise();
}

// --- the set-up steps, in the order start_job takes them ----------------------

// The job's own communicator (a duplicate: never the caller's), this rank's
// place in it, and a log that says the rank is starting.
std::unique_ptr<Job> open_job(MPI_Comm comm, Mode mode, const RunOptions& options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    throw mpi_error(MPI_ERR_OTHER, "Tandem: MPI is not initialised; call MPI_Init first");
  }
  install_stop_handlers();
  clear_stop();
  h5::quiet_errors();
  auto job = std::make_unique<Job>();
  job->mode = mode;
  TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &job->control));
  return_errors(job->control);
  MPI_Comm_rank(job->control, &job->rank);
  MPI_Comm_size(job->control, &job->size);
  setup_logging(job->rank, Role::idle, "starting", options.log_level);
  return job;
}

// Rank 0 reads and checks the workflow and prepares the run directory;
// every rank gets its text, or the reason the job cannot start.
RunSetup agree_on_run(const Job& job, const RunOptions& options) {
  RunSetup setup;
  if (job.rank == 0) setup = prepare_on_root(options, job.size, job.mode);
  mpi::communicator comm(job.control, mpi::comm_attach);
  mpi::broadcast(comm, setup, 0);
  if (setup.error.kind != SetupError::none) {
    if (job.rank == 0) spdlog::error("{}", setup.error.what);
    setup.error.raise();
  }
  return setup;
}

// Every rank parses the same text (so every rank computes the same plan)
// and loads the task libraries it names.
void read_workflow(Job& job, const RunSetup& setup, const RunOptions& options) {
  agree_or_raise(job, [&] {
    job.wf = parse_workflow(setup.workflow_text, setup.workflow_path, /*check_files=*/false);
    if (!setup.replay.empty()) apply_replay(job.wf, setup.replay);
    if (job.mode == Mode::pilot) load_task_functions(job.wf);
  });
  job.run_dir = setup.run_dir;
  job.resume = setup.resume;
  job.progress_interval_s = options.progress_interval_s >= 0
                                ? options.progress_interval_s
                                : job.wf.job.monitor.progress_interval_s;
}

// Which rank does what, by node; every rank's pid (direct endpoints' names).
void place_ranks(Job& job, const RunOptions& options) {
  const std::vector<int> node_of_rank = node_indices(job.control);
  // Only a workflow that asks for GPUs looks for them (nvidia-smi takes a
  // while).
  const std::vector<NodeGpus> gpus =
      manages_gpus(job.wf) ? gather_node_gpus(job.control, node_of_rank, job.wf.job.gpus_per_node)
                           : std::vector<NodeGpus>{};
  job.plan = make_plan(job.wf, node_of_rank, gpus);
  job.pids.resize(static_cast<std::size_t>(job.size));
  const int pid = static_cast<int>(::getpid());
  TANDEM_MPI_CHECK(MPI_Allgather(&pid, 1, MPI_INT, job.pids.data(), 1, MPI_INT, job.control));
  setup_logging(job.rank, job.me().role, role_label(job.wf, job.me(), job.mode == Mode::spmd),
                options.log_level);
}

// How this node's ranks wait, before the first wait: every loop from here
// on waits this way.
void choose_idle_mode(Job& job) {
  int on_node = 0;
  int cpus = 0;
  job.idle = idle_mode_of_node(job.control, job.wf.job.idle, &on_node, &cpus);
  job.wf.job.backoff = backoff_for(job.idle, job.wf.job);
  spdlog::info("idle mode {}: {} rank(s) on this node, {} CPU(s) they may run on{}",
               name_of(job.idle), on_node, cpus,
               job.wf.job.backoff_given ? " ([job.backoff] as given)" : "");
  // Tandem's waits spin in dedicated mode, but Open MPI's own poll then
  // still yields the core on every empty look (about 1 µs a time on a
  // virtual machine): say so once, where the user can act on it.
  const char* yield = std::getenv("OMPI_MCA_mpi_yield_when_idle");
  if (job.idle == IdleMode::dedicated && job.rank == 0 && yield &&
      (std::string(yield) == "1" || std::string(yield) == "true")) {
    spdlog::info(
        "idle mode dedicated with OMPI_MCA_mpi_yield_when_idle={}: Open MPI yields on every "
        "empty poll; unset it for the lowest request latency",
        yield);
  }
}

// One clock for the trace of all ranks, and this rank's trace buffer.
void start_tracing(Job& job, const RunOptions& options, std::int64_t entered_ns) {
  std::vector<int> node_of_rank;
  for (const RankPlacement& p : job.plan.ranks) node_of_rank.push_back(p.node);
  job.timeline = trace::align_clocks(job.control, node_of_rank, entered_ns, job.wf.job.backoff);
  const MonitorSpec& monitor = job.wf.job.monitor;
  if (!monitor.trace || !options.trace) return;
  const int on_node = job.plan.ranks_per_node()[job.me().node];
  trace::start(static_cast<std::size_t>(monitor.events_per_rank(on_node)));
  trace::record_at(entered_ns, trace::kPhase, trace::kPhaseJobStart,
                   trace::process_age_us() - (trace::clock_ns() - entered_ns) / 1000);
}

// The rank's records in the run directory: its log file, its black box
// (what it runs, for the next --resume if it dies) and placement.json.
void open_rank_records(const Job& job) {
  const RankPlacement& me = job.me();
  add_log_file(job.run_dir + "/logs", job.rank);
  std::string why_not;
  if (!rank_record::open(job.run_dir + "/ranks", job.rank, me.node, me.role, &why_not)) {
    spdlog::warn("{}: if this rank dies, the next --resume cannot tell what it ran", why_not);
  }
  if (job.rank == 0) {
    for (const std::string& note : job.plan.notes) spdlog::warn("{}", note);
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  spdlog::info("host {} pid {} node {}", host, getpid(), me.node);
  write_placement(job, host);
}

// Python function tasks: every worker starts its interpreter and imports
// the tasks' modules now (tasks/python_tasks.hpp), so that a module that
// does not import stops the job before any task runs.
void start_python(const Job& job) {
  if (job.mode != Mode::pilot || !has_python_tasks(job.wf)) return;
  agree_or_raise(job, [&] {
    if (job.me().role == Role::worker) start_python_tasks(job.wf);
  });
}

// Shared memory: what each process may create, and what crashed runs left
// on the nodes (transport/shm.hpp).
void prepare_shared_memory(const Job& job) {
  shm::OwnPool::instance().set_budget(static_cast<std::size_t>(job.wf.job.staging.shm_budget_mb)
                                      << 20);
  shm::sweep_nodes(job.control);
}

// The communicators of the roles (protocol/tags.hpp says what travels on
// which). Requests and replies have one of their own, so that they never
// match a control message.
void split_communicators(Job& job) {
  const RankPlacement& me = job.me();
  TANDEM_MPI_CHECK(MPI_Comm_dup(job.control, &job.data));
  return_errors(job.data);
  int replica_color = MPI_UNDEFINED;
  // A worker that may serve an elastic replica has its communicator from
  // the start: growing spawns nothing and makes no communicator.
  if (me.role == Role::service || me.elastic_slot >= 0) {
    for (std::size_t i = 0; i < job.plan.replicas.size(); ++i) {
      const ReplicaPlacement& r = job.plan.replicas[i];
      if (r.service == me.service && r.replica == me.replica) replica_color = static_cast<int>(i);
    }
  }
  TANDEM_MPI_CHECK(MPI_Comm_split(job.control, replica_color, me.replica_rank, &job.replica));
  const bool worker = me.role == Role::worker;
  TANDEM_MPI_CHECK(MPI_Comm_split(job.control, worker ? 0 : MPI_UNDEFINED, job.rank, &job.workers));
  const bool in_pilot = job.mode == Mode::pilot && (me.role == Role::coordinator || worker);
  TANDEM_MPI_CHECK(MPI_Comm_split(job.control, in_pilot ? 0 : MPI_UNDEFINED, job.rank, &job.pilot));
  for (MPI_Comm c : {job.replica, job.workers, job.pilot}) return_errors(c);
}

// The host name of every node, for the launcher of an MPI command task,
// and every rank's CPUs, for binding command tasks to the cores of the
// workers they hold (only a workflow with such tasks pays for the
// allgathers).
void learn_node_hosts(Job& job) {
  if (std::any_of(job.wf.tasks.begin(), job.wf.tasks.end(),
                  [](const TaskSpec& t) { return t.is_mpi_command(); })) {
    job.hosts = node_hosts(job.control, job.plan);
  }
  if (std::any_of(job.wf.tasks.begin(), job.wf.tasks.end(),
                  [](const TaskSpec& t) { return t.kind == TaskKind::command; })) {
    job.rank_cpus = gather_rank_cpus(job.control);
  }
}

}  // namespace

std::string Job::role_of(int r) const {
  const RankPlacement& p = plan.ranks[r];
  if (p.role == Role::service && !wf.services[p.service].is_bridge())
    return fmt::format("service {} replica {}", wf.services[p.service].name, p.replica);
  return role_label(wf, p, mode == Mode::spmd);
}

Job::~Job() {
  // A Session held past MPI_Finalize (in a std::optional or a unique_ptr
  // that main returns through): MPI has freed the communicators already.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (MPI_Comm* c : {&replica, &workers, &pilot, &data, &control}) {
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
}

// The start-up sequence of docs/architecture.md ("Starting a job"): each
// step a local action and, where ranks could disagree, one agree_or_raise.
std::unique_ptr<Job> start_job(MPI_Comm comm, Mode mode, const RunOptions& options) {
  const std::int64_t entered_ns = trace::clock_ns();
  std::unique_ptr<Job> job = open_job(comm, mode, options);
  const RunSetup setup = agree_on_run(*job, options);
  read_workflow(*job, setup, options);
  place_ranks(*job, options);
  learn_node_hosts(*job);
  choose_idle_mode(*job);
  start_tracing(*job, options, entered_ns);
  open_rank_records(*job);
  start_python(*job);
  prepare_shared_memory(*job);
  split_communicators(*job);
  trace::record(trace::kPhase, trace::kPhaseRolesReady);
  return job;
}

int end_job(Job& job, int exit_code) {
  trace::Names names;
  if (job.rank == 0) {
    for (int r = 0; r < job.size; ++r)
      names.tracks.push_back(fmt::format("rank {} {}", r, job.role_of(r)));
    int first = 0;
    for (const TaskSpec& t : job.wf.tasks) {
      names.tasks.push_back(t.name);
      names.first_instance.push_back(first);
      first += t.count;
    }
    for (const ServiceSpec& s : job.wf.services) names.services.push_back(s.name);
  }
  if (!trace::write(job.control, job.run_dir, job.timeline, names, job.wf.job.monitor.chrome_trace,
                    job.wf.job.backoff) &&
      exit_code < kExitRecordsLost) {
    exit_code = kExitRecordsLost;  // the results are safe, the record of the run is not whole
  }
  // A reduction rather than a broadcast, so that it also tells rank 0 that
  // every rank has flushed its log.
  spdlog::default_logger()->flush();
  const int mine = exit_code;
  int result = 0;
  MPI_Request req;
  TANDEM_MPI_CHECK(MPI_Iallreduce(&mine, &result, 1, MPI_INT, MPI_MAX, job.control, &req));
  wait_request(req, job.wf.job.backoff);
  // Everyone is done with everyone's shared memory.
  shm::OwnPool::instance().remove_all();
  rank_record::close_clean();
  close_log_file();
  return result;
}

}  // namespace tandem::detail
