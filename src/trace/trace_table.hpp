#pragma once
// A row of trace.h5 as it is held in memory, and the HDF5 type that names
// its fields for one event kind. The writer and the report share it.

#include <cstdint>
#include <string>
#include <vector>

#include "hdf5/types.hpp"

namespace tandem::detail::trace {

struct Row {
  std::int64_t t_ns;
  std::int64_t a;
  std::int64_t b;
  std::int32_t rank;
  std::int32_t c;
  std::int32_t d;
  std::int32_t pad;
};

/// The in-memory compound type of kind @p kind's rows: t_ns, rank and the
/// fields the kind uses, under their names.
h5::Compound row_type(int kind);

/// Every row of kind @p kind in trace file @p path (empty if the table is
/// missing). @throws tandem::error when the file cannot be read.
std::vector<Row> read_rows(const std::string& path, int kind);

/// Integer attribute @p name of the file's root group (0 if missing).
std::int64_t read_attribute(const std::string& path, const std::string& name);

/// The integers of dataset @p name in @p path (empty if missing).
std::vector<std::int64_t> read_ints(const std::string& path, const std::string& name);

/// The fixed-length strings of dataset @p name in @p path (empty if missing).
std::vector<std::string> read_strings(const std::string& path, const std::string& name);

}  // namespace tandem::detail::trace
