#pragma once
// Isolated function tasks (`isolate = true`): the function runs in a forked
// child of the worker, and its result, its exception's message or the
// signal that killed it comes back over a pipe. A crash, an exit() or a
// timeout then fails only that attempt, and the worker goes on.
//
// The child is a copy of the worker taken at fork(): it has the task's
// arguments, the loaded libraries and memory as they were, but it must not
// touch MPI (the worker's MPI state is not the child's to use), so an
// isolated task cannot call the services or span several ranks. Its
// stdout and stderr go to RUN_DIR/tasks/NAME/INDEX.out and .err.

#include <string>

#include "protocol/task_state.hpp"
#include "tandem/task.hpp"

namespace tandem::detail {

struct IsolatedLaunch {
  std::string function_name;  // for the reason
  std::string stdout_path;
  std::string stderr_path;
  double timeout_s = 0;  // 0: none
  double kill_grace_s = 2;
  // Around fork(), for a runtime with its own locks (the Python plugin's).
  void (*before_fork)() = nullptr;
  void (*after_fork_parent)() = nullptr;
  void (*after_fork_child)() = nullptr;
  // The child's CUDA_VISIBLE_DEVICES, when Tandem hands out GPUs: set
  // before the function runs, so that CUDA sees only the task's GPUs.
  bool set_gpus = false;
  std::string gpus;
};

struct IsolatedResult {
  Outcome outcome = Outcome::failed;
  int exit_code = 0;
  std::string reason;
  std::string result;  // the return value the function recorded (set_result)
};

/// Runs @p fn(@p ctx) in a forked child and waits for it, killing it at
/// the timeout or when the job is asked to stop.
IsolatedResult run_isolated(TaskFunction fn, TaskContext& ctx, const IsolatedLaunch& launch);

/// Waits for the children that answered and were still exiting.
void reap_isolated_children();

}  // namespace tandem::detail
