#pragma once
// The workflow file as Tandem uses it: what parse_workflow() makes of the
// TOML text after checking every key. Private to the library.

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "base/backoff.hpp"
#include "base/enum_names.hpp"
#include "tandem/transport.hpp"

namespace tandem::detail {

/// Where a value came from in the workflow file (1-based; 0 when unknown).
struct SourcePos {
  int line = 0;
  int column = 0;
};

/// When tensors leave the MPI message: shared memory for a replica on the
/// same node, HDF5 files on a shared filesystem for one elsewhere.
struct StagingSpec {
  long long shm_threshold = 32 * 1024LL;  // bytes; requests at least this big use shm
  long long hdf5_threshold = 0;           // bytes; 0: never HDF5 unless asked
  std::string dir;                        // HDF5 staging files; "" = RUN_DIR/staging
  long long shm_budget_mb = 4096;         // shared memory one process may create
};

/// What a run records about itself while it runs (docs/observability.md).
struct MonitorSpec {
  bool trace = true;  // events into RUN_DIR/trace.h5
  // Events kept per rank (32 bytes each; more are counted, not kept). 0:
  // from trace_node_mb, shared by the ranks of a node, at most 1M each.
  long long trace_max_events = 0;
  int trace_node_mb = 1024;

  /// Events a rank keeps when @p ranks_on_node ranks share its node: the
  /// node's budget split among them (1 GiB: 1M events each up to 32 ranks,
  /// 262,144 on a 128-rank node), unless trace_max_events says otherwise.
  long long events_per_rank(int ranks_on_node) const {
    if (trace_max_events > 0) return trace_max_events;
    constexpr long long kEventBytes = 32;  // sizeof(trace::Event), asserted there
    const long long share =
        (static_cast<long long>(trace_node_mb) << 20) / kEventBytes / std::max(ranks_on_node, 1);
    return std::clamp(share, 1024LL, 1'000'000LL);
  }
  bool chrome_trace = true;         // also RUN_DIR/trace.json
  double metrics_interval_s = 5;    // RUN_DIR/metrics.prom; 0: never
  double progress_interval_s = 30;  // a progress line when stderr is no terminal; 0: never
};

/// The workers' local proxy, through which executable tasks reach the
/// services (docs/user-guide.md#executable-tasks-and-the-services).
struct ProxySpec {
  bool enabled = true;     // when the workflow has services and command tasks
  std::string socket_dir;  // empty: RUN_DIR/sockets; must be private (0700)
};

/// What happens when a function task runs past its `timeout`.
enum class OnTimeout { warn, abort };
template <>
struct EnumNames<OnTimeout> {
  static constexpr EnumName<OnTimeout> values[] = {{OnTimeout::warn, "warn"},
                                                   {OnTimeout::abort, "abort"}};
};

/// How a task's `sweep` makes its instances: every combination of the
/// values (`product`), or the i-th value of each key together (`zip`).
enum class SweepMode { product, zip };
template <>
struct EnumNames<SweepMode> {
  static constexpr EnumName<SweepMode> values[] = {{SweepMode::product, "product"},
                                                   {SweepMode::zip, "zip"}};
};

/// How a multi-rank command task's ranks are started (`[job] launcher`):
/// `auto` takes `srun` inside a Slurm allocation and `mpirun` otherwise
/// (src/exec/mpi_launch.hpp; docs/running-on-clusters.md).
enum class Launcher { automatic, mpirun, srun };
template <>
struct EnumNames<Launcher> {
  static constexpr EnumName<Launcher> values[] = {
      {Launcher::automatic, "auto"}, {Launcher::mpirun, "mpirun"}, {Launcher::srun, "srun"}};
};

/// How idle ranks wait (`[job] idle`): `shared` backs off to sleeps soon,
/// for cores that ranks share; `dedicated` spins long, for a core each;
/// `auto` chooses per node from the ranks' CPUs (job/idle_mode.hpp).
enum class IdleMode { automatic, shared, dedicated };
template <>
struct EnumNames<IdleMode> {
  static constexpr EnumName<IdleMode> values[] = {{IdleMode::automatic, "auto"},
                                                  {IdleMode::shared, "shared"},
                                                  {IdleMode::dedicated, "dedicated"}};
};

/// Which CPUs a command task's processes run on (`bind`): `cores`, the
/// CPUs of the workers it holds (the union of their affinity masks), so that
/// its threads keep off the cores where other ranks spin; `none`, every CPU
/// the job's ranks on the node may use.
enum class Bind { cores, none };
template <>
struct EnumNames<Bind> {
  static constexpr EnumName<Bind> values[] = {{Bind::cores, "cores"}, {Bind::none, "none"}};
};

struct JobSpec {
  std::string name;
  std::string run_root = "runs";        // absolute after parsing
  std::vector<std::string> libraries;   // absolute paths
  std::vector<std::string> pythonpath;  // absolute; on sys.path after the workflow's directory
  int max_chunk = 4096;                 // most tasks sent to a worker at once
  double kill_grace_s = 2.0;            // between SIGTERM and SIGKILL
  double journal_sync_s = 0.1;          // fdatasync of the journal at most this far apart; 0: off
  bool isolate = false;                 // default of [[task]] isolate
  OnTimeout on_timeout = OnTimeout::warn;  // default of [[task]] on_timeout
  IdleMode idle = IdleMode::automatic;
  BackoffSpec backoff;
  bool backoff_given = false;  // [job.backoff] in the file: used as it is, in any mode
  StagingSpec staging;
  MonitorSpec monitor;
  ProxySpec proxy;
  Launcher launcher = Launcher::automatic;
  std::vector<std::string> launcher_args;  // added after the launcher's own options
  Bind bind = Bind::cores;                 // default of [[task]] bind
  int outstanding_cap = 1'000'000;         // submitted instances not yet ended, in the whole job
  // GPUs on each node when the allocation does not say (-1: not given;
  // then `nvidia-smi -L`). Only used when something asks for GPUs.
  int gpus_per_node = -1;
  SourcePos gpus_per_node_pos;
};

struct LayoutSpec {
  int workers = -1;      // -1: every rank not given another role
  int worker_slots = 1;  // command tasks a worker runs at once
  SourcePos workers_pos;
};

enum class TaskKind { function, command };

struct TaskSpec {
  std::string name;
  TaskKind kind = TaskKind::function;
  std::string function;              // kind == function: the C++ name, or "module:function"
  std::string python;                // a Python function task: "module:function" (else "")
  std::vector<std::string> command;  // kind == command; [0] resolved
  std::map<std::string, std::string> env;
  std::string cwd;  // absolute
  bool clean_mpi_env = true;
  int count = 1;
  int ranks = 1;
  int cores_per_rank = 1;   // command tasks: workers reserved (and lent) per rank
  int gpus_per_rank = 0;    // `gpus_per_task` (one rank) or `gpus_per_rank`
  Bind bind = Bind::cores;  // command tasks
  std::vector<std::string> after;
  std::vector<int> after_index;  // indices into Workflow::tasks
  int retries = 0;
  int priority = 0;
  double timeout_s = 0;  // 0: none
  bool isolate = false;  // function tasks: run in a forked child of the worker
  // A task that submits tasks and waits for them (ctx.submit, ctx.wait):
  // it runs on a worker of its own, which takes no other work meanwhile.
  bool steering = false;
  // Steering tasks: submitted instances not yet ended at most (a submit
  // past it waits), and whether its children not yet started are canceled
  // when it fails or is canceled.
  int outstanding_cap = 1'000'000;
  bool cancel_children = false;
  OnTimeout on_timeout = OnTimeout::warn;  // function tasks that are not isolated
  std::string args_json = "{}";
  // `sweep`: per-instance values merged into args. Keys in TOML's order
  // (alphabetical); values as JSON text. instance_args holds each
  // instance's whole args as JSON text, empty without a sweep.
  std::vector<std::string> sweep_keys;
  std::vector<std::vector<std::string>> sweep_values;
  SweepMode sweep_mode = SweepMode::product;
  std::vector<std::string> instance_args;
  SourcePos sweep_pos;
  SourcePos pos;  // the [[task]] header
  SourcePos ranks_pos;
  SourcePos gpus_pos;
  SourcePos function_pos;  // of `function`, or of `python`

  /// Instance @p index's args as JSON text: the sweep's values merged in.
  const std::string& args_for(int index) const {
    return instance_args.empty() ? args_json : instance_args[static_cast<std::size_t>(index)];
  }
  bool has_sweep() const noexcept { return !sweep_keys.empty(); }
  /// Workers the task holds while it runs.
  int workers_needed() const noexcept { return ranks * cores_per_rank; }
  /// A command task that holds several workers: an MPI program started by
  /// a launcher (ranks > 1), or one process given several cores.
  bool is_mpi_command() const noexcept { return kind == TaskKind::command && workers_needed() > 1; }
  /// GPUs the whole task holds while it runs.
  int gpus_needed() const noexcept { return ranks * gpus_per_rank; }
  /// Handed out on its own rather than in a batch: it needs GPUs, or steers.
  bool goes_alone() const noexcept { return gpus_per_rank > 0 || steering; }
  /// A function task written in Python (run by the embedded interpreter).
  bool is_python() const noexcept { return !python.empty(); }
};

/// One named tensor of a service's signature; -1 in the shape is the batch
/// dimension (or any size).
struct TensorSpec {
  std::string name;
  int dtype = 0;  // tandem::DType
  std::vector<long long> shape;
};

/// What a service runs (docs/workflow-file.md#services).
enum class BackendKind { torchscript, process, remote, echo, scale, sleep, replay };
template <>
struct EnumNames<BackendKind> {
  static constexpr EnumName<BackendKind> values[] = {{BackendKind::torchscript, "torchscript"},
                                                     {BackendKind::process, "process"},
                                                     {BackendKind::remote, "remote"},
                                                     {BackendKind::echo, "echo"},
                                                     {BackendKind::scale, "scale"},
                                                     {BackendKind::sleep, "sleep"},
                                                     {BackendKind::replay, "replay"}};
};

/// How the process and remote backends speak to their HTTP endpoint.
enum class Protocol { kserve_v2, openai };
template <>
struct EnumNames<Protocol> {
  static constexpr EnumName<Protocol> values[] = {{Protocol::kserve_v2, "kserve-v2"},
                                                  {Protocol::openai, "openai"}};
};

/// Where a service's replicas go.
enum class Placement { spread, per_node };
template <>
struct EnumNames<Placement> {
  static constexpr EnumName<Placement> values[] = {{Placement::spread, "spread"},
                                                   {Placement::per_node, "per_node"}};
};

/// How a replica switches to a new model version: load it beside the one
/// it serves (memory for both), or unload first and hold requests while the
/// new one loads (a pause, for models of which two do not fit).
enum class SwapMode { beside, pause };
template <>
struct EnumNames<SwapMode> {
  static constexpr EnumName<SwapMode> values[] = {{SwapMode::beside, "beside"},
                                                  {SwapMode::pause, "pause"}};
};

}  // namespace tandem::detail

// A service's `transport` is the public tandem::Transport, by these names.
template <>
struct tandem::detail::EnumNames<tandem::Transport> {
  static constexpr EnumName<Transport> values[] = {{Transport::automatic, "auto"},
                                                   {Transport::inline_mpi, "inline"},
                                                   {Transport::shm, "shm"},
                                                   {Transport::hdf5, "hdf5"}};
};

namespace tandem::detail {

struct ServiceSpec {
  std::string name;
  BackendKind backend = BackendKind::echo;
  std::string model;  // absolute path; torchscript only
  // Model versions (docs/user-guide.md#model-versions-and-online-training).
  int model_version = 1;  // the version `model` is
  std::string model_dir;  // absolute; <dir>/<N>/model.pt, polled every poll_interval_s
  double poll_interval_s = 5;
  int pinned_version = 0;  // version_policy: 0 = "latest", else the version served
  int keep_versions = 1;   // versions a replica keeps loaded once a switch is done
  SwapMode swap = SwapMode::beside;
  int replicas = 1;  // 0: one per node (placement = "per_node" without `replicas`)
  // Elastic services (`replicas = { min, max }`): `replicas` is the min,
  // and up to replicas_max - replicas workers may serve as more replicas
  // while the run needs them (docs/user-guide.md, "Elastic services").
  int replicas_max = 0;         // 0: a fixed count
  double target_queue_ms = 20;  // grow when the p95 time at a replica passes it
  double scale_dwell_s = 1.0;   // the least time between two moves of the service
  SourcePos replicas_pos;
  int ranks_per_replica = 1;
  int gpus_per_replica = 0;  // the replica's ranks all see these GPUs
  SourcePos gpus_pos;
  Placement placement = Placement::spread;
  int max_batch = 64;          // rows per batch
  int max_delay_us = 0;        // how long the oldest request may wait for others
  std::string device = "cpu";  // "cuda:0" by default with gpus_per_replica
  bool device_given = false;
  Transport transport = Transport::automatic;
  bool record = false;  // append inputs and outputs to HDF5
  // Deadlines and fallbacks (docs/when-things-go-wrong.md, "Deadlines").
  double deadline_ms = 0;  // a request's default deadline; 0: none
  std::string fallback;    // the service that answers when this one cannot; empty: an error
  int fallback_service = -1;
  SourcePos fallback_pos;
  // backend = "replay": a recorded service's directory (RUN_DIR/services/NAME).
  std::string recording;
  // backend = "process": a model server started by the replica leader.
  std::vector<std::string> command;  // {host} and {port} are filled in
  std::map<std::string, std::string> env;
  Protocol protocol = Protocol::kserve_v2;
  std::string model_name;  // KServe: /v2/models/{model_name}; default: the service name
  std::string ready_path;  // default: /v2/health/ready
  double start_timeout_s = 600;
  double health_interval_s = 5;
  int max_restarts = 3;
  double request_timeout_s = 60;
  int retries = 2;
  // backend = "remote": an endpoint outside the job, reached by a bridge rank.
  std::string url;          // base URL, e.g. https://host/; ${VAR} allowed
  std::string api_key_env;  // the environment variable holding the API key
  int max_in_flight = 64;
  std::string ca_bundle;
  bool verify_tls = true;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  double factor = 2.0;          // scale
  long long crash_on_rows = 0;  // scale: segfault on a batch of exactly this many rows (tests)
  long long delay_us = 0;       // sleep: per batch
  long long delay_sd_us = 0;    // sleep: the per-batch delay's standard deviation (normal)
  long long per_row_us = 0;     // sleep: per row
  long long load_us = 0;        // sleep: how long "loading the model" takes
  int fail_load_from = 0;       // sleep: replicas from this index on fail to load (tests; 0: none)
  SourcePos pos;

  /// A remote service's replica is a bridge rank: it forwards requests to
  /// an endpoint outside the job instead of running a model.
  bool is_bridge() const { return backend == BackendKind::remote; }
  /// Whether workers may become replicas of it while the run goes on.
  bool elastic() const { return replicas_max > replicas; }
};

/// A split the workflow asks for when a task has ended (`[[scale]]`).
struct ScaleRule {
  std::string after;  // the task whose instances must all have ended
  int task = -1;      // its index
  int service = -1;
  int replicas = 0;
  SourcePos pos;
};

struct Workflow {
  std::string path;  // as given
  std::string dir;   // absolute directory of the file
  std::string text;  // the file as read
  JobSpec job;
  LayoutSpec layout;
  std::vector<TaskSpec> tasks;
  std::vector<ServiceSpec> services;
  std::vector<ScaleRule> scale_rules;
  std::string replay_of;  // `tandem run --replay DIR`: the run whose recordings answer

  /// Index of the service named @p name, or -1.
  int find_service(const std::string& name) const;

  /// Total task instances (the sum of counts).
  long long instance_count() const;
  /// Index of the task named @p name, or -1.
  int find_task(const std::string& name) const;
};

/// A recording's files (RUN_DIR/services/NAME/replica-R.h5), sorted;
/// none when @p dir is missing.
std::vector<std::string> recording_files(const std::string& dir);

/// `tandem run --replay OLD_RUN`: every service that @p old_run recorded
/// answers from its recording (backend = "replay"). @throws
/// tandem::config_error when @p old_run is no run directory or recorded
/// none of the workflow's services.
void apply_replay(Workflow& wf, const std::string& old_run);

/// Whether workers run the local proxy: it is on, and there are tasks
/// that are executables with services to reach or tasks to steer.
inline bool needs_proxy(const Workflow& wf) {
  if (!wf.job.proxy.enabled) return false;
  for (const TaskSpec& t : wf.tasks) {
    if (t.kind == TaskKind::command && (t.steering || !wf.services.empty())) return true;
  }
  return false;
}

/// Whether Tandem hands out the nodes' GPUs: some task or service asks for
/// them. Then everything else gets CUDA_VISIBLE_DEVICES="" (docs/user-guide.md#gpus).
inline bool manages_gpus(const Workflow& wf) {
  for (const TaskSpec& t : wf.tasks) {
    if (t.gpus_per_rank > 0) return true;
  }
  for (const ServiceSpec& s : wf.services) {
    if (s.gpus_per_replica > 0) return true;
  }
  return false;
}

/// Whether any task is a Python function (workers then embed Python).
inline bool has_python_tasks(const Workflow& wf) {
  for (const TaskSpec& t : wf.tasks) {
    if (t.is_python()) return true;
  }
  return false;
}

/// Where the workers' sockets go.
inline std::string proxy_socket_dir(const Workflow& wf, const std::string& run_dir) {
  return wf.job.proxy.socket_dir.empty() ? run_dir + "/sockets" : wf.job.proxy.socket_dir;
}

/// Reads and checks the workflow file. @throws tandem::config_error naming
/// file, line, column and key for anything wrong with it.
Workflow load_workflow(const std::string& path);

/// Same, from text already read (for tests and for ranks that got the text
/// broadcast). @p path names the file in errors and anchors relative paths.
Workflow parse_workflow(const std::string& text, const std::string& path, bool check_files = true);

/// Checks that the workflow fits a job of @p world_size ranks.
/// @throws tandem::config_error naming the layout key at fault.
void check_fits(const Workflow& wf, int world_size);

/// The changes from @p before to @p after that would make a resumed run's
/// finished results mean something else, one sentence each. Safe, and not
/// listed: more instances, new tasks, higher retries, longer timeouts,
/// priorities, the layout, a service's replicas, batching and timeouts.
std::vector<std::string> unsafe_changes(const Workflow& before, const Workflow& after);

/// The workflow with every default filled in, as TOML text.
std::string resolved_toml(const Workflow& wf);

}  // namespace tandem::detail
