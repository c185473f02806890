#include "transport/direct_link.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"
#include "transport/buffer_pool.hpp"

namespace tandem::detail::direct {

Link::Link(const std::string& name, int client_rank) : name_(name) {
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    throw io_error(name, fmt::format("cannot open {}: {}", name, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0 ||
      static_cast<std::size_t>(st.st_size) < sizeof(EndpointHeader)) {
    ::close(fd);
    throw io_error(name, fmt::format("{} is not a direct endpoint of this user's job", name));
  }
  mapped_ = sizeof(EndpointHeader);
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    throw io_error(name, fmt::format("cannot map {}: {}", name, std::strerror(errno)));
  }
  header_ = static_cast<EndpointHeader*>(p);
  if (std::atomic_ref<std::uint64_t>(header_->magic).load(std::memory_order_acquire) != kMagic ||
      header_->version != kVersion || header_->slots != kSlots ||
      header_->ring_bytes != kRingBytes) {
    ::munmap(p, mapped_);
    throw io_error(name, fmt::format("{} is not a direct endpoint of this version", name));
  }
  const auto me = static_cast<std::uint32_t>(::getpid());
  for (std::uint32_t i = 0; i < kSlots && !slot_; ++i) {
    std::uint32_t free = 0;
    if (header_->slot[i].owner_pid.compare_exchange_strong(free, me, std::memory_order_acq_rel)) {
      slot_ = &header_->slot[i];
    }
  }
  if (!slot_) {
    ::munmap(p, mapped_);
    throw io_error(name, fmt::format("{} has no free slot", name));
  }
  slot_->client_rank.store(client_rank, std::memory_order_relaxed);
  generation_ = slot_->generation.load(std::memory_order_acquire);
}

Link::~Link() {
  slot_->released.store(1, std::memory_order_release);
  ::munmap(header_, mapped_);
}

bool Link::serving() const {
  return header_->state.load(std::memory_order_acquire) == kServing &&
         slot_->generation.load(std::memory_order_acquire) == generation_;
}

bool Link::post(const wire::Encoded& message) {
  if (!ring_write(slot_->requests, message.buffer.get(), message.size)) return false;
  ring_bell(header_->doorbell, header_->replica_sleeping);
  return true;
}

bool Link::take(wire::Encoded& out) {
  if (slot_->generation.load(std::memory_order_acquire) != generation_) return false;
  const std::byte* data = nullptr;
  const std::size_t size = ring_peek(slot_->replies, data);
  if (size == 0 || size == kBadRecord) return false;
  out.buffer = BufferPool::instance().acquire(size);
  out.size = size;
  std::memcpy(out.buffer.get(), data, size);
  ring_pop(slot_->replies, size);
  return true;
}

void Link::wait(long spin_ns, long timeout_ns) {
  using clock = std::chrono::steady_clock;
  const auto has_reply = [&] {
    return slot_->replies.head.load(std::memory_order_acquire) !=
           slot_->replies.tail.load(std::memory_order_relaxed);
  };
  const std::uint32_t bell = slot_->reply_bell.load(std::memory_order_acquire);
  if (spin_ns > 0) {
    const auto until = clock::now() + std::chrono::nanoseconds(spin_ns);
    do {
      if (has_reply() || slot_->reply_bell.load(std::memory_order_acquire) != bell) return;
    } while (clock::now() < until);
  }
  slot_->task_sleeping.store(1, std::memory_order_seq_cst);
  if (!has_reply() && slot_->reply_bell.load(std::memory_order_seq_cst) == bell) {
    futex_wait(slot_->reply_bell, bell, timeout_ns);
  }
  slot_->task_sleeping.store(0, std::memory_order_relaxed);
}

bool Link::replica_dead() const {
  return ::kill(replica_pid(), 0) != 0 && errno != EPERM;
}

std::string Link::lost() const {
  if (slot_->generation.load(std::memory_order_acquire) != generation_) {
    return fmt::format("the replica reset this task's connection to it ({})", name_);
  }
  if (replica_dead()) return fmt::format("the replica (process {}) has gone", replica_pid());
  if (header_->state.load(std::memory_order_acquire) == kClosed &&
      slot_->replies.head.load(std::memory_order_acquire) ==
          slot_->replies.tail.load(std::memory_order_relaxed)) {
    return "the replica stopped before it answered";
  }
  return {};
}

}  // namespace tandem::detail::direct
