#pragma once
/// @file tensor.hpp
/// Tensors: a data type, a shape and bytes, either owned or a view over
/// memory the caller keeps alive. The data types are those of the KServe v2
/// protocol. Copying a Tensor shares its bytes; clone() copies them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tandem {

namespace detail {
struct Access;
}

/// Element types (KServe v2 names). BYTES is raw bytes, one per element.
enum class DType : std::uint8_t {
  BOOL,
  UINT8,
  UINT16,
  UINT32,
  UINT64,
  INT8,
  INT16,
  INT32,
  INT64,
  FP16,
  BF16,
  FP32,
  FP64,
  BYTES,
};

/// Size of one element in bytes.
std::size_t dtype_size(DType t) noexcept;
/// The KServe v2 name, e.g. "FP32".
const char* dtype_name(DType t) noexcept;
/// The type for a KServe v2 name; empty for an unknown name.
std::optional<DType> dtype_from_name(std::string_view name) noexcept;

/// The DType of a C++ element type (float -> FP32, std::int64_t -> INT64, ...).
template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return DType::BOOL;
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    return DType::UINT8;
  } else if constexpr (std::is_same_v<T, std::uint16_t>) {
    return DType::UINT16;
  } else if constexpr (std::is_same_v<T, std::uint32_t>) {
    return DType::UINT32;
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    return DType::UINT64;
  } else if constexpr (std::is_same_v<T, std::int8_t>) {
    return DType::INT8;
  } else if constexpr (std::is_same_v<T, std::int16_t>) {
    return DType::INT16;
  } else if constexpr (std::is_same_v<T, std::int32_t>) {
    return DType::INT32;
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    return DType::INT64;
  } else if constexpr (std::is_same_v<T, float>) {
    return DType::FP32;
  } else if constexpr (std::is_same_v<T, double>) {
    return DType::FP64;
  } else {
    static_assert(sizeof(T) == 0, "no Tandem dtype for this C++ type");
  }
}

/// A dense, row-major tensor.
class Tensor {
 public:
  /// An empty tensor (no elements, FP32).
  Tensor() = default;

  /// A new tensor that owns zero-filled memory.
  static Tensor zeros(DType dtype, std::vector<std::int64_t> shape);
  /// A view over @p data, which must hold the whole tensor and outlive every
  /// use of the view (and of the requests it is sent with). No copy.
  static Tensor view(DType dtype, std::vector<std::int64_t> shape, void* data);
  /// A read-only view; writing through data() is not allowed.
  static Tensor view(DType dtype, std::vector<std::int64_t> shape, const void* data);
  /// A new tensor holding a copy of @p values. @throws tandem::argument_error if the
  /// shape does not match the number of values.
  template <typename T>
  static Tensor from(const std::vector<T>& values, const std::vector<std::int64_t>& shape) {
    Tensor t = zeros(dtype_of<T>(), shape);
    t.check_count(values.size());
    std::copy(values.begin(), values.end(), static_cast<T*>(t.data()));
    return t;
  }

  DType dtype() const noexcept { return dtype_; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  /// Number of elements.
  std::int64_t numel() const noexcept;
  /// Number of bytes of data.
  std::size_t nbytes() const noexcept { return numel() * dtype_size(dtype_); }
  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }
  /// The data as T*. @throws tandem::argument_error if T does not match dtype().
  template <typename T>
  T* data_as() {
    check_type(dtype_of<T>());
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data_as() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(data_);
  }
  /// The elements copied into a vector. @throws tandem::argument_error on a type
  /// mismatch.
  template <typename T>
  std::vector<T> to_vector() const {
    const T* p = data_as<T>();
    return std::vector<T>(p, p + numel());
  }
  /// A deep copy that owns its memory.
  Tensor clone() const;
  /// "FP32[4, 64]".
  std::string describe() const;

 private:
  friend struct detail::Access;
  // A tensor over @p data that keeps @p owner alive (buffers Tandem pools,
  // shared memory, a model's output); Tandem's own, through detail::Access.
  static Tensor adopt(DType dtype, std::vector<std::int64_t> shape, void* data,
                      std::shared_ptr<void> owner);

  void check_type(DType want) const;
  void check_count(std::size_t n) const;

  DType dtype_ = DType::FP32;
  std::vector<std::int64_t> shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

/// A tensor with the name it has in a service's signature.
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

/// The inputs or outputs of one inference request.
using TensorList = std::vector<NamedTensor>;

/// The tensor called @p name. @throws tandem::argument_error if there is none.
const Tensor& find_tensor(const TensorList& list, const std::string& name);

}  // namespace tandem
