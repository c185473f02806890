#include "ml_ranks/serving/make_backend.hpp"

#include "ml_ranks/bridge/remote_backend.hpp"

namespace tandem::detail {

std::unique_ptr<Backend> make_backend(const ServiceSpec& spec, const BackendContext& context) {
  switch (spec.backend) {
    case BackendKind::torchscript:
      return load_torchscript_backend(spec);
    case BackendKind::process:
      return make_process_backend(spec, context);
    case BackendKind::remote:
      return make_remote_backend(spec, context.service);
    case BackendKind::echo:
    case BackendKind::scale:
    case BackendKind::sleep:
      return make_builtin_backend(spec);
  }
  return make_builtin_backend(spec);  // not reached: the switch names every backend
}

}  // namespace tandem::detail
