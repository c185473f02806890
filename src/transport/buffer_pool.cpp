#include "transport/buffer_pool.hpp"

#include <cstdlib>
#include <new>

namespace tandem::detail {

namespace {
constexpr int kMinShift = 12;   // 4 KiB
constexpr int kMaxPooled = 16;  // classes up to 4 KiB << 16 = 256 MiB
constexpr std::size_t kKeepPerClass = 64;
}  // namespace

BufferPool& BufferPool::instance() {
  static BufferPool* pool = new BufferPool();  // intentionally leaked
  return *pool;
}

int BufferPool::size_class(std::size_t size) {
  int cls = 0;
  while ((std::size_t{1} << (kMinShift + cls)) < size) ++cls;
  return cls;
}

std::shared_ptr<std::byte> BufferPool::acquire(std::size_t size) {
  const int cls = size_class(size);
  const std::size_t bytes = std::size_t{1} << (kMinShift + cls);
  std::byte* p = nullptr;
  if (cls <= kMaxPooled) {
    std::lock_guard lock(mutex_);
    if (static_cast<int>(free_.size()) > cls && !free_[cls].empty()) {
      p = free_[cls].back();
      free_[cls].pop_back();
    }
  }
  if (!p) {
    p = static_cast<std::byte*>(std::aligned_alloc(64, bytes));
    if (!p) throw std::bad_alloc();
  }
  return std::shared_ptr<std::byte>(p, [this, cls](std::byte* q) { release(cls, q); });
}

void BufferPool::release(int cls, std::byte* p) {
  if (cls <= kMaxPooled) {
    std::lock_guard lock(mutex_);
    if (static_cast<int>(free_.size()) <= cls) free_.resize(cls + 1);
    if (free_[cls].size() < kKeepPerClass) {
      free_[cls].push_back(p);
      return;
    }
  }
  std::free(p);
}

}  // namespace tandem::detail
