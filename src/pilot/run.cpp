// tandem::run_workflow: reads the workflow on rank 0, shares it, splits the
// job into roles and runs each rank's part.

#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/string.hpp>

#include "client/client_impl.hpp"
#include "config/workflow.hpp"
#include "layout/plan.hpp"
#include "ml_ranks/replica.hpp"
#include "pilot/pilot.hpp"
#include "run/logging.hpp"
#include "run/run_dir.hpp"
#include "tandem/error.hpp"
#include "tandem/pilot.hpp"
#include "tasks/registry.hpp"
#include "util/backoff.hpp"
#include "util/mpi_check.hpp"
#include "util/signals.hpp"

namespace mpi = boost::mpi;
namespace fs = std::filesystem;

namespace tandem {

namespace detail {
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

// Waits for a non-blocking collective without spinning a core away.
void wait_backing_off(MPI_Request& req, const BackoffSpec& spec) {
  Backoff backoff(spec);
  for (;;) {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    backoff.pause();
  }
}

RunSetup prepare_on_root(const RunOptions& options, int world_size,
                         std::map<std::pair<std::string, int>, TaskState>& earlier) {
  RunSetup setup;
  try {
    Workflow wf = load_workflow(options.workflow);
    if (wf.tasks.empty()) {
      throw config_error(wf.path, 1, 1, "task",
                         "the workflow has no [[task]], so tandem run has nothing to do; a file "
                         "with services only is for SPMD mode (tandem::Session)");
    }
    check_fits(wf, world_size);
    load_task_functions(wf);
    setup.workflow_path = fs::absolute(options.workflow).lexically_normal().string();
    setup.workflow_text = wf.text;
    setup.run_dir = choose_run_dir(wf, options.run_dir, options.run_root, options.resume);
    setup.resume = options.resume;
    const std::string journal = setup.run_dir + "/journal.jsonl";
    if (options.resume) {
      if (!fs::exists(journal)) {
        throw error(fmt::format("--resume: {} has no journal.jsonl; nothing to resume from",
                                setup.run_dir));
      }
      earlier = read_journal(journal);
    } else if (fs::exists(journal)) {
      throw error(
          fmt::format("the run directory {} holds an earlier run; use --resume to "
                      "continue it or choose another directory",
                      setup.run_dir));
    }
    prepare_run_dir(setup.run_dir, wf);
  } catch (const std::exception& e) {
    setup.error = e.what();
  }
  return setup;
}

}  // namespace
}  // namespace detail

int run_workflow(MPI_Comm comm, const RunOptions& options) {
  using namespace detail;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw error("run_workflow: MPI is not initialised; call MPI_Init first");
  install_stop_handlers();
  clear_stop();

  MPI_Comm world;
  TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &world));
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  mpi::communicator bworld(world, mpi::comm_attach);
  setup_logging(rank, "starting", options.log_level);

  std::map<std::pair<std::string, int>, TaskState> earlier;
  RunSetup setup;
  if (rank == 0) setup = prepare_on_root(options, size, earlier);
  mpi::broadcast(bworld, setup, 0);
  if (!setup.error.empty()) {
    if (rank == 0) spdlog::error("{}", setup.error);
    MPI_Comm_free(&world);
    return 2;
  }

  // Every rank parses the same text, so every rank computes the same plan.
  Workflow wf;
  std::string local_error;
  try {
    wf = parse_workflow(setup.workflow_text, setup.workflow_path, /*check_files=*/false);
    load_task_functions(wf);
  } catch (const std::exception& e) {
    local_error = e.what();
  }
  const int ok = mpi::all_reduce(bworld, local_error.empty() ? 1 : 0, mpi::minimum<int>());
  if (!ok) {
    if (!local_error.empty()) spdlog::error("{}", local_error);
    MPI_Comm_free(&world);
    return 2;
  }
  const Plan plan = make_plan(wf, node_indices(world));
  const RankPlacement& me = plan.ranks[rank];
  setup_logging(rank, role_name(me.role), options.log_level);
  add_log_file(setup.run_dir + "/logs", rank);
  if (rank == 0) {
    for (const std::string& note : plan.notes) spdlog::warn("{}", note);
  }
  spdlog::info(
      "host {} pid {} node {}",
      [] {
        char h[256] = {0};
        gethostname(h, sizeof h - 1);
        return std::string(h);
      }(),
      getpid(), me.node);

  const bool in_pilot = me.role == Role::coordinator || me.role == Role::worker;
  PilotShared shared;
  shared.wf = &wf;
  shared.plan = &plan;
  shared.run_dir = setup.run_dir;
  shared.resume = setup.resume;
  shared.control = world;
  TANDEM_MPI_CHECK(MPI_Comm_split(world, in_pilot ? 0 : MPI_UNDEFINED, rank, &shared.pilot));
  TANDEM_MPI_CHECK(
      MPI_Comm_split(world, me.role == Role::worker ? 0 : MPI_UNDEFINED, rank, &shared.workers));
  // Requests and replies travel on a communicator of their own, so that
  // they never match a control message.
  MPI_Comm data;
  TANDEM_MPI_CHECK(MPI_Comm_dup(world, &data));
  int replica_color = MPI_UNDEFINED;
  if (me.role == Role::service) {
    for (std::size_t i = 0; i < plan.replicas.size(); ++i) {
      if (plan.replicas[i].service == me.service && plan.replicas[i].replica == me.replica) {
        replica_color = static_cast<int>(i);
      }
    }
  }
  MPI_Comm replica;
  TANDEM_MPI_CHECK(MPI_Comm_split(world, replica_color, me.replica_rank, &replica));

  int exit_code = 0;
  if (me.role == Role::coordinator) {
    exit_code = run_coordinator(shared, earlier);
  } else if (me.role == Role::worker) {
    shared.client = std::make_shared<ClientImpl>(wf, plan, data, world, 0);
    run_worker(shared);
    shared.client.reset();
  } else if (me.role == Role::service) {
    ServeShared serve;
    serve.wf = &wf;
    serve.plan = &plan;
    serve.data = data;
    serve.control = world;
    serve.replica = replica;
    serve.coordinator = 0;
    run_replica(serve, me);
  }

  // Everyone learns the outcome; idle ranks wait here, sleeping. A reduction
  // rather than a broadcast, so that it also tells rank 0 that every rank has
  // flushed its log.
  spdlog::default_logger()->flush();
  const int mine = exit_code;
  MPI_Request req;
  TANDEM_MPI_CHECK(MPI_Iallreduce(&mine, &exit_code, 1, MPI_INT, MPI_MAX, world, &req));
  wait_backing_off(req, wf.job.backoff);

  if (replica != MPI_COMM_NULL) MPI_Comm_free(&replica);
  MPI_Comm_free(&data);
  if (shared.workers != MPI_COMM_NULL) MPI_Comm_free(&shared.workers);
  if (shared.pilot != MPI_COMM_NULL) MPI_Comm_free(&shared.pilot);
  close_log_file();
  MPI_Comm_free(&world);
  return exit_code;
}

}  // namespace tandem
