#include "transport/shm.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/mpi_check.hpp"
#include "tandem/error.hpp"

namespace tandem::detail::shm {

namespace {

std::size_t round_up_pow2(std::size_t n) {
  std::size_t c = std::size_t{64} * 1024;  // smallest segment: 64 KiB
  while (c < n) c <<= 1;
  return c;
}

bool process_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

OwnPool& OwnPool::instance() {
  static OwnPool* pool = new OwnPool();  // leaked: output tensors may outlive main
  return *pool;
}

OwnPool::~OwnPool() {
  remove_all();
}

void OwnPool::set_budget(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  budget_ = bytes;
}

Segment* OwnPool::acquire(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  auto take = [&](bool reclaim_dead) -> Segment* {
    Segment* best = nullptr;
    for (auto& s : segments_) {
      if (s->capacity() < bytes || (best && s->capacity() >= best->capacity())) continue;
      Header* h = s->header();
      if (h->in_use.load(std::memory_order_acquire) == 0) {
        best = s.get();
      } else if (reclaim_dead) {
        const auto holder = static_cast<pid_t>(h->holder_pid.load(std::memory_order_acquire));
        if (holder > 0 && !process_alive(holder)) {
          spdlog::warn("shared memory {} was held by process {}, which has gone; taking it back",
                       s->name, holder);
          h->in_use.store(0, std::memory_order_release);
          best = s.get();
        }
      }
    }
    if (!best) return nullptr;
    std::uint32_t expected = 0;
    if (!best->header()->in_use.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      return nullptr;
    }
    best->header()->holder_pid.store(0, std::memory_order_release);
    return best;
  };
  if (Segment* s = take(false)) return s;
  const std::size_t capacity = round_up_pow2(bytes);
  if (created_bytes_ + capacity > budget_) return take(true);
  auto seg = std::make_unique<Segment>();
  seg->name = fmt::format("/tandem.{}.{}", ::getpid(), next_++);
  const int fd = ::shm_open(seg->name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    spdlog::warn("cannot create shared memory {}: {}; sending inline", seg->name,
                 std::strerror(errno));
    return nullptr;
  }
  seg->mapped = kHeaderSize + capacity;
  if (::ftruncate(fd, static_cast<off_t>(seg->mapped)) != 0) {
    ::close(fd);
    ::shm_unlink(seg->name.c_str());
    spdlog::warn("cannot size shared memory {} to {} bytes: {}; sending inline", seg->name,
                 seg->mapped, std::strerror(errno));
    return nullptr;
  }
  void* p = ::mmap(nullptr, seg->mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(seg->name.c_str());
    return nullptr;
  }
  seg->base = static_cast<std::byte*>(p);
  Header* h = seg->header();
  h->magic = kMagic;
  h->owner_pid = static_cast<std::uint32_t>(::getpid());
  h->capacity = capacity;
  h->holder_pid.store(0, std::memory_order_release);
  h->in_use.store(1, std::memory_order_release);
  created_bytes_ += capacity;
  segments_.push_back(std::move(seg));
  return segments_.back().get();
}

void OwnPool::release(Segment* s) {
  if (s) s->header()->in_use.store(0, std::memory_order_release);
}

void OwnPool::remove_all() {
  std::lock_guard lock(mutex_);
  for (auto& s : segments_) {
    ::shm_unlink(s->name.c_str());
    ::munmap(s->base, s->mapped);
  }
  segments_.clear();
  created_bytes_ = 0;
}

PeerMaps& PeerMaps::instance() {
  static PeerMaps* maps = new PeerMaps();
  return *maps;
}

const Segment& PeerMaps::map(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = maps_.find(name);
  if (it != maps_.end()) return *it->second;
  if (name.rfind("/tandem.", 0) != 0 || name.find('/', 1) != std::string::npos) {
    throw protocol_error(
        fmt::format("'{}' is not the name of a Tandem shared-memory segment", name));
  }
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    throw io_error(name,
                   fmt::format("cannot open shared memory {}: {}", name, std::strerror(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size < kHeaderSize) {
    ::close(fd);
    throw protocol_error(fmt::format("shared memory {} is smaller than its header", name));
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    throw io_error(name,
                   fmt::format("cannot map shared memory {}: {}", name, std::strerror(errno)));
  }
  auto seg = std::make_unique<Segment>();
  seg->name = name;
  seg->base = static_cast<std::byte*>(p);
  seg->mapped = size;
  if (seg->header()->magic != kMagic || kHeaderSize + seg->header()->capacity > size) {
    ::munmap(p, size);
    throw protocol_error(fmt::format("shared memory {} is not a Tandem segment", name));
  }
  return *maps_.emplace(name, std::move(seg)).first->second;
}

void PeerMaps::unmap_all() {
  std::lock_guard lock(mutex_);
  for (auto& [name, s] : maps_) ::munmap(s->base, s->mapped);
  maps_.clear();
}

void sweep_nodes(MPI_Comm comm) {
  MPI_Comm node;
  TANDEM_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  if (node_rank == 0) {
    if (const int n = remove_stale(); n > 0) {
      spdlog::warn(
          "removed {} shared-memory segment(s) left by an earlier run that ended without "
          "cleaning up",
          n);
    }
  }
  MPI_Barrier(node);
  MPI_Comm_free(&node);
}

int remove_stale() {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("tandem.", 0) != 0) continue;
    const auto dot = name.find('.', 7);
    if (dot == std::string::npos) continue;
    pid_t pid = 0;
    try {
      pid = static_cast<pid_t>(std::stol(name.substr(7, dot - 7)));
    } catch (...) {
      continue;
    }
    if (pid > 0 && !process_alive(pid)) {
      if (::shm_unlink(("/" + name).c_str()) == 0) ++removed;
    }
  }
  return removed;
}

}  // namespace tandem::detail::shm
