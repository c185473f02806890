#pragma once
// Tensors in HDF5 files, readable by h5py and h5dump with no Tandem code:
// one dataset per tensor, named after it, with its dtype and shape as HDF5
// types and attributes for the Tandem dtype and the request id. FP16, BF16
// and BYTES, which HDF5 1.10 has no native type for, are stored as unsigned
// integers of the same width with the Tandem dtype in the attribute.

#include <cstdint>
#include <mutex>
#include <string>

#include "tandem/tensor.hpp"

namespace tandem::detail::hdf5 {

/// Writes @p tensors to a new file @p path. @throws tandem::error.
void write(const std::string& path, const TensorList& tensors, std::uint64_t request_id);

/// Reads dataset @p dataset of @p path, which must have @p dtype and
/// @p shape; returns false with @p why saying what differs.
bool read(const std::string& path, const std::string& dataset, DType dtype,
          const std::vector<std::int64_t>& shape, Tensor& out, std::string& why);

/// The HDF5 type a dtype is stored as (an hid_t).
std::int64_t file_type(DType dtype);

/// Debian's HDF5 is not built thread-safe: every HDF5 call in Tandem holds
/// this lock (the recorder writes from a thread of its own).
std::mutex& lock();

/// Turns HDF5's automatic printing of its error stack off (once per
/// process, before any other HDF5 call): every HDF5 failure becomes one
/// error of ours that names the file and the operation. Also turns off
/// HDF5's clean-up at exit, which crashes on a file whose close failed.
void quiet_errors();

}  // namespace tandem::detail::hdf5
