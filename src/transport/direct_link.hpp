#pragma once
// The task's side of the direct path (transport/direct_layout.hpp): a slot
// claimed in a replica's endpoint, requests written into it and replies
// read from it. The C API's client (capi/proxy_client.hpp) uses one per
// node-local replica and falls back to the worker's proxy whenever a link
// cannot take a request.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "transport/direct_layout.hpp"
#include "transport/wire.hpp"

namespace tandem::detail::direct {

class Link {
 public:
  /// Opens endpoint @p name and claims a slot in it for a task of worker
  /// rank @p client_rank. @throws tandem::io_error when the endpoint is not
  /// there, not ours, or has no free slot.
  Link(const std::string& name, int client_rank);
  /// Lets go of the slot; the replica resets it.
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  /// Whether the replica takes new requests.
  bool serving() const;
  /// Writes @p message and rings; false when the ring has no room for it.
  bool post(const wire::Encoded& message);
  /// The next reply, copied out of the ring; false when there is none.
  bool take(wire::Encoded& out);
  /// Waits until the replica may have written a reply: spins for up to
  /// @p spin_ns, then sleeps on the futex, at most @p timeout_ns in all.
  void wait(long spin_ns, long timeout_ns);
  /// Why the replica will not answer what is outstanding — it died, closed,
  /// or reset our slot — or empty while it still may.
  std::string lost() const;
  /// Whether the replica's process has gone (one of lost()'s reasons).
  bool replica_dead() const;
  int replica_pid() const { return static_cast<int>(header_->owner_pid); }

 private:
  std::string name_;
  EndpointHeader* header_ = nullptr;
  std::size_t mapped_ = 0;
  Slot* slot_ = nullptr;
  std::uint32_t generation_ = 0;
};

}  // namespace tandem::detail::direct
