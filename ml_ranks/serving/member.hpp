#pragma once
// A rank of a multi-rank replica other than the leader.

#include "job/job.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "ml_ranks/serving/model_versions.hpp"

namespace tandem::detail {

/// Runs this rank's share of each batch with the version the leader names,
/// and loads and drops versions when the leader says (a load on a thread of
/// its own, reported on kReplicaLoaded when done). Returns when the leader
/// stops the replica.
void serve_as_member(const Job& job, VersionSet& versions, const BackendContext& context);

}  // namespace tandem::detail
