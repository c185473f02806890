#include "base/client_env.hpp"

#include <dlfcn.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace tandem::detail {

ClientEnvironment client_environment() {
  ClientEnvironment env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&client_environment), &info) == 0 || !info.dli_fname) {
    return env;
  }
  std::error_code ec;
  const fs::path lib = fs::canonical(info.dli_fname, ec);
  if (ec) return env;
  env.library = lib.string();
  // Build tree: build/src/libtandem.so, module in build/python/.
  // Installed: PREFIX/lib/libtandem.so, module in PREFIX/lib/tandem/python/.
  for (const fs::path& candidate :
       {lib.parent_path().parent_path() / "python", lib.parent_path() / "tandem" / "python"}) {
    if (fs::exists(candidate / "tandem" / "__init__.py", ec)) {
      env.python_dir = candidate.string();
      break;
    }
  }
  return env;
}

std::string plugin_path(const std::string& file) {
  const ClientEnvironment env = client_environment();
  if (!env.library.empty()) {
    const fs::path next = fs::path(env.library).parent_path() / file;
    std::error_code ec;
    if (fs::exists(next, ec)) return next.string();
  }
  return file;
}

}  // namespace tandem::detail
