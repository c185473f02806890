#pragma once
// The replica's side of the direct path (transport/direct_layout.hpp): it
// creates the endpoint, takes the requests tasks write into their slots,
// writes the replies back, and resets the slots of tasks that died or let
// go. Single-threaded: the replica leader's loop calls it.

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "transport/direct_layout.hpp"
#include "transport/staging.hpp"
#include "transport/wire.hpp"

namespace tandem::detail::direct {

/// Where a request came from, for its reply.
struct From {
  int slot = -1;
  std::uint32_t generation = 0;
  int client_rank = -1;   // the task's worker (world rank)
  std::uint32_t pid = 0;  // the task
};

class Endpoint {
 public:
  /// Creates /tandem.PID.direct for replica @p replica of service
  /// @p service. @throws tandem::io_error when it cannot.
  Endpoint(int service, int replica);
  /// Closes: tasks are told, the segment is removed.
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  const std::string& name() const { return name_; }
  /// Leaving kServing wakes every task, so that none waits on us unawares.
  void set_state(State s);
  /// Whether a task rang since the last take(): one load, for every turn.
  bool rang() const { return header_->doorbell.load(std::memory_order_acquire) != seen_; }
  /// Hands each request waiting in the slots to @p take, copied out of the
  /// ring into a pooled buffer; returns how many. A slot whose ring holds
  /// bytes that are no record is reset (its task is told).
  int take(const std::function<void(const From&, wire::Encoded&&)>& take);
  /// Sends @p message to @p to. Held back while that slot's ring is full;
  /// dropped (its shared memory handed back) when the slot was reset since.
  void reply(const From& to, Outgoing message);
  /// Sends what reply() held back; true if anything went.
  bool flush();
  bool holding() const { return held_count_ > 0; }
  /// Resets the slots of tasks that are gone or let go; returns how many.
  int sweep();
  /// Sleeps up to @p ns unless a task rings first (Backoff's pause).
  void sleep(long ns);
  /// Slots in use now.
  int clients() const;

 private:
  struct Held {
    From to;
    Outgoing message;
  };
  void reset(int slot, const char* why);
  bool accept(int slot, std::uint32_t pid);
  bool write_reply(const From& to, Outgoing& message);

  std::string name_;
  EndpointHeader* header_ = nullptr;
  std::size_t mapped_ = 0;
  std::uint32_t seen_ = 0;
  std::uint32_t accepted_pid_[kSlots] = {};  // the claimant checked for each slot
  std::deque<Held> held_[kSlots];
  int held_count_ = 0;
};

}  // namespace tandem::detail::direct
