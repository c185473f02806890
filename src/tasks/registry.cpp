#include "tasks/registry.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "config/table_reader.hpp"
#include "tandem/error.hpp"

namespace tandem {

namespace {
struct Registry {
  std::mutex mutex;
  std::map<std::string, TaskFunction> functions;
  std::map<std::string, void*> libraries;  // path -> dlopen handle, never closed
};

Registry& registry() {
  static Registry r;  // constructed on first use: safe from static initialisers
  return r;
}
}  // namespace

bool register_task(const std::string& name, TaskFunction fn) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto [it, inserted] = r.functions.emplace(name, fn);
  if (!inserted && it->second != fn) {
    throw argument_error(
        fmt::format("register_task: the name '{}' is already registered to another "
                    "function; task names must be unique",
                    name));
  }
  return true;
}

namespace detail {

TaskFunction find_task_function(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.functions.find(name);
  if (it != r.functions.end()) return it->second;
  // An extern "C" function exported by a loaded library also counts.
  for (auto& [path, handle] : r.libraries) {
    if (void* sym = ::dlsym(handle, name.c_str())) {
      auto fn = reinterpret_cast<TaskFunction>(sym);
      r.functions.emplace(name, fn);
      return fn;
    }
  }
  return nullptr;
}

std::vector<std::string> registered_task_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [n, f] : r.functions) names.push_back(n);
  return names;
}

void load_task_functions(const Workflow& wf) {
  Registry& r = registry();
  for (const std::string& lib : wf.job.libraries) {
    {
      std::lock_guard lock(r.mutex);
      if (r.libraries.count(lib)) continue;
    }
    // Static initialisers in the library register its tasks here.
    void* handle = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      throw config_error(wf.path, 0, 0, "job.libraries",
                         fmt::format("cannot load shared library '{}': {}", lib, ::dlerror()));
    }
    std::lock_guard lock(r.mutex);
    r.libraries.emplace(lib, handle);
  }
  for (std::size_t i = 0; i < wf.tasks.size(); ++i) {
    const TaskSpec& t = wf.tasks[i];
    if (t.kind != TaskKind::function || t.is_python() || find_task_function(t.function)) continue;
    std::vector<std::string> names = registered_task_names();
    const std::string hint = closest_match(t.function, names);
    std::string why = fmt::format("task '{}': function '{}' is not registered", t.name, t.function);
    if (!hint.empty()) {
      why += fmt::format("; did you mean '{}'?", hint);
    } else if (wf.job.libraries.empty()) {
      why += "; register it with TANDEM_TASK and name its shared library in [job] libraries";
    } else {
      why += fmt::format(" by any of [job] libraries ({})", fmt::join(wf.job.libraries, ", "));
    }
    throw config_error(wf.path, t.function_pos.line, t.function_pos.column,
                       fmt::format("task[{}].function", i), why);
  }
}

}  // namespace detail
}  // namespace tandem
