#pragma once
// How idle ranks wait, chosen per node. Spinning is the lowest latency when
// a rank has a core to itself, and ruinous when ranks share cores (the rank
// that spins takes the core from the one it waits for), so `[job] idle =
// "auto"` looks at the CPUs the node's ranks may run on.

#include <mpi.h>

#include "base/backoff.hpp"
#include "config/workflow.hpp"

namespace tandem::detail {

/// `auto`: dedicated when the node's ranks have a CPU each — at least as
/// many CPUs in the union of their affinity masks as ranks on the node —
/// shared otherwise; `shared` and `dedicated` as asked.
IdleMode choose_idle_mode(IdleMode asked, int ranks_on_node, int cpus_of_node_ranks);

/// The waits of @p mode: shared keeps the defaults (a few polls, then
/// sleeps); dedicated spins for a million polls before it sleeps. A
/// [job.backoff] the workflow gave is used as it is.
BackoffSpec backoff_for(IdleMode mode, const JobSpec& job);

/// The waits of a rank that nothing waits on (the coordinator: workers
/// queue their tasks ahead, clients send to replicas directly): in either
/// mode it pauses after its first empty poll, since its spinning would only
/// take a core from the ranks and processes that do the work. A
/// [job.backoff] the workflow gave is used as it is.
BackoffSpec off_path_backoff(const JobSpec& job);

/// choose_idle_mode for this rank's node: the node's ranks gather their
/// affinity masks over @p comm. Collective.
IdleMode idle_mode_of_node(MPI_Comm comm, IdleMode asked, int* ranks_on_node, int* cpus);

}  // namespace tandem::detail
