#pragma once
// Tensors in HDF5 files, readable by h5py and h5dump with no Tandem code:
// one dataset per tensor, named after it, with its dtype and shape as HDF5
// types and attributes for the Tandem dtype and the request id. FP16, BF16
// and BYTES, which HDF5 1.10 has no native type for, are stored as unsigned
// integers of the same width with the Tandem dtype in the attribute
// (h5::stored_type).

#include <cstdint>
#include <string>

#include "tandem/tensor.hpp"

namespace tandem::detail::hdf5 {

/// Writes @p tensors to a new file @p path. @throws tandem::io_error.
void write(const std::string& path, const TensorList& tensors, std::uint64_t request_id);

/// Reads dataset @p dataset of @p path, which must have @p dtype and
/// @p shape; returns false with @p why saying what differs.
bool read(const std::string& path, const std::string& dataset, DType dtype,
          const std::vector<std::int64_t>& shape, Tensor& out, std::string& why);

}  // namespace tandem::detail::hdf5
