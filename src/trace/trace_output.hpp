#pragma once
// Bringing every rank's trace to one timeline and into the run directory.

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/backoff.hpp"

namespace tandem::detail::trace {

/// Where each rank's clock stands against rank 0's, and where the run's
/// time zero is, in rank 0's clock and in wall-clock time.
struct Timeline {
  std::int64_t offset_ns = 0;      // this rank's clock minus rank 0's
  std::int64_t zero_ns = 0;        // rank 0's clock at time zero
  std::int64_t zero_epoch_us = 0;  // the wall clock at time zero
  // Rank 0 only, per rank: the offset measured and the round trip it came
  // from; -1 for ranks on rank 0's node, which share its clock.
  std::vector<std::int64_t> offsets_ns;
  std::vector<std::int64_t> rtt_ns;
};

/// Collective over @p world; time zero is @p zero_ns on rank 0. Ranks on
/// rank 0's node share its clock (CLOCK_MONOTONIC is per machine); the
/// others measure their offset with ping-pongs, keeping the one with the
/// shortest round trip.
Timeline align_clocks(MPI_Comm world, const std::vector<int>& node_of_rank, std::int64_t zero_ns,
                      const BackoffSpec& backoff);

/// What rank 0 needs to name the trace's tracks and events.
struct Names {
  std::vector<std::string> tracks;  // per rank: "rank 3 worker"
  std::vector<std::string> tasks;   // per task
  std::vector<int> first_instance;  // per task: its first instance id
  std::vector<std::string> services;
};

/// Collective over @p world: every rank sends its events to rank 0, which
/// writes RUN_DIR/trace.h5 and, when @p chrome, RUN_DIR/trace.json. Stops
/// recording on every rank. Errors are logged (one line naming the file and
/// the operation), never thrown: a trace that cannot be written costs the
/// trace, not the results. Returns false on rank 0 when it could not be
/// written, so that the job's exit status says its records are incomplete.
bool write(MPI_Comm world, const std::string& run_dir, const Timeline& timeline, const Names& names,
           bool chrome, const BackoffSpec& backoff);

}  // namespace tandem::detail::trace
