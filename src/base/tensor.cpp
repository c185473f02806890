#include "tandem/tensor.hpp"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem {

namespace {
struct DTypeInfo {
  DType type;
  const char* name;
  std::size_t size;
};
constexpr DTypeInfo kTypes[] = {
    {DType::BOOL, "BOOL", 1},     {DType::UINT8, "UINT8", 1},   {DType::UINT16, "UINT16", 2},
    {DType::UINT32, "UINT32", 4}, {DType::UINT64, "UINT64", 8}, {DType::INT8, "INT8", 1},
    {DType::INT16, "INT16", 2},   {DType::INT32, "INT32", 4},   {DType::INT64, "INT64", 8},
    {DType::FP16, "FP16", 2},     {DType::BF16, "BF16", 2},     {DType::FP32, "FP32", 4},
    {DType::FP64, "FP64", 8},     {DType::BYTES, "BYTES", 1},
};
}  // namespace

std::size_t dtype_size(DType t) noexcept {
  return kTypes[static_cast<int>(t)].size;
}
const char* dtype_name(DType t) noexcept {
  return kTypes[static_cast<int>(t)].name;
}

std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  for (const auto& info : kTypes) {
    if (name == info.name) return info.type;
  }
  return std::nullopt;
}

std::int64_t Tensor::numel() const noexcept {
  std::int64_t n = 1;
  for (std::int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::zeros(DType dtype, std::vector<std::int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  for (std::int64_t d : t.shape_) {
    if (d < 0)
      throw argument_error(fmt::format("tensor shape has a negative dimension: {}", t.describe()));
  }
  const std::size_t n = t.nbytes();
  // 64-byte alignment suits vector units and the MPI library alike.
  void* p = std::aligned_alloc(64, ((n + 63) / 64) * 64 + 64);
  if (!p) throw environment_error(fmt::format("cannot allocate {} bytes for a tensor", n));
  std::memset(p, 0, n);
  t.owner_ = std::shared_ptr<void>(p, std::free);
  t.data_ = p;
  return t;
}

Tensor Tensor::view(DType dtype, std::vector<std::int64_t> shape, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  return t;
}

Tensor Tensor::view(DType dtype, std::vector<std::int64_t> shape, const void* data) {
  return view(dtype, std::move(shape), const_cast<void*>(data));
}

Tensor Tensor::adopt(DType dtype, std::vector<std::int64_t> shape, void* data,
                     std::shared_ptr<void> owner) {
  Tensor t = view(dtype, std::move(shape), data);
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = zeros(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.data_, data_, nbytes());
  return t;
}

std::string Tensor::describe() const {
  return fmt::format("{}[{}]", dtype_name(dtype_), fmt::join(shape_, ", "));
}

void Tensor::check_type(DType want) const {
  if (want != dtype_) {
    throw argument_error(fmt::format("tensor {} accessed as {}", describe(), dtype_name(want)));
  }
}

void Tensor::check_count(std::size_t n) const {
  if (static_cast<std::int64_t>(n) != numel()) {
    throw argument_error(fmt::format("{} values do not fill a tensor of shape {}", n, describe()));
  }
}

const Tensor& find_tensor(const TensorList& list, const std::string& name) {
  for (const auto& t : list) {
    if (t.name == name) return t.tensor;
  }
  std::vector<std::string> names;
  for (const auto& t : list) names.push_back(t.name);
  throw argument_error(
      fmt::format("no tensor named '{}' (have: {})", name, fmt::join(names, ", ")));
}

}  // namespace tandem
