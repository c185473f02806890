#include "transport/direct_layout.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

namespace tandem::detail::direct {

namespace {

// Each record: its length and a tag (so that bytes that are no record are
// told apart from one), then the bytes, padded to 8.
constexpr std::uint32_t kTag = 0x43455254;      // "TREC"
constexpr std::uint32_t kWrapTag = 0x50415257;  // "WRAP": the rest of the ring is empty
constexpr std::size_t kRecordHeader = 8;

constexpr std::size_t padded(std::size_t n) {
  return (n + 7) & ~std::size_t{7};
}

}  // namespace

bool ring_write(Ring& r, const void* data, std::size_t size) {
  if (size == 0 || size > kMaxRecord) return false;
  const std::uint64_t head = r.head.load(std::memory_order_relaxed);
  const std::uint64_t tail = r.tail.load(std::memory_order_acquire);
  const std::size_t need = kRecordHeader + padded(size);
  const std::size_t at = head % kRingBytes;
  const std::size_t to_end = kRingBytes - at;
  const std::size_t free = kRingBytes - (head - tail);
  std::uint64_t start = head;
  if (to_end < need) {
    // The record would wrap: the end of the ring is skipped.
    if (free < to_end + need) return false;
    const std::uint32_t wrap[2] = {0, kWrapTag};
    std::memcpy(r.bytes + at, wrap, sizeof wrap);
    start += to_end;
  } else if (free < need) {
    return false;
  }
  std::byte* p = r.bytes + start % kRingBytes;
  const std::uint32_t header[2] = {static_cast<std::uint32_t>(size), kTag};
  std::memcpy(p, header, sizeof header);
  std::memcpy(p + kRecordHeader, data, size);
  r.head.store(start + need, std::memory_order_seq_cst);
  return true;
}

std::size_t ring_peek(const Ring& r, const std::byte*& data) {
  std::uint64_t tail = r.tail.load(std::memory_order_relaxed);
  const std::uint64_t head = r.head.load(std::memory_order_acquire);
  if (head == tail) return 0;
  if (head - tail > kRingBytes || head % 8 != 0 || tail % 8 != 0) return kBadRecord;
  std::uint32_t header[2];
  std::memcpy(header, r.bytes + tail % kRingBytes, sizeof header);
  if (header[1] == kWrapTag) {
    tail += kRingBytes - tail % kRingBytes;
    if (head == tail) return kBadRecord;  // a wrap marker with nothing after it
    std::memcpy(header, r.bytes, sizeof header);
  }
  if (header[1] != kTag || header[0] == 0 || header[0] > kMaxRecord ||
      kRecordHeader + padded(header[0]) > head - tail) {
    return kBadRecord;
  }
  data = r.bytes + tail % kRingBytes + kRecordHeader;
  return header[0];
}

void ring_pop(Ring& r, std::size_t size) {
  std::uint64_t tail = r.tail.load(std::memory_order_relaxed);
  std::uint32_t header[2];
  std::memcpy(header, r.bytes + tail % kRingBytes, sizeof header);
  if (header[1] == kWrapTag) tail += kRingBytes - tail % kRingBytes;
  r.tail.store(tail + kRecordHeader + padded(size), std::memory_order_release);
}

void ring_reset(Ring& r) {
  r.head.store(0, std::memory_order_relaxed);
  r.tail.store(0, std::memory_order_release);
}

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, long timeout_ns) {
  timespec ts{timeout_ns / 1000000000L, timeout_ns % 1000000000L};
  // Not FUTEX_PRIVATE: the word is in memory other processes map.
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr,
            0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr,
            nullptr, 0);
}

std::string endpoint_name(int pid) {
  return fmt::format("/tandem.{}.direct", pid);
}

}  // namespace tandem::detail::direct
