#pragma once
// Where an executable task finds the client libraries: libtandem itself
// (for the C API and Python's ctypes) and the Python module, in the build
// tree or in an installed prefix, found from where libtandem was loaded.

#include <string>

namespace tandem::detail {

struct ClientEnvironment {
  std::string library;     // libtandem.so, absolute; empty if unknown
  std::string python_dir;  // the directory holding the `tandem` Python package
};

ClientEnvironment client_environment();

/// A plugin of Tandem's (libtandem_torch.so, libtandem_python.so): its path
/// next to libtandem.so when it is there (the build tree keeps both in
/// build/src, an install in PREFIX/lib), else the bare name for the
/// loader's search path.
std::string plugin_path(const std::string& file);

}  // namespace tandem::detail
