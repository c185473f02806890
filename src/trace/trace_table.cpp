#include "trace/trace_table.hpp"

#include <hdf5.h>

#include <cstddef>
#include <mutex>

#include <fmt/format.h>

#include "tandem/error.hpp"
#include "trace/trace.hpp"
#include "transport/hdf5_io.hpp"

namespace tandem::detail::trace {

std::int64_t row_type(int kind) {
  const KindInfo& k = kind_info(kind);
  const hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(Row));
  H5Tinsert(t, "t_ns", offsetof(Row, t_ns), H5T_NATIVE_INT64);
  H5Tinsert(t, "rank", offsetof(Row, rank), H5T_NATIVE_INT32);
  if (k.a) H5Tinsert(t, k.a, offsetof(Row, a), H5T_NATIVE_INT64);
  if (k.b) H5Tinsert(t, k.b, offsetof(Row, b), H5T_NATIVE_INT64);
  if (k.c) H5Tinsert(t, k.c, offsetof(Row, c), H5T_NATIVE_INT32);
  if (k.d) H5Tinsert(t, k.d, offsetof(Row, d), H5T_NATIVE_INT32);
  return t;
}

namespace {
hid_t open_quietly(const std::string& path) {
  hdf5::quiet_errors();
  return H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
}

struct File {
  hid_t id;
  explicit File(const std::string& path) : id(open_quietly(path)) {
    if (id < 0) throw io_error(path, fmt::format("cannot open the trace {}", path));
  }
  ~File() { H5Fclose(id); }
};
}  // namespace

std::vector<Row> read_rows(const std::string& path, int kind) {
  std::lock_guard<std::mutex> hold(hdf5::lock());
  File file(path);
  const char* name = kind_info(kind).name;
  std::vector<Row> rows;
  if (H5Lexists(file.id, name, H5P_DEFAULT) <= 0) return rows;
  const hid_t set = H5Dopen2(file.id, name, H5P_DEFAULT);
  const hid_t space = H5Dget_space(set);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  rows.resize(n);
  const hid_t type = row_type(kind);
  const herr_t rc = n > 0 ? H5Dread(set, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) : 0;
  H5Tclose(type);
  H5Sclose(space);
  H5Dclose(set);
  if (rc < 0) throw io_error(path, fmt::format("cannot read the table {} of {}", name, path));
  return rows;
}

std::int64_t read_attribute(const std::string& path, const std::string& name) {
  std::lock_guard<std::mutex> hold(hdf5::lock());
  File file(path);
  std::int64_t value = 0;
  if (H5Aexists(file.id, name.c_str()) <= 0) return value;
  const hid_t attr = H5Aopen(file.id, name.c_str(), H5P_DEFAULT);
  H5Aread(attr, H5T_NATIVE_INT64, &value);
  H5Aclose(attr);
  return value;
}

std::vector<std::int64_t> read_ints(const std::string& path, const std::string& name) {
  std::lock_guard<std::mutex> hold(hdf5::lock());
  File file(path);
  std::vector<std::int64_t> out;
  if (H5Lexists(file.id, name.c_str(), H5P_DEFAULT) <= 0) return out;
  const hid_t set = H5Dopen2(file.id, name.c_str(), H5P_DEFAULT);
  const hid_t space = H5Dget_space(set);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  out.resize(n);
  if (n > 0) H5Dread(set, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data());
  H5Sclose(space);
  H5Dclose(set);
  return out;
}

std::vector<std::string> read_strings(const std::string& path, const std::string& name) {
  std::lock_guard<std::mutex> hold(hdf5::lock());
  File file(path);
  std::vector<std::string> out;
  if (H5Lexists(file.id, name.c_str(), H5P_DEFAULT) <= 0) return out;
  const hid_t set = H5Dopen2(file.id, name.c_str(), H5P_DEFAULT);
  const hid_t file_type = H5Dget_type(set);
  const std::size_t width = H5Tget_size(file_type);
  const hid_t space = H5Dget_space(set);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  std::vector<char> packed(width * n + 1, '\0');
  const hid_t mem = H5Tcopy(H5T_C_S1);
  H5Tset_size(mem, width);
  if (n > 0) H5Dread(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed.data());
  for (hsize_t i = 0; i < n; ++i) {
    const char* s = packed.data() + i * width;
    out.emplace_back(s, strnlen(s, width));
  }
  H5Tclose(mem);
  H5Sclose(space);
  H5Tclose(file_type);
  H5Dclose(set);
  return out;
}

}  // namespace tandem::detail::trace
