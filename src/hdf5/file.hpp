#pragma once
// HDF5 files and datasets, as Tandem writes and reads them: whole 1-d
// columns of integers and strings, scalar attributes, tensors, and tables
// that grow by rows. Every failure throws tandem::io_error naming the file
// and the operation; HDF5 prints nothing.

#include <cstdint>
#include <string>
#include <vector>

#include "hdf5/library.hpp"
#include "hdf5/types.hpp"

namespace tandem::detail::h5 {

/// An HDF5 dataset, or a file's root group, with attributes.
class Object {
 public:
  /// Sets scalar attribute @p name (replacing none: set each once).
  void set_attribute(const char* name, std::int64_t value);
  void set_attribute(const char* name, const std::string& value);
  /// Integer attribute @p name (0 if missing), string attribute (empty).
  std::int64_t int_attribute(const char* name) const;
  std::string string_attribute(const char* name) const;

  Id id() const noexcept { return handle_.id(); }
  const std::string& path() const noexcept { return path_; }

 protected:
  Object(Handle handle, std::string path) : handle_(std::move(handle)), path_(std::move(path)) {}
  Handle handle_;
  std::string path_;  // the file, for messages
};

/// A dataset: its extent, type, whole reads and writes, and row appends
/// along dimension 0 for one made growing.
class Dataset : public Object {
 public:
  /// The extent, one entry per dimension.
  std::vector<std::uint64_t> shape() const;
  /// The stored type (caller closes: a Handle).
  Handle type() const;
  /// Writes the whole dataset from @p data, laid out as @p memory_type.
  void write(Id memory_type, const void* data);
  /// Reads the whole dataset into @p data as @p memory_type.
  void read(Id memory_type, void* data) const;
  /// Appends @p rows rows along dimension 0 from @p data: the other
  /// dimensions are the dataset's own.
  void append(Id memory_type, std::uint64_t rows, const void* data);

 private:
  friend class File;
  Dataset(Handle handle, std::string path, std::string name)
      : Object(std::move(handle), std::move(path)), name_(std::move(name)) {}
  std::string name_;
};

/// An HDF5 file, open for writing (create) or reading (open).
class File : public Object {
 public:
  /// Creates (truncates) @p path. @p latest_format picks HDF5 1.10's file
  /// format, which SWMR needs.
  static File create(const std::string& path, bool latest_format = false);
  /// Opens @p path to read.
  static File open(const std::string& path);

  /// Whether the file has a dataset or group at @p name.
  bool has(const std::string& name) const;
  /// The names of the members of group @p group, in name order (empty
  /// when there is no such group).
  std::vector<std::string> members(const std::string& group) const;

  /// A new dataset of @p type and extent @p shape, made whole by write().
  /// Missing groups on the way are created.
  Dataset create_dataset(const std::string& name, Id type, const std::vector<std::uint64_t>& shape);
  /// A new dataset that starts empty and grows along dimension 0 by
  /// Dataset::append; each row has extent @p row_shape, chunks hold
  /// @p chunk_rows rows.
  Dataset create_growing(const std::string& name, Id type,
                         const std::vector<std::uint64_t>& row_shape, std::uint64_t chunk_rows);
  Dataset open_dataset(const std::string& name) const;

  /// Writes a whole 1-d column of integers or of fixed-width strings.
  void write_column(const std::string& name, const std::vector<std::int32_t>& values);
  void write_column(const std::string& name, const std::vector<std::int64_t>& values);
  void write_column(const std::string& name, const std::vector<std::string>& values);
  /// Reads a 1-d column back (empty when it is missing).
  std::vector<std::int64_t> read_ints(const std::string& name) const;
  std::vector<std::string> read_strings(const std::string& name) const;

  /// From now on readers that open the file with SWMR see each flush.
  void start_swmr_write();
  /// Pushes what was written to the disk.
  void flush();
  /// Closes the file, checking that its last writes reached the disk.
  void close();

 private:
  using Object::Object;
};

}  // namespace tandem::detail::h5
