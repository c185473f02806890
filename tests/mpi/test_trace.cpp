// The trace's collective parts under MPI: clock alignment and gathering
// every rank's events into trace.h5 on one timeline.

#include <mpi.h>

#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>

#include "support/mpi_session.hpp"
#include "trace/trace.hpp"
#include "trace/trace_output.hpp"
#include "trace/trace_table.hpp"

namespace trace = tandem::detail::trace;
using tandem::test::world_rank;
using tandem::test::world_size;

// Pretending every rank is on a node of its own makes every rank measure
// its offset with ping-pongs. All ranks share one machine's clock here, so
// the true offset is zero and the measurement must find it to within half
// the shortest round trip (well under a millisecond even oversubscribed).
TEST(TraceClocks, PingPongsFindTheOffsetOfASharedClock) {
  std::vector<int> nodes(world_size());
  for (int r = 0; r < world_size(); ++r) nodes[r] = r;
  const std::int64_t zero = trace::clock_ns();
  const trace::Timeline t = trace::align_clocks(MPI_COMM_WORLD, nodes, zero, {});
  EXPECT_LT(std::llabs(t.offset_ns), 1'000'000) << "rank " << world_rank();
  if (world_rank() == 0) EXPECT_EQ(t.offset_ns, 0);
  // Everyone agrees on time zero and its wall-clock time.
  std::int64_t mine[2] = {t.zero_ns, t.zero_epoch_us};
  std::int64_t root[2] = {t.zero_ns, t.zero_epoch_us};
  MPI_Bcast(root, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
  EXPECT_EQ(mine[0], root[0]);
  EXPECT_EQ(mine[1], root[1]);
}

// Every rank records events; rank 0's file has them all, each under the
// rank that recorded it, in time order per rank, on one timeline that
// starts at time zero.
TEST(TraceGather, EveryRanksEventsLandInOneFile) {
  const std::string path = tandem::test::shared_dir();

  std::vector<int> nodes(world_size(), 0);
  const trace::Timeline t = trace::align_clocks(MPI_COMM_WORLD, nodes, trace::clock_ns(), {});
  trace::start(1000);
  const int per_rank = 5 + world_rank();
  for (int i = 0; i < per_rank; ++i) trace::record(trace::kTaskStart, i, 1, world_rank());
  trace::Names names;
  for (int r = 0; r < world_size(); ++r) names.tracks.push_back("rank " + std::to_string(r));
  trace::write(MPI_COMM_WORLD, path, t, names, /*chrome=*/true, {});
  EXPECT_FALSE(trace::g_enabled) << "writing stops the recording on every rank";
  if (world_rank() != 0) return;

  const auto rows = trace::read_rows(path + "/trace.h5", trace::kTaskStart);
  std::size_t expected = 0;
  for (int r = 0; r < world_size(); ++r) expected += 5 + r;
  ASSERT_EQ(rows.size(), expected);
  std::vector<int> seen(world_size(), 0);
  std::vector<std::int64_t> last(world_size(), -1);
  for (const auto& row : rows) {
    ASSERT_GE(row.rank, 0);
    ASSERT_LT(row.rank, world_size());
    EXPECT_EQ(row.c, row.rank) << "the slot field carried the recording rank";
    EXPECT_EQ(row.a, seen[row.rank]) << "events of one rank stay in order";
    EXPECT_GE(row.t_ns, last[row.rank]);
    EXPECT_GE(row.t_ns, -1'000'000) << "events come after time zero (less the offset error)";
    last[row.rank] = row.t_ns;
    ++seen[row.rank];
  }
  EXPECT_TRUE(std::filesystem::exists(path + "/trace.json"));
  EXPECT_EQ(trace::read_strings(path + "/trace.h5", "tracks"), names.tracks);
}
