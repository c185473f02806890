// The built-in models: echo returns its inputs, scale multiplies them, sleep
// waits and then echoes. They measure the runtime's own overhead, and give
// tests models whose every output is known.

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "base/client_env.hpp"
#include "base/raise.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

// Outputs are named after the signature when there is one, else after the
// inputs they echo.
TensorList rename(const ServiceSpec& spec, TensorList tensors) {
  if (!spec.outputs.empty()) {
    if (spec.outputs.size() != tensors.size()) {
      raise<model_error>(
          fmt::format("the model returns {} tensors but the signature names {} outputs",
                      tensors.size(), spec.outputs.size()));
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) tensors[i].name = spec.outputs[i].name;
  }
  return tensors;
}

class EchoBackend : public Backend {
 public:
  explicit EchoBackend(const ServiceSpec& spec) : spec_(spec) {}
  TensorList infer(const TensorList& inputs) override { return rename(spec_, inputs); }

 private:
  const ServiceSpec& spec_;
};

class ScaleBackend : public Backend {
 public:
  explicit ScaleBackend(const ServiceSpec& spec) : spec_(spec) {}
  TensorList infer(const TensorList& inputs) override {
    // A model that takes its rank down, for testing how a job survives one.
    if (spec_.crash_on_rows > 0 && !inputs.empty() && !inputs[0].tensor.shape().empty() &&
        inputs[0].tensor.shape()[0] == spec_.crash_on_rows) {
      std::raise(SIGSEGV);
    }
    TensorList out;
    for (const auto& in : inputs) {
      Tensor t = Tensor::zeros(in.tensor.dtype(), in.tensor.shape());
      const std::int64_t n = in.tensor.numel();
      if (in.tensor.dtype() == DType::FP32) {
        const float* a = in.tensor.data_as<float>();
        float* b = t.data_as<float>();
        const auto f = static_cast<float>(spec_.factor);
        for (std::int64_t i = 0; i < n; ++i) b[i] = a[i] * f;
      } else if (in.tensor.dtype() == DType::FP64) {
        const double* a = in.tensor.data_as<double>();
        double* b = t.data_as<double>();
        for (std::int64_t i = 0; i < n; ++i) b[i] = a[i] * spec_.factor;
      } else {
        throw argument_error(fmt::format("the scale model takes FP32 or FP64, not {} (input '{}')",
                                         dtype_name(in.tensor.dtype()), in.name));
      }
      out.push_back({in.name, std::move(t)});
    }
    return rename(spec_, std::move(out));
  }

 private:
  const ServiceSpec& spec_;
};

// With `delay_sd_us`, each batch's delay is drawn from a normal
// distribution (cut at 0): a stand-in for a model whose answers take
// varying time, such as an LLM's (bench/paper/).
class SleepBackend : public Backend {
 public:
  explicit SleepBackend(const ServiceSpec& spec)
      : spec_(spec),
        random_(static_cast<std::uint32_t>(std::hash<std::string>{}(spec.name)) ^
                static_cast<std::uint32_t>(::getpid())),
        spread_(static_cast<double>(spec.delay_us), static_cast<double>(spec.delay_sd_us)) {
    std::this_thread::sleep_for(std::chrono::microseconds(spec.load_us));
  }
  TensorList infer(const TensorList& inputs) override {
    const std::int64_t rows =
        inputs.empty() || inputs[0].tensor.shape().empty() ? 1 : inputs[0].tensor.shape()[0];
    const double delay = spec_.delay_sd_us > 0 ? std::max(0.0, spread_(random_))
                                               : static_cast<double>(spec_.delay_us);
    std::this_thread::sleep_for(
        std::chrono::microseconds(static_cast<std::int64_t>(delay) + spec_.per_row_us * rows));
    return rename(spec_, inputs);
  }

 private:
  const ServiceSpec& spec_;
  std::mt19937 random_;
  std::normal_distribution<double> spread_;
};

}  // namespace

std::unique_ptr<Backend> make_builtin_backend(const ServiceSpec& spec) {
  switch (spec.backend) {
    case BackendKind::echo:
      return std::make_unique<EchoBackend>(spec);
    case BackendKind::scale:
      return std::make_unique<ScaleBackend>(spec);
    case BackendKind::sleep:
      return std::make_unique<SleepBackend>(spec);
    default:
      raise<model_error>(fmt::format("service '{}': backend '{}' is not a built-in test model",
                                     spec.name, name_of(spec.backend)));
  }
}

std::unique_ptr<Backend> load_torchscript_backend(const ServiceSpec& spec) {
  const std::string path = plugin_path("libtandem_torch.so");
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    raise<environment_error>(
        fmt::format("service '{}': the torchscript backend is not available ({}); build "
                    "Tandem with libtorch (Debian: libtorch-dev, TANDEM_WITH_TORCH=ON)",
                    spec.name, ::dlerror()));
  }
  auto make = reinterpret_cast<decltype(&tandem_make_torchscript_backend)>(
      ::dlsym(handle, "tandem_make_torchscript_backend"));
  if (!make)
    raise<environment_error>(fmt::format("{} lacks tandem_make_torchscript_backend", path));
  char why[2048] = {0};
  Backend* b = make(&spec, why, sizeof why);
  if (!b) raise<model_error>(why);
  return std::unique_ptr<Backend>(b);
}

}  // namespace tandem::detail
