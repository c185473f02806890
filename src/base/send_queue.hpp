#pragma once
// Non-blocking sends whose bytes must live until MPI is done with them.
// Each entry keeps its payload beside its request; progress() forgets the
// ones that have completed, oldest first. A deque, because its elements
// stay where they are when others are added or removed, so the buffer a
// send reads from never moves.

#include <mpi.h>

#include <deque>
#include <utility>

#include "base/backoff.hpp"
#include "base/mpi_check.hpp"

namespace tandem::detail {

template <typename Payload>
class SendQueue {
 public:
  /// Keeps @p payload until its send completes. Returns the kept payload
  /// (send from its memory) and the request to start the send with.
  std::pair<Payload&, MPI_Request&> add(Payload payload) {
    entries_.push_back({MPI_REQUEST_NULL, std::move(payload)});
    return {entries_.back().payload, entries_.back().request};
  }

  /// Forgets the sends that have completed, in order: one still in flight
  /// keeps those behind it (they are rarely done first, and cheap to keep).
  void progress() {
    while (!entries_.empty()) {
      int done = 0;
      TANDEM_MPI_CHECK(MPI_Test(&entries_.front().request, &done, MPI_STATUS_IGNORE));
      if (!done) return;
      entries_.pop_front();
    }
  }

  bool empty() const noexcept { return entries_.empty(); }

  /// Waits, backing off, until every send has completed.
  void wait_all(const BackoffSpec& backoff) {
    wait_until(backoff, [&] {
      progress();
      return empty();
    });
  }

 private:
  struct Entry {
    MPI_Request request = MPI_REQUEST_NULL;
    Payload payload;
  };
  std::deque<Entry> entries_;
};

}  // namespace tandem::detail
