#include "hdf5/library.hpp"

#include <hdf5.h>

#include <type_traits>

namespace tandem::detail::h5 {

static_assert(std::is_same_v<hid_t, Id>, "hid_t is a 64-bit integer since HDF5 1.10");
static_assert(std::is_same_v<herr_t, int>, "Handle::Closer takes H5?close as it is");

std::recursive_mutex& lock() {
  static std::recursive_mutex m;
  return m;
}

// In a thread-safe HDF5 the error stack, and whether it is printed, is per
// thread: each thread that calls HDF5 (the recorder's writer) is silenced
// on its first call here. H5dont_atexit: Tandem closes every file it
// writes itself, and HDF5 closing a file again at exit, after its close
// failed, loops ("infinite loop closing library").
void quiet_errors() {
  static const bool done = [] {
    H5dont_atexit();
    return true;
  }();
  (void)done;
  thread_local const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
}

bool Handle::close() {
  if (id_ < 0) return true;
  std::lock_guard<std::recursive_mutex> hold(lock());
  const bool ok = close_(std::exchange(id_, -1)) >= 0;
  return ok;
}

}  // namespace tandem::detail::h5
