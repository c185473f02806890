#pragma once
// The one place that knows every kind of backend.

#include <memory>

#include "config/workflow.hpp"
#include "ml_ranks/backends/backend.hpp"

namespace tandem::detail {

/// Creates and loads the backend of @p spec on this rank (models are loaded
/// here). @throws tandem::error with the reason when it cannot load.
std::unique_ptr<Backend> make_backend(const ServiceSpec& spec, const BackendContext& context);

}  // namespace tandem::detail
