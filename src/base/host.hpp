#pragma once
// This node's name, as a launcher is told it.

#include <string>

namespace tandem::detail {

/// The node's name as the batch system knows it: SLURMD_NODENAME inside a
/// Slurm step (a node's Slurm name need not be its host name, and fake
/// nodes share one host), else the host name. What an MPI command task's
/// launcher is given as its ranks' hosts, and what each rank looks its
/// node's proxy up by (TANDEM_NODE_SOCKETS).
std::string node_name();

}  // namespace tandem::detail
