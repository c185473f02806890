#pragma once
// Pooled byte buffers for the data plane. Touching a fresh page costs about
// 12 µs on the development machine, more than a whole small request, so
// request and reply bytes always land in buffers that were used before.
// A buffer goes back to the pool when the last shared_ptr to it is dropped,
// which may happen on any thread (a user's output tensor), hence the mutex.

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace tandem::detail {

class BufferPool {
 public:
  /// The process-wide pool (never destroyed, so buffers may outlive main).
  static BufferPool& instance();

  /// A buffer of at least @p size bytes, 64-byte aligned.
  std::shared_ptr<std::byte> acquire(std::size_t size);

 private:
  static int size_class(std::size_t size);
  void release(int cls, std::byte* p);

  std::mutex mutex_;
  std::vector<std::vector<std::byte*>> free_;  // per size class
};

}  // namespace tandem::detail
