#pragma once
// The coordinator of an SPMD session: the services without tasks.

#include "job/job.hpp"

namespace tandem::detail {

/// Hears the services' states, publishes routing, shows progress and
/// metrics, and stops the services once every application rank has said it
/// is done (Session::finalize). Writes summary.json. Returns 0.
int coordinate_session(const Job& job);

}  // namespace tandem::detail
