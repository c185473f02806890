#include "transport/hdf5_io.hpp"

#include <hdf5.h>

#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"
#include "transport/buffer_pool.hpp"

namespace tandem::detail::hdf5 {

// HDF5 prints its own error stack to stderr by default; our messages say
// what went wrong, so silence it once. And no clean-up at exit: a file
// whose close failed (a full disk) stays open inside HDF5, and closing it
// again at exit crashes the process ("infinite loop closing library").
// Tandem closes every file it writes itself.
// In a thread-safe HDF5 the error stack, and whether it is printed, is per
// thread: each thread that calls HDF5 (the recorder's writer) is silenced
// on its first call here.
void quiet_errors() {
  static const bool done = [] {
    H5dont_atexit();
    return true;
  }();
  (void)done;
  thread_local const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
}

namespace {

struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0) close(id);
  }
};

void write_string_attribute(hid_t obj, const char* name, const std::string& value) {
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, value.size() + 1);
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle attr{H5Acreate2(obj, name, type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  H5Awrite(attr.id, type.id, value.c_str());
}

std::string read_string_attribute(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return {};
  Handle attr{H5Aopen(obj, name, H5P_DEFAULT), H5Aclose};
  Handle type{H5Aget_type(attr.id), H5Tclose};
  const std::size_t n = H5Tget_size(type.id);
  std::string s(n, '\0');
  Handle mem{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(mem.id, n);
  H5Aread(attr.id, mem.id, s.data());
  s.resize(std::strlen(s.c_str()));
  return s;
}

}  // namespace

std::mutex& lock() {
  static std::mutex m;
  return m;
}

std::int64_t file_type(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
    case DType::UINT8:
      return H5T_STD_U8LE;
    case DType::UINT16:
      return H5T_STD_U16LE;
    case DType::UINT32:
      return H5T_STD_U32LE;
    case DType::UINT64:
      return H5T_STD_U64LE;
    case DType::INT8:
      return H5T_STD_I8LE;
    case DType::INT16:
      return H5T_STD_I16LE;
    case DType::INT32:
      return H5T_STD_I32LE;
    case DType::INT64:
      return H5T_STD_I64LE;
    case DType::FP16:  // no native half types in HDF5 1.10: stored as their bits
    case DType::BF16:
      return H5T_STD_U16LE;
    case DType::FP32:
      return H5T_IEEE_F32LE;
    case DType::FP64:
      return H5T_IEEE_F64LE;
    case DType::BYTES:
      return H5T_STD_U8LE;
  }
  return H5T_STD_U8LE;
}

void write(const std::string& path, const TensorList& tensors, std::uint64_t request_id) {
  std::lock_guard guard(lock());
  quiet_errors();
  Handle file{H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) throw io_error(path, fmt::format("cannot create HDF5 file {}", path));
  for (const auto& t : tensors) {
    std::vector<hsize_t> dims(t.tensor.shape().begin(), t.tensor.shape().end());
    Handle space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
    const hid_t type = file_type(t.tensor.dtype());
    Handle ds{H5Dcreate2(file.id, ("/" + t.name).c_str(), type, space.id, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT),
              H5Dclose};
    if (ds.id < 0)
      throw io_error(path, fmt::format("cannot create dataset /{} in {}", t.name, path));
    if (t.tensor.nbytes() > 0 &&
        H5Dwrite(ds.id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.tensor.data()) < 0) {
      throw io_error(path,
                     fmt::format("cannot write dataset /{} to {} (disk full?)", t.name, path));
    }
    write_string_attribute(ds.id, "tandem_dtype", dtype_name(t.tensor.dtype()));
    Handle space1{H5Screate(H5S_SCALAR), H5Sclose};
    Handle attr{H5Acreate2(ds.id, "request_id", H5T_STD_U64LE, space1.id, H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose};
    H5Awrite(attr.id, H5T_NATIVE_UINT64, &request_id);
  }
  if (H5Fflush(file.id, H5F_SCOPE_GLOBAL) < 0) {
    throw io_error(path, fmt::format("cannot flush HDF5 file {} (disk full?)", path));
  }
}

bool read(const std::string& path, const std::string& dataset, DType dtype,
          const std::vector<std::int64_t>& shape, Tensor& out, std::string& why) {
  std::lock_guard guard(lock());
  quiet_errors();
  Handle file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) {
    why = fmt::format("cannot open HDF5 file {}", path);
    return false;
  }
  Handle ds{H5Dopen2(file.id, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) {
    why = fmt::format("HDF5 file {} has no dataset {}", path, dataset);
    return false;
  }
  Handle space{H5Dget_space(ds.id), H5Sclose};
  const int ndim = H5Sget_simple_extent_ndims(space.id);
  std::vector<hsize_t> dims(std::max(ndim, 0));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  const std::vector<std::int64_t> have(dims.begin(), dims.end());
  if (have != shape) {
    why = fmt::format("dataset {} in {} has shape [{}] but the request says [{}]", dataset, path,
                      fmt::join(have, ", "), fmt::join(shape, ", "));
    return false;
  }
  Handle type{H5Dget_type(ds.id), H5Tclose};
  const std::string tag = read_string_attribute(ds.id, "tandem_dtype");
  const bool same_class = H5Tget_class(type.id) == H5Tget_class(file_type(dtype)) &&
                          H5Tget_size(type.id) == dtype_size(dtype) &&
                          (H5Tget_class(type.id) != H5T_INTEGER ||
                           H5Tget_sign(type.id) == H5Tget_sign(file_type(dtype)));
  if (!same_class || (!tag.empty() && tag != dtype_name(dtype))) {
    why = fmt::format("dataset {} in {} does not hold {} values{}", dataset, path,
                      dtype_name(dtype), tag.empty() ? "" : fmt::format(" (it holds {})", tag));
    return false;
  }
  Tensor t = Tensor::zeros(dtype, shape);
  if (t.nbytes() > 0 &&
      H5Dread(ds.id, file_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()) < 0) {
    why = fmt::format("cannot read dataset {} of {}", dataset, path);
    return false;
  }
  out = std::move(t);
  return true;
}

}  // namespace tandem::detail::hdf5
