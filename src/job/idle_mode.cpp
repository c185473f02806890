#include "job/idle_mode.hpp"

#include <sched.h>

#include <vector>

#include "base/mpi_check.hpp"

namespace tandem::detail {

namespace {
// Polls before an off-path rank's first pause. Each poll is an MPI call
// that yields when Open MPI yields, and the coordinator polled 200 times
// per message: 200 system calls per /bin/true task, taken from the
// processes the tasks start.
constexpr int kOffPathSpin = 0;
}  // namespace

IdleMode choose_idle_mode(IdleMode asked, int ranks_on_node, int cpus_of_node_ranks) {
  if (asked != IdleMode::automatic) return asked;
  return ranks_on_node <= cpus_of_node_ranks ? IdleMode::dedicated : IdleMode::shared;
}

BackoffSpec backoff_for(IdleMode mode, const JobSpec& job) {
  if (job.backoff_given || mode != IdleMode::dedicated) return job.backoff;
  BackoffSpec b = job.backoff;
  b.spin = 1'000'000;  // polls before the first sleep (the most [job.backoff] allows)
  return b;
}

BackoffSpec off_path_backoff(const JobSpec& job) {
  if (job.backoff_given) return job.backoff;
  BackoffSpec b;
  b.spin = kOffPathSpin;
  return b;
}

IdleMode idle_mode_of_node(MPI_Comm comm, IdleMode asked, int* ranks_on_node, int* cpus) {
  MPI_Comm node;
  TANDEM_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int size = 0;
  MPI_Comm_size(node, &size);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (sched_getaffinity(0, sizeof mine, &mine) != 0) CPU_SET(0, &mine);
  std::vector<cpu_set_t> all(static_cast<std::size_t>(size));
  TANDEM_MPI_CHECK(
      MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, node));
  MPI_Comm_free(&node);
  cpu_set_t any;
  CPU_ZERO(&any);
  for (cpu_set_t& s : all) CPU_OR(&any, &any, &s);
  *ranks_on_node = size;
  *cpus = CPU_COUNT(&any);
  return choose_idle_mode(asked, size, *cpus);
}

}  // namespace tandem::detail
