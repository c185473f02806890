#include "trace/trace_table.hpp"

#include <cstddef>

#include "hdf5/file.hpp"
#include "trace/trace.hpp"

namespace tandem::detail::trace {

h5::Compound row_type(int kind) {
  const KindInfo& k = kind_info(kind);
  h5::Compound t(sizeof(Row));
  t.add("t_ns", offsetof(Row, t_ns), h5::Int::i64);
  t.add("rank", offsetof(Row, rank), h5::Int::i32);
  if (k.a) t.add(k.a, offsetof(Row, a), h5::Int::i64);
  if (k.b) t.add(k.b, offsetof(Row, b), h5::Int::i64);
  if (k.c) t.add(k.c, offsetof(Row, c), h5::Int::i32);
  if (k.d) t.add(k.d, offsetof(Row, d), h5::Int::i32);
  return t;
}

std::vector<Row> read_rows(const std::string& path, int kind) {
  const h5::File file = h5::File::open(path);
  const char* name = kind_info(kind).name;
  std::vector<Row> rows;
  if (!file.has(name)) return rows;
  const h5::Dataset table = file.open_dataset(name);
  rows.resize(table.shape().at(0));
  if (!rows.empty()) table.read(row_type(kind).id(), rows.data());
  return rows;
}

std::int64_t read_attribute(const std::string& path, const std::string& name) {
  return h5::File::open(path).int_attribute(name.c_str());
}

std::vector<std::int64_t> read_ints(const std::string& path, const std::string& name) {
  return h5::File::open(path).read_ints(name);
}

std::vector<std::string> read_strings(const std::string& path, const std::string& name) {
  return h5::File::open(path).read_strings(name);
}

}  // namespace tandem::detail::trace
