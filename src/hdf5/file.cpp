#include "hdf5/file.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "tandem/error.hpp"

namespace tandem::detail::h5 {

namespace {

Handle string_type(std::size_t width) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), width);
  return type;
}

Handle simple_space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>* max = nullptr) {
  return Handle(
      H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max ? max->data() : nullptr),
      H5Sclose);
}

// Link creation that makes missing groups on the way ("/inputs/x").
Handle with_groups() {
  Handle props(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(props.id(), 1);
  return props;
}

void write_attribute(const Object& obj, const char* name, hid_t file_type, hid_t memory_type,
                     const void* value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj.id(), name, file_type, space.id(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.valid() || H5Awrite(attr.id(), memory_type, value) < 0) {
    throw io_error(obj.path(), fmt::format("cannot write attribute {} in {}", name, obj.path()));
  }
}

}  // namespace

void Object::set_attribute(const char* name, std::int64_t value) {
  Access access;
  write_attribute(*this, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void Object::set_attribute(const char* name, const std::string& value) {
  Access access;
  Handle type = string_type(value.size() + 1);
  write_attribute(*this, name, type.id(), type.id(), value.c_str());
}

std::int64_t Object::int_attribute(const char* name) const {
  Access access;
  std::int64_t value = 0;
  if (H5Aexists(id(), name) <= 0) return value;
  Handle attr(H5Aopen(id(), name, H5P_DEFAULT), H5Aclose);
  H5Aread(attr.id(), H5T_NATIVE_INT64, &value);
  return value;
}

std::string Object::string_attribute(const char* name) const {
  Access access;
  if (H5Aexists(id(), name) <= 0) return {};
  Handle attr(H5Aopen(id(), name, H5P_DEFAULT), H5Aclose);
  Handle stored(H5Aget_type(attr.id()), H5Tclose);
  const std::size_t n = H5Tget_size(stored.id());
  std::string s(n, '\0');
  Handle memory = string_type(n);
  H5Aread(attr.id(), memory.id(), s.data());
  s.resize(std::strlen(s.c_str()));
  return s;
}

std::vector<std::uint64_t> Dataset::shape() const {
  Access access;
  Handle space(H5Dget_space(id()), H5Sclose);
  const int ndim = H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(ndim, 0)));
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

Handle Dataset::type() const {
  Access access;
  return Handle(H5Dget_type(id()), H5Tclose);
}

void Dataset::write(Id memory_type, const void* data) {
  Access access;
  if (H5Dwrite(id(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    throw io_error(path_, fmt::format("cannot write {} to {} (is the disk full?)", name_, path_));
  }
}

void Dataset::read(Id memory_type, void* data) const {
  Access access;
  if (H5Dread(id(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    throw io_error(path_, fmt::format("cannot read {} of {}", name_, path_));
  }
}

void Dataset::append(Id memory_type, std::uint64_t rows, const void* data) {
  Access access;
  const std::vector<std::uint64_t> have = shape();
  std::vector<hsize_t> grown(have.begin(), have.end());
  grown[0] += rows;
  std::vector<hsize_t> start(have.size(), 0);
  start[0] = have[0];
  std::vector<hsize_t> count = grown;
  count[0] = rows;
  bool ok = H5Dset_extent(id(), grown.data()) >= 0;
  if (ok) {
    Handle file_space(H5Dget_space(id()), H5Sclose);
    H5Sselect_hyperslab(file_space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                        nullptr);
    Handle memory_space = simple_space(count);
    ok = H5Dwrite(id(), memory_type, memory_space.id(), file_space.id(), H5P_DEFAULT, data) >= 0;
  }
  if (!ok) {
    throw io_error(path_,
                   fmt::format("cannot append to {} in {} (is the disk full?)", name_, path_));
  }
}

File File::create(const std::string& path, bool latest_format) {
  Access access;
  Handle access_props(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (latest_format) {
    H5Pset_libver_bounds(access_props.id(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  }
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access_props.id()), H5Fclose);
  if (!file.valid()) throw io_error(path, fmt::format("cannot create HDF5 file {}", path));
  return File(std::move(file), path);
}

File File::open(const std::string& path) {
  Access access;
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) throw io_error(path, fmt::format("cannot open HDF5 file {}", path));
  return File(std::move(file), path);
}

bool File::has(const std::string& name) const {
  Access access;
  // H5Lexists fails, rather than saying no, on a missing group on the way.
  return H5Lexists(id(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::members(const std::string& group) const {
  std::vector<std::string> names;
  if (!has(group)) return names;
  Access access;
  Handle g(H5Gopen2(id(), group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) throw io_error(path_, fmt::format("{}: cannot open group {}", path_, group));
  H5G_info_t info;
  if (H5Gget_info(g.id(), &info) < 0) {
    throw io_error(path_, fmt::format("{}: cannot list group {}", path_, group));
  }
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n =
        H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) throw io_error(path_, fmt::format("{}: cannot list group {}", path_, group));
    std::string name(static_cast<std::size_t>(n), '\0');
    H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                       static_cast<std::size_t>(n) + 1, H5P_DEFAULT);
    names.push_back(std::move(name));
  }
  return names;
}

Dataset File::create_dataset(const std::string& name, Id type,
                             const std::vector<std::uint64_t>& shape) {
  Access access;
  Handle space = simple_space({shape.begin(), shape.end()});
  Handle links = with_groups();
  Handle set(H5Dcreate2(id(), name.c_str(), type, space.id(), links.id(), H5P_DEFAULT, H5P_DEFAULT),
             H5Dclose);
  if (!set.valid()) {
    throw io_error(path_, fmt::format("cannot create dataset {} in {}", name, path_));
  }
  return Dataset(std::move(set), path_, name);
}

Dataset File::create_growing(const std::string& name, Id type,
                             const std::vector<std::uint64_t>& row_shape,
                             std::uint64_t chunk_rows) {
  Access access;
  std::vector<hsize_t> dims{0};
  dims.insert(dims.end(), row_shape.begin(), row_shape.end());
  std::vector<hsize_t> max = dims;
  max[0] = H5S_UNLIMITED;
  std::vector<hsize_t> chunk = dims;
  chunk[0] = std::max<hsize_t>(chunk_rows, 1);
  Handle space = simple_space(dims, &max);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(props.id(), static_cast<int>(chunk.size()), chunk.data());
  Handle links = with_groups();
  Handle set(H5Dcreate2(id(), name.c_str(), type, space.id(), links.id(), props.id(), H5P_DEFAULT),
             H5Dclose);
  if (!set.valid()) {
    throw io_error(path_, fmt::format("cannot create dataset {} in {}", name, path_));
  }
  return Dataset(std::move(set), path_, name);
}

Dataset File::open_dataset(const std::string& name) const {
  Access access;
  Handle set(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!set.valid()) throw io_error(path_, fmt::format("{} has no dataset {}", path_, name));
  return Dataset(std::move(set), path_, name);
}

void File::write_column(const std::string& name, const std::vector<std::int32_t>& values) {
  Access access;
  Dataset set = create_dataset(name, H5T_STD_I32LE, {values.size()});
  if (!values.empty()) set.write(H5T_NATIVE_INT32, values.data());
}

void File::write_column(const std::string& name, const std::vector<std::int64_t>& values) {
  Access access;
  Dataset set = create_dataset(name, H5T_STD_I64LE, {values.size()});
  if (!values.empty()) set.write(H5T_NATIVE_INT64, values.data());
}

// Fixed-width strings, as wide as the longest plus its NUL: h5py reads
// them as bytes, h5dump prints them.
void File::write_column(const std::string& name, const std::vector<std::string>& values) {
  Access access;
  std::size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size() + 1);
  std::vector<char> packed(width * std::max<std::size_t>(values.size(), 1), '\0');
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::copy(values[i].begin(), values[i].end(),
              packed.begin() + static_cast<std::ptrdiff_t>(i * width));
  }
  Handle type = string_type(width);
  Dataset set = create_dataset(name, type.id(), {values.size()});
  if (!values.empty()) set.write(type.id(), packed.data());
}

std::vector<std::int64_t> File::read_ints(const std::string& name) const {
  Access access;
  std::vector<std::int64_t> out;
  if (!has(name)) return out;
  const Dataset set = open_dataset(name);
  const auto shape = set.shape();
  out.resize(shape.empty() ? 0 : shape[0]);
  if (!out.empty()) set.read(H5T_NATIVE_INT64, out.data());
  return out;
}

std::vector<std::string> File::read_strings(const std::string& name) const {
  Access access;
  std::vector<std::string> out;
  if (!has(name)) return out;
  const Dataset set = open_dataset(name);
  const auto shape = set.shape();
  const std::size_t n = shape.empty() ? 0 : shape[0];
  const Handle stored = set.type();
  const std::size_t width = H5Tget_size(stored.id());
  std::vector<char> packed(width * n + 1, '\0');
  Handle memory = string_type(width);
  if (n > 0) set.read(memory.id(), packed.data());
  for (std::size_t i = 0; i < n; ++i) {
    const char* s = packed.data() + i * width;
    out.emplace_back(s, strnlen(s, width));
  }
  return out;
}

void File::start_swmr_write() {
  Access access;
  if (H5Fstart_swmr_write(id()) < 0) {
    throw io_error(path_, fmt::format("cannot make {} readable while written (SWMR)", path_));
  }
}

void File::flush() {
  Access access;
  if (H5Fflush(id(), H5F_SCOPE_LOCAL) < 0) {
    throw io_error(path_, fmt::format("cannot write {} (flushing it; is the disk full?)", path_));
  }
}

void File::close() {
  if (!handle_.close()) {
    throw io_error(path_, fmt::format("cannot write {} (closing it; is the disk full?)", path_));
  }
}

}  // namespace tandem::detail::h5
