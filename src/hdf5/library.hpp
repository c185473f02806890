#pragma once
// The HDF5 library as Tandem uses it: one lock, quiet errors, and a handle
// that closes what it holds. Every HDF5 call in Tandem is made in this
// layer (src/hdf5/); the rest of the code sees no <hdf5.h>.

#include <cstdint>
#include <mutex>
#include <utility>

namespace tandem::detail::h5 {

/// An HDF5 identifier (hid_t, a 64-bit integer since HDF5 1.10); negative
/// when a call failed.
using Id = std::int64_t;

/// Debian's HDF5 is not built thread-safe, and the recorder writes from a
/// thread of its own: every HDF5 call holds this lock. It is recursive so
/// that a caller may hold it over several calls of this layer (Access).
std::recursive_mutex& lock();

/// Turns HDF5's automatic printing of its error stack off on this thread
/// (every HDF5 failure becomes one error of ours that names the file and the
/// operation), and HDF5's clean-up at exit off for the process: a file whose
/// close failed (a full disk) would crash it there.
void quiet_errors();

/// Holds the library lock for a stretch of HDF5 calls, quietly.
class Access {
 public:
  Access() : hold_(lock()) { quiet_errors(); }

 private:
  std::lock_guard<std::recursive_mutex> hold_;
};

/// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = int (*)(Id);
  Handle() = default;
  Handle(Id id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, -1)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, -1);
      close_ = other.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  Id id() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }
  /// Closes now; false when HDF5 says the close failed (for a file: its
  /// last writes did not reach the disk).
  bool close();

 private:
  void reset() noexcept { (void)close(); }
  Id id_ = -1;
  Closer close_ = nullptr;
};

}  // namespace tandem::detail::h5
