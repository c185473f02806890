#include "transport/direct_endpoint.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tandem/error.hpp"
#include "transport/buffer_pool.hpp"

namespace tandem::detail::direct {

namespace {

bool alive(std::uint32_t pid) {
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// The process's owner, from /proc: a claimant must be of our uid (the
// segment's mode keeps others out, but not root's processes).
bool same_user(std::uint32_t pid) {
  struct stat st {};
  return ::stat(fmt::format("/proc/{}", pid).c_str(), &st) == 0 && st.st_uid == ::geteuid();
}

}  // namespace

Endpoint::Endpoint(int service, int replica) : name_(endpoint_name(::getpid())) {
  ::shm_unlink(name_.c_str());  // one of ours from a process of the same pid, long gone
  const int fd = ::shm_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    throw io_error(name_,
                   fmt::format("cannot create shared memory {}: {}", name_, std::strerror(errno)));
  }
  mapped_ = sizeof(EndpointHeader);
  void* p = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(mapped_)) == 0) {
    p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  const std::string why = std::strerror(errno);
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(name_.c_str());
    throw io_error(name_, fmt::format("cannot size or map shared memory {}: {}", name_, why));
  }
  // A fresh segment is all zeros: every slot free, every ring empty.
  header_ = new (p) EndpointHeader;
  header_->version = kVersion;
  header_->owner_pid = static_cast<std::uint32_t>(::getpid());
  header_->slots = kSlots;
  header_->ring_bytes = kRingBytes;
  header_->service = service;
  header_->replica = replica;
  header_->state.store(kServing, std::memory_order_relaxed);
  // Last: a task that sees the magic sees the rest.
  std::atomic_ref<std::uint64_t>(header_->magic).store(kMagic, std::memory_order_release);
}

Endpoint::~Endpoint() {
  set_state(kClosed);
  ::shm_unlink(name_.c_str());
  // Held replies' segments are ours; the run's end removes them.
  ::munmap(header_, mapped_);
}

void Endpoint::set_state(State s) {
  header_->state.store(s, std::memory_order_seq_cst);
  if (s == kServing) return;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    Slot& slot = header_->slot[i];
    if (slot.owner_pid.load(std::memory_order_acquire) == 0) continue;
    slot.reply_bell.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(slot.reply_bell);
  }
}

bool Endpoint::accept(int i, std::uint32_t pid) {
  if (accepted_pid_[i] == pid) return true;
  if (!same_user(pid)) {
    spdlog::warn("direct path {}: slot {} was claimed by process {}, not ours; resetting it", name_,
                 i, pid);
    reset(i, nullptr);
    return false;
  }
  accepted_pid_[i] = pid;
  return true;
}

int Endpoint::take(const std::function<void(const From&, wire::Encoded&&)>& take) {
  // Before the rings: a task that writes after this load rings a bell we
  // have not seen, so the next rang() looks again.
  seen_ = header_->doorbell.load(std::memory_order_seq_cst);
  int n = 0;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    Slot& slot = header_->slot[i];
    const std::uint32_t pid = slot.owner_pid.load(std::memory_order_acquire);
    if (pid == 0 || slot.released.load(std::memory_order_acquire) != 0) continue;
    const std::byte* data = nullptr;
    std::size_t size = ring_peek(slot.requests, data);
    if (size == 0 || !accept(static_cast<int>(i), pid)) continue;
    const From from{static_cast<int>(i), slot.generation.load(std::memory_order_acquire),
                    slot.client_rank.load(std::memory_order_acquire), pid};
    for (; size != 0; size = ring_peek(slot.requests, data)) {
      if (size == kBadRecord) {
        reset(static_cast<int>(i), "its request ring holds bytes that are no request");
        break;
      }
      wire::Encoded in;
      in.buffer = BufferPool::instance().acquire(size);
      in.size = size;
      std::memcpy(in.buffer.get(), data, size);
      ring_pop(slot.requests, size);
      take(from, std::move(in));
      ++n;
    }
  }
  return n;
}

bool Endpoint::write_reply(const From& to, Outgoing& message) {
  Slot& slot = header_->slot[to.slot];
  if (!ring_write(slot.replies, message.message.buffer.get(), message.message.size)) return false;
  ring_bell(slot.reply_bell, slot.task_sleeping);
  message.segment = nullptr;  // the task's to hand back now
  return true;
}

void Endpoint::reply(const From& to, Outgoing message) {
  Slot& slot = header_->slot[to.slot];
  if (slot.generation.load(std::memory_order_acquire) != to.generation) {
    finish(message);  // the task is gone: nobody will hand its segment back
    return;
  }
  if (message.message.size > kMaxRecord) {
    // Only when shared memory for a large reply could not be had. The
    // error keeps the request's id: the task waits for that one.
    wire::Decoded d;
    std::string why;
    const std::uint64_t id = wire::decode(message.message.buffer, message.message.size, d, why)
                                 ? d.header.request_id
                                 : 0;
    const std::size_t size = message.message.size;
    finish(message);
    message.message = wire::encode(
        wire::kReplyError, id, -1, {},
        fmt::format("the reply of {} bytes is too large for the direct path and no shared "
                    "memory could be had for it ([job.staging] shm_budget_mb)",
                    size));
  }
  if (held_[to.slot].empty() && write_reply(to, message)) return;
  held_[to.slot].push_back({to, std::move(message)});
  ++held_count_;
}

bool Endpoint::flush() {
  bool any = false;
  for (std::uint32_t i = 0; i < kSlots && held_count_ > 0; ++i) {
    auto& q = held_[i];
    while (!q.empty() && write_reply(q.front().to, q.front().message)) {
      q.pop_front();
      --held_count_;
      any = true;
    }
  }
  return any;
}

void Endpoint::reset(int i, const char* why) {
  Slot& slot = header_->slot[i];
  if (why) {
    spdlog::warn("direct path {}: reset the slot of task pid {}: {}", name_,
                 slot.owner_pid.load(std::memory_order_relaxed), why);
  }
  held_count_ -= static_cast<int>(held_[i].size());
  for (Held& h : held_[i]) finish(h.message);
  held_[i].clear();
  accepted_pid_[i] = 0;
  ring_reset(slot.requests);
  ring_reset(slot.replies);
  slot.client_rank.store(-1, std::memory_order_relaxed);
  slot.generation.fetch_add(1, std::memory_order_seq_cst);
  // A task still waiting sees the new generation and gives up on its requests.
  slot.reply_bell.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(slot.reply_bell);
  slot.released.store(0, std::memory_order_relaxed);
  slot.owner_pid.store(0, std::memory_order_release);  // free to claim again
}

int Endpoint::sweep() {
  int n = 0;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    Slot& slot = header_->slot[i];
    const std::uint32_t pid = slot.owner_pid.load(std::memory_order_acquire);
    if (pid == 0) continue;
    if (slot.released.load(std::memory_order_acquire) != 0) {
      reset(static_cast<int>(i), nullptr);
      ++n;
    } else if (!alive(pid)) {
      reset(static_cast<int>(i), "the task has gone");
      ++n;
    } else {
      accept(static_cast<int>(i), pid);
    }
  }
  return n;
}

void Endpoint::sleep(long ns) {
  header_->replica_sleeping.store(1, std::memory_order_seq_cst);
  const std::uint32_t bell = header_->doorbell.load(std::memory_order_seq_cst);
  if (bell == seen_) futex_wait(header_->doorbell, bell, ns);
  header_->replica_sleeping.store(0, std::memory_order_relaxed);
}

int Endpoint::clients() const {
  int n = 0;
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    n += header_->slot[i].owner_pid.load(std::memory_order_relaxed) != 0;
  }
  return n;
}

}  // namespace tandem::detail::direct
