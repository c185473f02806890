#pragma once
/// @file task.hpp
/// Function tasks: C++ functions that the pilot runs on worker ranks.
///
/// A function task is registered by name, either with TANDEM_TASK in a file
/// linked into the program or into a shared library that the workflow names
/// in `[job] libraries`, or as an `extern "C"` function of that signature in
/// such a library:
///
/// @code
/// TANDEM_TASK(heat_step) {
///   const double dt = ctx.arg_double("dt", 0.1);
///   ...
/// }
/// @endcode

#include <mpi.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tandem {

class Client;
namespace detail {
struct TaskContextData;
struct Access;
}  // namespace detail

/// One task instance a steering task asks for (TaskContext::submit): one
/// more instance of a task of the workflow file, with its own args.
struct TaskRequest {
  std::string task;              // the workflow task's name
  std::string args_json = "{}";  // its args, a JSON object
  int priority = 0;              // higher first, as `priority` in the file
  std::vector<long long> after;  // handles it waits for: it runs once all are DONE
  // The same key gives back the same instance. Empty: "NAME[INDEX]#N", the
  // submitter's N-th submission, so that a rerun submitter that submits
  // in the same order gets its old handles back instead of new instances.
  std::string key;
  // The round it belongs to, for `tandem report` (-1: one round per
  // submit call).
  int round = -1;
  int retries = -1;      // its own retries; -1: the task's
  double timeout_s = 0;  // its own timeout in seconds; 0: the task's
  // Workflow tasks it waits for, every instance of each there is now (the
  // file's and those submitted so far).
  std::vector<std::string> after_tasks;
};

/// How a submitted instance ended (TaskContext::wait).
struct TaskResult {
  long long handle = 0;
  std::string task;
  int index = 0;      // its index in its task (after the file's `count`)
  std::string state;  // DONE, FAILED or CANCELED
  int exit_code = 0;
  std::string reason;       // why it failed or was canceled
  std::string result_json;  // what it gave set_result(); empty for none
};

/// What a running function task knows about itself. Created by the worker for
/// each attempt; valid only during the call. Not thread-safe.
class TaskContext {
 public:
  /// The task's name as written in the workflow file.
  const std::string& name() const noexcept;
  /// This instance's index in [0, count()).
  int index() const noexcept;
  /// How many instances the task has (`count` in the workflow).
  int count() const noexcept;
  /// The attempt, starting at 1; above 1 when the task is being retried.
  int attempt() const noexcept;

  /// Communicator over the ranks of this task: a sub-communicator when the
  /// task asked for `ranks > 1`, MPI_COMM_SELF otherwise. Owned by Tandem.
  MPI_Comm comm() const noexcept;
  /// This rank's rank in comm().
  int rank() const noexcept;
  /// The number of ranks in comm().
  int size() const noexcept;

  /// The ids of the GPUs this rank of the attempt was given
  /// (`gpus_per_task` or `gpus_per_rank`), as CUDA_VISIBLE_DEVICES names
  /// them; empty without any. A function task runs in its worker's process:
  /// choose the device from these (an isolated task's CUDA_VISIBLE_DEVICES
  /// is set to them, so there they are cuda:0 and on).
  const std::vector<std::string>& gpus() const noexcept;

  /// The run directory of this run.
  const std::filesystem::path& run_dir() const noexcept;
  /// A directory for this task's files (`RUN_DIR/tasks/NAME`), shared by its
  /// instances; it exists when the task starts.
  const std::filesystem::path& output_dir() const noexcept;

  /// True when `args` in the workflow has this key.
  bool has_arg(const std::string& key) const;
  /// The argument as a string (TOML strings as is, numbers and booleans as
  /// their text). Returns @p fallback when the key is absent.
  std::string arg_string(const std::string& key, const std::string& fallback = "") const;
  /// The argument as an integer. @throws tandem::task_error if present and
  /// not an integer.
  long long arg_int(const std::string& key, long long fallback = 0) const;
  /// The argument as a floating-point number (integers convert).
  /// @throws tandem::task_error if present and not a number.
  double arg_double(const std::string& key, double fallback = 0.0) const;
  /// The argument as a boolean. @throws tandem::task_error if not a boolean.
  bool arg_bool(const std::string& key, bool fallback = false) const;
  /// All arguments as a JSON object text.
  std::string args_json() const;

  /// The client of the job's services (see tandem/client.hpp).
  Client& client() const;

  /// Records a small result with the attempt: @p json (a JSON value, at
  /// most 16 KiB as text) goes into the journal's line for this instance
  /// if the attempt finishes DONE. The last call wins.
  /// @throws tandem::task_error if @p json is not JSON or is too large.
  void set_result(const std::string& json) const;

  /// Adds task instances to the run while it goes (adaptive workflows) and
  /// returns their handles, in order. Only a task with `steering = true`
  /// may submit. Each submission is in the journal before this returns.
  /// @throws tandem::argument_error for a task the workflow does not have,
  /// one that cannot be submitted, an unknown handle in `after`, or a task
  /// that is not steering.
  std::vector<long long> submit(const std::vector<TaskRequest>& requests) const;
  long long submit(const TaskRequest& request) const;
  /// Waits until every instance in @p handles has ended; their results, in
  /// the same order.
  std::vector<TaskResult> wait(const std::vector<long long>& handles) const;
  /// Waits until at least one instance in @p handles has ended and returns
  /// all that have (in the order of @p handles): as-completed iteration is
  /// a loop that takes the ended ones out of @p handles and calls again.
  /// Returns at once, with nothing, for no handles.
  std::vector<TaskResult> wait_any(const std::vector<long long>& handles) const;

 private:
  friend struct detail::Access;
  explicit TaskContext(const detail::TaskContextData* data) noexcept : data_(data) {}

  const detail::TaskContextData* data_;
};

/// The signature of a function task. Throwing fails the task with the
/// exception's message.
using TaskFunction = void (*)(TaskContext&);

/// Registers @p fn under @p name. Returns true so that it can initialise a
/// static. Thread-safe. @throws tandem::argument_error if the name is taken by another
/// function.
bool register_task(const std::string& name, TaskFunction fn);

}  // namespace tandem

#define TANDEM_DETAIL_CONCAT2(a, b) a##b
#define TANDEM_DETAIL_CONCAT(a, b) TANDEM_DETAIL_CONCAT2(a, b)

/// Defines a function task named @p fn (the body follows, with `ctx` the
/// tandem::TaskContext&) and registers it under the same name.
#define TANDEM_TASK(fn)                                                             \
  static void fn(::tandem::TaskContext& ctx);                                       \
  [[maybe_unused]] static const bool TANDEM_DETAIL_CONCAT(tandem_registered_, fn) = \
      ::tandem::register_task(#fn, &(fn));                                          \
  static void fn([[maybe_unused]] ::tandem::TaskContext& ctx)

/// Registers an existing function @p fn under the name @p name.
#define TANDEM_REGISTER_TASK(name, fn)                                                    \
  [[maybe_unused]] static const bool TANDEM_DETAIL_CONCAT(tandem_registered_, __LINE__) = \
      ::tandem::register_task(name, fn)
