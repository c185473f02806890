#include "ml_ranks/serving/make_backend.hpp"

#include <fmt/format.h>

#include "base/raise.hpp"
#include "ml_ranks/bridge/remote_backend.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

std::unique_ptr<Backend> make_backend(const ServiceSpec& spec, const BackendContext& context) {
  switch (spec.backend) {
    case BackendKind::torchscript:
      return load_torchscript_backend(spec);
    case BackendKind::process:
      return make_process_backend(spec, context);
    case BackendKind::remote:
      return make_remote_backend(spec, context.service);
    case BackendKind::sleep:
      if (spec.fail_load_from > 0 && context.replica >= spec.fail_load_from) {
        raise<model_error>(
            fmt::format("replica {} of service '{}' cannot load its model "
                        "(fail_load_from = {}, a test setting)",
                        context.replica, spec.name, spec.fail_load_from));
      }
      return make_builtin_backend(spec);
    case BackendKind::replay:
      return make_replay_backend(spec);
    case BackendKind::echo:
    case BackendKind::scale:
      return make_builtin_backend(spec);
  }
  return make_builtin_backend(spec);  // not reached: the switch names every backend
}

}  // namespace tandem::detail
