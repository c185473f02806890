#pragma once
// The table of function tasks by name, and the loading of users' shared
// libraries that add to it.

#include <string>
#include <vector>

#include "config/workflow.hpp"
#include "tandem/task.hpp"

namespace tandem::detail {

/// The function registered as @p name, or nullptr.
TaskFunction find_task_function(const std::string& name);

/// Loads the libraries the workflow names (once each) and checks that every
/// function task resolves, either through registration or as an exported
/// `extern "C"` symbol. @throws tandem::config_error naming the task.
void load_task_functions(const Workflow& wf);

/// The names registered so far, sorted (for error messages).
std::vector<std::string> registered_task_names();

}  // namespace tandem::detail
