#pragma once
// Node-local shared memory for tensors: POSIX shared-memory segments, each
// owned by the process that created it and reused from request to request.
// A client writes a request's tensors into one of its segments and sends
// only a descriptor (segment name, offset, size); the replica reads them in
// place. Replies come back the same way in the replica's segments. Each
// segment starts with a header whose atomic state says whether it is in use:
// the owner takes a free one; the one who holds it hands it back when done
// (the client, for a reply, when its output tensors are dropped).
//
// Names are /tandem.PID.N, so that segments left by a run that crashed are
// recognised (their PID is gone) and removed by the next run on the node.

#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace tandem::detail::shm {

constexpr std::uint64_t kMagic = 0x314d48534e415454ULL;  // "TTANSHM1"
constexpr std::size_t kHeaderSize = 64;

struct Header {
  std::uint64_t magic;
  std::atomic<std::uint32_t> in_use;
  std::uint32_t owner_pid;
  std::uint64_t capacity;                 // bytes after the header
  std::atomic<std::uint32_t> holder_pid;  // who must hand it back (0: the owner)
};
static_assert(sizeof(Header) <= kHeaderSize);

/// One mapped segment.
struct Segment {
  std::string name;
  std::byte* base = nullptr;
  std::size_t mapped = 0;
  Header* header() const { return reinterpret_cast<Header*>(base); }
  std::byte* data() const { return base + kHeaderSize; }
  std::size_t capacity() const { return header()->capacity; }
};

/// The segments this process owns.
class OwnPool {
 public:
  static OwnPool& instance();
  /// Most bytes of shared memory this process may create (default 4 GiB).
  void set_budget(std::size_t bytes);
  /// A free segment of at least @p bytes, now marked in use; null when the
  /// budget is spent and every segment is taken. A segment whose holder
  /// (another process) has died counts as free: a client that dies holding
  /// replies does not keep them from the rest of the run.
  Segment* acquire(std::size_t bytes);
  /// Marks @p s free.
  static void release(Segment* s);
  /// Removes every segment (at the end of a run). Safe to call twice.
  void remove_all();
  ~OwnPool();

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Segment>> segments_;
  std::size_t created_bytes_ = 0;
  std::size_t budget_ = std::size_t{4} << 30;
  int next_ = 0;
};

/// Segments of other processes, mapped on first use and kept mapped.
class PeerMaps {
 public:
  static PeerMaps& instance();
  /// The segment called @p name. @throws tandem::error when it cannot be
  /// mapped or is not a Tandem segment.
  const Segment& map(const std::string& name);
  void unmap_all();

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Segment>> maps_;
};

/// Removes segments in /dev/shm left by Tandem processes that are gone.
/// Returns how many it removed.
int remove_stale();

/// Collective over @p comm: one rank per node removes what crashed runs left
/// in its /dev/shm (remove_stale), and the node's ranks wait for it, so
/// that nobody maps a segment that is about to go.
void sweep_nodes(MPI_Comm comm);

}  // namespace tandem::detail::shm
