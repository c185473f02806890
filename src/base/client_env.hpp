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

}  // namespace tandem::detail
