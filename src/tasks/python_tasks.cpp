#include "tasks/python_tasks.hpp"

#include <dlfcn.h>

#include <fmt/format.h>

#include "base/client_env.hpp"
#include "base/raise.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

const PythonPlugin* g_plugin = nullptr;

}  // namespace

void start_python_tasks(const Workflow& wf) {
  if (!g_plugin) {
    const std::string path = plugin_path("libtandem_python.so");
    // RTLD_GLOBAL: Python's extension modules (numpy's, mpi4py's) are not
    // linked to libpython; they find its symbols in the global scope.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      raise<environment_error>(fmt::format(
          "the workflow has Python tasks, but Tandem's Python plugin cannot be loaded ({}); "
          "build Tandem with Python (Debian: python3-dev, TANDEM_WITH_PYTHON=ON)",
          ::dlerror()));
    }
    auto entry =
        reinterpret_cast<decltype(&tandem_python_plugin)>(::dlsym(handle, "tandem_python_plugin"));
    if (!entry) raise<environment_error>(fmt::format("{} lacks tandem_python_plugin", path));
    g_plugin = entry();
  }
  g_plugin->start(wf, client_environment().python_dir);
}

void finish_python_tasks() {
  if (g_plugin) g_plugin->finish();
}

const PythonPlugin* python_plugin() {
  return g_plugin;
}

}  // namespace tandem::detail
