// The TorchScript backend, built as its own plugin (libtandem_torch.so) so
// that only ranks serving a torchscript model load libtorch. This is the one
// translation unit that includes <torch/script.h>; it takes ~15 s to compile.

#include <ATen/Parallel.h>
#include <torch/script.h>

#include <cstring>
#include <string>

#include <fmt/format.h>

#include "base/access.hpp"
#include "base/raise.hpp"
#include "ml_ranks/backends/backend.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

c10::ScalarType to_torch(DType t) {
  switch (t) {
    case DType::BOOL:
      return torch::kBool;
    case DType::UINT8:
      return torch::kUInt8;
    case DType::INT8:
      return torch::kInt8;
    case DType::INT16:
      return torch::kInt16;
    case DType::INT32:
      return torch::kInt32;
    case DType::INT64:
      return torch::kInt64;
    case DType::FP16:
      return torch::kFloat16;
    case DType::BF16:
      return torch::kBFloat16;
    case DType::FP32:
      return torch::kFloat32;
    case DType::FP64:
      return torch::kFloat64;
    default:
      throw argument_error(fmt::format("libtorch has no tensor type for {}", dtype_name(t)));
  }
}

DType from_torch(c10::ScalarType t) {
  switch (t) {
    case torch::kBool:
      return DType::BOOL;
    case torch::kUInt8:
      return DType::UINT8;
    case torch::kInt8:
      return DType::INT8;
    case torch::kInt16:
      return DType::INT16;
    case torch::kInt32:
      return DType::INT32;
    case torch::kInt64:
      return DType::INT64;
    case torch::kFloat16:
      return DType::FP16;
    case torch::kBFloat16:
      return DType::BF16;
    case torch::kFloat32:
      return DType::FP32;
    case torch::kFloat64:
      return DType::FP64;
    default:
      raise<model_error>(fmt::format("the model returned an unsupported tensor type"));
  }
}

class TorchScriptBackend : public Backend {
 public:
  explicit TorchScriptBackend(const ServiceSpec& spec) : spec_(spec), device_(spec.device) {
    // One thread per rank: ranks already fill the cores, and libtorch's own
    // pool would oversubscribe them.
    at::set_num_threads(1);
    torch::NoGradGuard no_grad;
    module_ = torch::jit::load(spec.model, device_);
    module_.eval();
  }

  TensorList infer(const TensorList& inputs) override {
    try {
      return run(inputs);
    } catch (const c10::Error& e) {
      raise<model_error>(fmt::format("the model failed: {}", e.what_without_backtrace()));
    }
  }

 private:
  TensorList run(const TensorList& inputs) {
    torch::NoGradGuard no_grad;
    std::vector<torch::jit::IValue> args;
    args.reserve(inputs.size());
    for (const auto& in : inputs) {
      const auto& shape = in.tensor.shape();
      at::Tensor t = torch::from_blob(const_cast<void*>(in.tensor.data()),
                                      std::vector<int64_t>(shape.begin(), shape.end()),
                                      torch::TensorOptions().dtype(to_torch(in.tensor.dtype())));
      args.emplace_back(device_.is_cpu() ? t : t.to(device_));
    }
    torch::jit::IValue result = module_.forward(args);
    std::vector<at::Tensor> outs;
    if (result.isTensor()) {
      outs.push_back(result.toTensor());
    } else if (result.isTuple()) {
      for (const auto& e : result.toTuple()->elements()) outs.push_back(e.toTensor());
    } else if (result.isTensorList()) {
      for (const auto& e : result.toTensorList()) outs.push_back(e);
    } else {
      raise<model_error>("the model's forward() must return a tensor or a tuple of tensors");
    }
    if (outs.size() != spec_.outputs.size()) {
      raise<model_error>(
          fmt::format("the model returned {} tensor(s) but the signature names {} output(s)",
                      outs.size(), spec_.outputs.size()));
    }
    TensorList out;
    for (std::size_t i = 0; i < outs.size(); ++i) {
      // The output keeps libtorch's memory alive instead of copying it.
      auto held = std::make_shared<at::Tensor>(outs[i].to(torch::kCPU).contiguous());
      std::vector<std::int64_t> shape(held->sizes().begin(), held->sizes().end());
      void* data = held->data_ptr();
      out.push_back(
          {spec_.outputs[i].name, Access::adopt(from_torch(held->scalar_type()), std::move(shape),
                                                data, std::shared_ptr<void>(held, data))});
    }
    return out;
  }

  const ServiceSpec& spec_;
  torch::Device device_;
  torch::jit::script::Module module_;
};

}  // namespace
}  // namespace tandem::detail

extern "C" tandem::detail::Backend* tandem_make_torchscript_backend(
    const tandem::detail::ServiceSpec* spec, char* error, int error_size) {
  try {
    return new tandem::detail::TorchScriptBackend(*spec);
  } catch (const c10::Error& e) {
    std::snprintf(error, error_size, "service '%s': cannot load TorchScript model '%s': %s",
                  spec->name.c_str(), spec->model.c_str(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::snprintf(error, error_size, "service '%s': cannot load TorchScript model '%s': %s",
                  spec->name.c_str(), spec->model.c_str(), e.what());
  }
  return nullptr;
}
