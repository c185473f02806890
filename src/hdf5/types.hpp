#pragma once
// HDF5 types as Tandem stores its data: integers, tensors' dtypes, and
// compound rows built field by field.

#include <cstddef>
#include <string>

#include "hdf5/library.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail::h5 {

/// Little-endian integers, the same in memory (native) and in the file.
enum class Int { i32, i64, u64 };

/// The HDF5 type a tensor dtype is stored as (a predefined type: not to be
/// closed). FP16, BF16 and BYTES, which HDF5 1.10 has no native type for,
/// are stored as unsigned integers of the same width.
Id stored_type(DType dtype);

/// Whether a dataset of HDF5 type @p type holds values of @p dtype: same
/// class, width and sign.
bool holds(Id type, DType dtype);

/// A compound row type built field by field, for tables of structs.
class Compound {
 public:
  /// A row of @p size bytes (sizeof the struct).
  explicit Compound(std::size_t size);
  /// Adds field @p name at byte @p offset.
  void add(const char* name, std::size_t offset, Int type);
  /// A copy without padding, as a file stores it.
  Compound packed() const;
  Id id() const noexcept { return handle_.id(); }

 private:
  explicit Compound(Handle handle) : handle_(std::move(handle)) {}
  Handle handle_;
};

}  // namespace tandem::detail::h5
