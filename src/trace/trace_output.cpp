#include "trace/trace_output.hpp"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

#include "base/clock.hpp"
#include "base/mpi_wait.hpp"
#include "protocol/tags.hpp"
#include "trace/trace.hpp"
#include "trace/trace_writers.hpp"

namespace tandem::detail::trace {

namespace {
constexpr int kPingPongs = 8;

void send_wait(const void* data, int count, MPI_Datatype type, int to, int tag, MPI_Comm comm,
               const BackoffSpec& backoff) {
  MPI_Request req;
  TANDEM_MPI_CHECK(MPI_Isend(data, count, type, to, tag, comm, &req));
  wait_request(req, backoff);
}

void recv_wait(void* data, int count, MPI_Datatype type, int from, int tag, MPI_Comm comm,
               const BackoffSpec& backoff) {
  MPI_Request req;
  TANDEM_MPI_CHECK(MPI_Irecv(data, count, type, from, tag, comm, &req));
  wait_request(req, backoff);
}
}  // namespace

Timeline align_clocks(MPI_Comm world, const std::vector<int>& node_of_rank, std::int64_t zero_ns,
                      const BackoffSpec& backoff) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  Timeline t;
  if (rank == 0) {
    t.zero_ns = zero_ns;
    t.zero_epoch_us = now_us() - (clock_ns() - zero_ns) / 1000;
    t.offsets_ns.assign(size, 0);
    t.rtt_ns.assign(size, -1);
    for (int r = 1; r < size; ++r) {
      if (node_of_rank[r] == node_of_rank[0]) continue;
      std::int64_t best_rtt = std::numeric_limits<std::int64_t>::max();
      std::int64_t best_offset = 0;
      for (int k = 0; k < kPingPongs; ++k) {
        const std::int64_t t0 = clock_ns();
        send_wait(&t0, 1, MPI_INT64_T, r, tags::kClock, world, backoff);
        std::int64_t remote = 0;
        recv_wait(&remote, 1, MPI_INT64_T, r, tags::kClock, world, backoff);
        const std::int64_t t1 = clock_ns();
        if (t1 - t0 < best_rtt) {
          best_rtt = t1 - t0;
          best_offset = remote - (t0 + t1) / 2;
        }
      }
      send_wait(&best_offset, 1, MPI_INT64_T, r, tags::kClock, world, backoff);
      t.offsets_ns[r] = best_offset;
      t.rtt_ns[r] = best_rtt;
    }
  } else if (node_of_rank[rank] != node_of_rank[0]) {
    for (int k = 0; k < kPingPongs; ++k) {
      std::int64_t ping = 0;
      recv_wait(&ping, 1, MPI_INT64_T, 0, tags::kClock, world, backoff);
      const std::int64_t now = clock_ns();
      send_wait(&now, 1, MPI_INT64_T, 0, tags::kClock, world, backoff);
    }
    recv_wait(&t.offset_ns, 1, MPI_INT64_T, 0, tags::kClock, world, backoff);
  }
  std::int64_t zero[2] = {t.zero_ns, t.zero_epoch_us};
  TANDEM_MPI_CHECK(MPI_Bcast(zero, 2, MPI_INT64_T, 0, world));
  t.zero_ns = zero[0];
  t.zero_epoch_us = zero[1];
  return t;
}

bool write(MPI_Comm world, const std::string& run_dir, const Timeline& timeline, const Names& names,
           bool chrome, const BackoffSpec& backoff) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  // Whether anyone traced at all: tracing is on for every rank or none.
  int on = g_enabled ? 1 : 0;
  TANDEM_MPI_CHECK(MPI_Bcast(&on, 1, MPI_INT, 0, world));
  if (!on) return true;
  g_enabled = false;  // nothing may write while the buffer is read

  // Own events onto rank 0's timeline, in time order.
  std::vector<Event> mine(g_buffer.events, g_buffer.events + recorded());
  const std::int64_t shift = timeline.offset_ns + timeline.zero_ns;
  for (Event& e : mine) e.t_ns -= shift;
  std::stable_sort(mine.begin(), mine.end(),
                   [](const Event& x, const Event& y) { return x.t_ns < y.t_ns; });
  std::int64_t header[2] = {static_cast<std::int64_t>(mine.size()),
                            static_cast<std::int64_t>(dropped())};
  stop();

  if (rank != 0) {
    send_wait(header, 2, MPI_INT64_T, 0, tags::kEvents, world, backoff);
    send_wait(mine.data(), static_cast<int>(mine.size() * sizeof(Event)), MPI_BYTE, 0,
              tags::kEvents, world, backoff);
    return true;
  }

  std::unique_ptr<Writers> out;
  bool written = false;
  try {
    out = std::make_unique<Writers>(run_dir, timeline, names, chrome);
  } catch (const std::exception& e) {
    spdlog::error("cannot write the trace: {}", e.what());
  }
  std::uint64_t total = 0;
  std::uint64_t lost = 0;
  for (int r = 0; r < size; ++r) {
    std::vector<Event> events;
    if (r == 0) {
      events.swap(mine);  // rank 0's own events, once
      lost += static_cast<std::uint64_t>(header[1]);
    } else {
      std::int64_t h[2] = {0, 0};
      recv_wait(h, 2, MPI_INT64_T, r, tags::kEvents, world, backoff);
      events.resize(static_cast<std::size_t>(h[0]));
      recv_wait(events.data(), static_cast<int>(events.size() * sizeof(Event)), MPI_BYTE, r,
                tags::kEvents, world, backoff);
      lost += static_cast<std::uint64_t>(h[1]);
    }
    total += events.size();
    if (!out) continue;
    try {
      out->add_rank(r, events);
    } catch (const std::exception& e) {
      spdlog::error("cannot write the trace: {}", e.what());
      out.reset();
    }
  }
  if (out) {
    try {
      out->finish(lost);
      written = true;
      spdlog::info("trace: {} event(s) in {}/trace.h5{}", total, run_dir,
                   chrome ? " and trace.json" : "");
    } catch (const std::exception& e) {
      spdlog::error("cannot write the trace: {}", e.what());
    }
  }
  if (lost > 0) {
    spdlog::warn(
        "trace: {} event(s) did not fit in the trace buffers and were dropped; raise [job.trace] "
        "max_events",
        lost);
  }
  return written;
}

}  // namespace tandem::detail::trace
