// Setting up and ending a job, for both ways in (pilot and SPMD).

#include "job/job.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/string.hpp>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"
#include "base/mpi_wait.hpp"
#include "base/signals.hpp"
#include "job/logging.hpp"
#include "job/run_dir.hpp"
#include "job/sockets.hpp"
#include "tandem/error.hpp"
#include "tasks/registry.hpp"
#include "trace/trace.hpp"
#include "transport/shm.hpp"

namespace mpi = boost::mpi;
namespace fs = std::filesystem;

namespace tandem::detail {

namespace {

// What rank 0 tells every rank before the roles start.
struct RunSetup {
  std::string error;  // non-empty: the run cannot start
  std::string workflow_path;
  std::string workflow_text;
  std::string run_dir;
  bool resume = false;

  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    ar& error& workflow_path& workflow_text& run_dir& resume;
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

RunSetup prepare_on_root(const RunOptions& options, int world_size, Mode mode) {
  RunSetup setup;
  try {
    Workflow wf = load_workflow(options.workflow);
    if (mode == Mode::pilot && wf.tasks.empty()) {
      throw config_error(wf.path, 1, 1, "task",
                         "the workflow has no [[task]], so tandem run has nothing to do; a file "
                         "with services only is for SPMD mode (tandem::Session)");
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
        throw error(fmt::format("--resume: {} has no journal.jsonl; nothing to resume from",
                                setup.run_dir));
      }
    } else if (fs::exists(journal)) {
      throw error(
          fmt::format("the run directory {} holds an earlier run; use --resume to "
                      "continue it or choose another directory",
                      setup.run_dir));
    }
    prepare_run_dir(setup.run_dir, wf);
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
    setup.error = e.what();
  }
  return setup;
}

}  // namespace

std::string Job::role_of(int r) const {
  const RankPlacement& p = plan.ranks[r];
  if (p.role == Role::service && !wf.services[p.service].is_bridge())
    return fmt::format("service {} replica {}", wf.services[p.service].name, p.replica);
  return role_label(wf, p, mode == Mode::spmd);
}

Job::~Job() {
  for (MPI_Comm* c : {&replica, &workers, &pilot, &data, &control}) {
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
}

std::unique_ptr<Job> start_job(MPI_Comm comm, Mode mode, const RunOptions& options,
                               std::string* why) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw error("Tandem: MPI is not initialised; call MPI_Init first");
  install_stop_handlers();
  clear_stop();
  const std::int64_t entered_ns = trace::clock_ns();

  auto job = std::make_unique<Job>();
  job->mode = mode;
  TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &job->control));
  MPI_Comm_rank(job->control, &job->rank);
  MPI_Comm_size(job->control, &job->size);
  mpi::communicator bworld(job->control, mpi::comm_attach);
  setup_logging(job->rank, "starting", options.log_level);

  RunSetup setup;
  if (job->rank == 0) setup = prepare_on_root(options, job->size, mode);
  mpi::broadcast(bworld, setup, 0);
  if (!setup.error.empty()) {
    if (job->rank == 0) spdlog::error("{}", setup.error);
    if (why) *why = setup.error;
    return nullptr;
  }

  // Every rank parses the same text, so every rank computes the same plan.
  std::string local_error;
  try {
    job->wf = parse_workflow(setup.workflow_text, setup.workflow_path, /*check_files=*/false);
    if (mode == Mode::pilot) load_task_functions(job->wf);
  } catch (const std::exception& e) {
    local_error = e.what();
  }
  const int ok = mpi::all_reduce(bworld, local_error.empty() ? 1 : 0, mpi::minimum<int>());
  if (!ok) {
    if (!local_error.empty()) spdlog::error("{}", local_error);
    if (why) *why = local_error.empty() ? "another rank could not read the workflow" : local_error;
    return nullptr;
  }
  job->run_dir = setup.run_dir;
  job->resume = setup.resume;
  job->progress_interval_s = options.progress_interval_s >= 0
                                 ? options.progress_interval_s
                                 : job->wf.job.monitor.progress_interval_s;
  job->plan = make_plan(job->wf, node_indices(job->control));
  const RankPlacement& me = job->me();
  setup_logging(job->rank, role_label(job->wf, me, mode == Mode::spmd), options.log_level);
  {
    std::vector<int> node_of_rank;
    for (const RankPlacement& p : job->plan.ranks) node_of_rank.push_back(p.node);
    job->timeline =
        trace::align_clocks(job->control, node_of_rank, entered_ns, job->wf.job.backoff);
  }
  const MonitorSpec& monitor = job->wf.job.monitor;
  if (monitor.trace && options.trace) {
    trace::start(static_cast<std::size_t>(monitor.trace_max_events));
    trace::record_at(entered_ns, trace::kPhase, trace::kPhaseJobStart,
                     trace::process_age_us() - (trace::clock_ns() - entered_ns) / 1000);
  }
  add_log_file(setup.run_dir + "/logs", job->rank);
  if (job->rank == 0) {
    for (const std::string& note : job->plan.notes) spdlog::warn("{}", note);
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  spdlog::info("host {} pid {} node {}", host, getpid(), me.node);

  // Shared memory: what each process may create, and what crashed runs left
  // on this node (one rank per node looks).
  shm::OwnPool::instance().set_budget(static_cast<std::size_t>(job->wf.job.staging.shm_budget_mb)
                                      << 20);
  {
    MPI_Comm node;
    TANDEM_MPI_CHECK(
        MPI_Comm_split_type(job->control, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int node_rank = 0;
    MPI_Comm_rank(node, &node_rank);
    if (node_rank == 0) {
      if (const int n = shm::remove_stale(); n > 0) {
        spdlog::warn(
            "removed {} shared-memory segment(s) left by an earlier run that ended "
            "without cleaning up",
            n);
      }
    }
    MPI_Barrier(node);
    MPI_Comm_free(&node);
  }
  // Requests and replies travel on a communicator of their own, so that
  // they never match a control message.
  TANDEM_MPI_CHECK(MPI_Comm_dup(job->control, &job->data));
  int replica_color = MPI_UNDEFINED;
  if (me.role == Role::service) {
    for (std::size_t i = 0; i < job->plan.replicas.size(); ++i) {
      const ReplicaPlacement& r = job->plan.replicas[i];
      if (r.service == me.service && r.replica == me.replica) replica_color = static_cast<int>(i);
    }
  }
  TANDEM_MPI_CHECK(MPI_Comm_split(job->control, replica_color, me.replica_rank, &job->replica));
  const bool worker = me.role == Role::worker;
  TANDEM_MPI_CHECK(
      MPI_Comm_split(job->control, worker ? 0 : MPI_UNDEFINED, job->rank, &job->workers));
  const bool in_pilot = mode == Mode::pilot && (me.role == Role::coordinator || worker);
  TANDEM_MPI_CHECK(
      MPI_Comm_split(job->control, in_pilot ? 0 : MPI_UNDEFINED, job->rank, &job->pilot));
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
  trace::write(job.control, job.run_dir, job.timeline, names, job.wf.job.monitor.chrome_trace,
               job.wf.job.backoff);
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
  close_log_file();
  return result;
}

}  // namespace tandem::detail
