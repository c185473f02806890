#pragma once
// The direct path between executable tasks and a replica on their node
// (issue 16): one shared-memory segment per replica leader, /tandem.PID.direct,
// holding a table of slots. A task claims a slot and from then on writes its
// requests into the slot's request ring and reads its replies from the reply
// ring: the same wire messages as over MPI (tensors of the shared-memory
// threshold and up as descriptors into the sender's segments), with a futex
// word each way so that a sleeping side is woken by one syscall and a
// spinning one by none. Each request then costs one wake-up each way, where
// the worker's proxy costs two.
//
// Authentication is the segment's mode (0600: only our uid can open it); the
// owner checks the slot's claimant is alive and resets slots of tasks that
// died or let go.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace tandem::detail::direct {

constexpr std::uint64_t kMagic = 0x31524944444e4154ULL;  // "TANDDIR1"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kSlots = 32;
constexpr std::uint32_t kRingBytes = 128 * 1024;
/// The largest message a ring carries; larger ones take the proxy.
constexpr std::uint32_t kMaxRecord = kRingBytes / 2 - 16;

/// What the replica tells tasks about itself (EndpointHeader::state).
enum State : std::uint32_t {
  kServing = 0,   // take requests
  kDraining = 1,  // stopping or FAILED: send new requests through the proxy
  kClosed = 2,    // gone: what was not answered will not be
};

/// A single-producer single-consumer ring of length-prefixed records.
/// head and tail only grow; a record never wraps (a wrap marker fills the
/// end of the ring instead).
struct Ring {
  alignas(64) std::atomic<std::uint64_t> head;  // bytes written, by the producer
  alignas(64) std::atomic<std::uint64_t> tail;  // bytes read, by the consumer
  alignas(64) std::byte bytes[kRingBytes];
};

struct Slot {
  alignas(64) std::atomic<std::uint32_t> owner_pid;   // 0: free; a task claims it by CAS
  std::atomic<std::uint32_t> released;                // the task let go: the replica resets it
  std::atomic<std::uint32_t> generation;              // bumped by every reset
  std::atomic<std::int32_t> client_rank;              // the task's worker, for trace and records
  alignas(64) std::atomic<std::uint32_t> reply_bell;  // futex word: replies written
  std::atomic<std::uint32_t> task_sleeping;           // the task waits on reply_bell
  Ring requests;                                      // task -> replica
  Ring replies;                                       // replica -> task
};

struct EndpointHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t owner_pid;
  std::uint32_t slots;
  std::uint32_t ring_bytes;
  std::int32_t service;
  std::int32_t replica;
  alignas(64) std::atomic<std::uint32_t> state;     // State
  alignas(64) std::atomic<std::uint32_t> doorbell;  // futex word: requests written
  std::atomic<std::uint32_t> replica_sleeping;      // the replica waits on doorbell
  Slot slot[kSlots];
};

/// Ring operations. The producer's side:
/// Appends one record; false when the ring has no room for it now (or
/// never: longer than kMaxRecord).
bool ring_write(Ring& r, const void* data, std::size_t size);
/// The consumer's side: the next record, without taking it. 0 when the
/// ring is empty; kBadRecord for bytes that are no record (the producer
/// wrote garbage), in which case nothing more in the ring can be trusted.
constexpr std::size_t kBadRecord = ~std::size_t{0};
std::size_t ring_peek(const Ring& r, const std::byte*& data);
/// Takes the record ring_peek returned.
void ring_pop(Ring& r, std::size_t size);
/// Empties the ring (its owner, when nobody writes to it).
void ring_reset(Ring& r);

/// Futex waits on a word in shared memory. futex_wait returns when woken,
/// when *word != expected, or after @p timeout_ns.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, long timeout_ns);
void futex_wake_all(std::atomic<std::uint32_t>& word);

/// Bumps @p bell and wakes whoever sleeps on it, if anyone says so
/// (@p sleeping). The bump comes first: with the sleeper's flag set before
/// it looks at the bell, one of the two always sees the other.
inline void ring_bell(std::atomic<std::uint32_t>& bell,
                      const std::atomic<std::uint32_t>& sleeping) {
  bell.fetch_add(1, std::memory_order_seq_cst);
  if (sleeping.load(std::memory_order_seq_cst) != 0) futex_wake_all(bell);
}

/// The segment's name for the replica leader of process @p pid.
std::string endpoint_name(int pid);

}  // namespace tandem::detail::direct
