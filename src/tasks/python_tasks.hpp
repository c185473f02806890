#pragma once
// Python function tasks (`python = "module:function"`). The interpreter
// lives in a plugin, libtandem_python.so (src/python_tasks/), that only the
// ranks running Python tasks load, so that the core never depends on
// Python, as the TorchScript backend's plugin keeps it free of libtorch.

#include <string>

#include "config/workflow.hpp"
#include "tandem/task.hpp"

namespace tandem::detail {

/// The plugin's entry points (src/python_tasks/python_plugin.cpp).
struct PythonPlugin {
  /// Starts the interpreter (once per process), puts the workflow's
  /// directory, `[job] pythonpath` and Tandem's package on sys.path, and
  /// imports every Python task's module. @throws config_error at the
  /// task's `python` key, naming the module and the file and line at fault.
  void (*start)(const Workflow& wf, const std::string& package_dir);
  /// Runs the Python task of the context (a TaskFunction): the return
  /// value goes into the context's result, an exception becomes a
  /// task_error whose message names it and where its traceback went.
  TaskFunction run;
  /// Around the fork of an isolated task: the interpreter's own fork
  /// protocol (its locks held across the fork, then reset in the child).
  void (*before_fork)();
  void (*after_fork_parent)();
  void (*after_fork_child)();
  /// At the worker's end: runs the atexit handlers the tasks registered and
  /// flushes Python's output. The interpreter is not finalized (extension
  /// modules, mpi4py's among them, are not all safe to tear down).
  void (*finish)();
};

/// Loads the plugin and starts it (see PythonPlugin::start).
/// @throws config_error; tandem::error when the plugin cannot be loaded.
void start_python_tasks(const Workflow& wf);

/// Calls the plugin's finish() if it was started in this process.
void finish_python_tasks();

/// The plugin, once start_python_tasks has succeeded in this process;
/// nullptr before.
const PythonPlugin* python_plugin();

}  // namespace tandem::detail

/// The plugin's one exported symbol.
extern "C" const tandem::detail::PythonPlugin* tandem_python_plugin();
