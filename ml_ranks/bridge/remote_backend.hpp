#pragma once
// The bridge: a service whose backend is "remote" has one rank, the bridge,
// whose replica forwards every request to an endpoint outside the job
// (KServe v2 or OpenAI-compatible) over HTTPS and turns the answers back
// into replies.

#include <memory>

#include "config/workflow.hpp"
#include "ml_ranks/backends/backend.hpp"

namespace tandem::detail {

/// The remote backend of service @p service (its index, for the trace).
/// @throws tandem::error when the endpoint's settings cannot be used.
std::unique_ptr<Backend> make_remote_backend(const ServiceSpec& spec, int service);

}  // namespace tandem::detail
