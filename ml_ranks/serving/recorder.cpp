#include "ml_ranks/serving/recorder.hpp"

#include <hdf5.h>

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tandem/error.hpp"
#include "transport/hdf5_io.hpp"

namespace tandem::detail {

namespace {

// Appends @p t along dimension 0 of dataset @p name (created on first use:
// chunked, unlimited along dimension 0). @p path names the file in errors.
void append(hid_t file, const std::string& path, const std::string& name, const Tensor& t) {
  const auto& shape = t.shape();
  if (shape.empty()) throw error(fmt::format("{} is a scalar; nothing to append", name));
  const int ndim = static_cast<int>(shape.size());
  const hid_t type = static_cast<hid_t>(hdf5::file_type(t.dtype()));
  hid_t ds = -1;
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) {
    ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  } else {
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    std::vector<hsize_t> maxdims = dims;
    dims[0] = 0;
    maxdims[0] = H5S_UNLIMITED;
    std::vector<hsize_t> chunk(shape.begin(), shape.end());
    // Chunks of about 1 MiB along the rows.
    std::size_t row_bytes = dtype_size(t.dtype());
    for (int d = 1; d < ndim; ++d) row_bytes *= shape[d];
    chunk[0] = std::max<hsize_t>(1, (1 << 20) / std::max<std::size_t>(row_bytes, 1));
    const hid_t space = H5Screate_simple(ndim, dims.data(), maxdims.data());
    const hid_t props = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(props, ndim, chunk.data());
    const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    ds = H5Dcreate2(file, name.c_str(), type, space, lcpl, props, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(props);
    H5Sclose(space);
  }
  if (ds < 0) throw io_error(path, fmt::format("cannot create dataset {} in {}", name, path));
  const hid_t old_space = H5Dget_space(ds);
  std::vector<hsize_t> have(ndim);
  const int old_ndim = H5Sget_simple_extent_ndims(old_space);
  H5Sget_simple_extent_dims(old_space, have.data(), nullptr);
  H5Sclose(old_space);
  bool same = old_ndim == ndim;
  for (int d = 1; same && d < ndim; ++d) same = have[d] == static_cast<hsize_t>(shape[d]);
  if (!same) {
    H5Dclose(ds);
    throw error(fmt::format("{} changed its shape; rows of {} do not fit", name, t.describe()));
  }
  std::vector<hsize_t> grown = have;
  grown[0] = have[0] + shape[0];
  herr_t rc = H5Dset_extent(ds, grown.data());
  const hid_t fspace = H5Dget_space(ds);
  std::vector<hsize_t> start(ndim, 0);
  start[0] = have[0];
  std::vector<hsize_t> count(shape.begin(), shape.end());
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  const hid_t mspace = H5Screate_simple(ndim, count.data(), nullptr);
  if (rc >= 0) rc = H5Dwrite(ds, type, mspace, fspace, H5P_DEFAULT, t.data());
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(ds);
  if (rc < 0) {
    throw io_error(path, fmt::format("cannot append to {} in {} (is the disk full?)", name, path));
  }
}

}  // namespace

Recorder::Recorder(std::string path, bool swmr, std::size_t max_queued_bytes)
    : path_(std::move(path)), max_bytes_(max_queued_bytes), swmr_(swmr) {
  stats_.file = path_;
  thread_ = std::thread([this] { run(); });
}

Recorder::~Recorder() {
  finish();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (file_ >= 0) {
    std::lock_guard guard(hdf5::lock());
    H5Fclose(static_cast<hid_t>(file_));
  }
}

void Recorder::submit(const TensorList& inputs, const TensorList& outputs) {
  Batch b;
  for (const auto& t : inputs) b.bytes += t.tensor.nbytes();
  for (const auto& t : outputs) b.bytes += t.tensor.nbytes();
  {
    std::lock_guard lock(mutex_);
    if (queued_bytes_ + b.bytes > max_bytes_) {
      ++stats_.dropped;
      return;
    }
  }
  // The copies are made on the serving thread, but outside the lock.
  for (const auto& t : inputs) b.inputs.push_back({t.name, t.tensor.clone()});
  for (const auto& t : outputs) b.outputs.push_back({t.name, t.tensor.clone()});
  {
    std::lock_guard lock(mutex_);
    queued_bytes_ += b.bytes;
    queue_.push_back(std::move(b));
  }
  cv_.notify_all();
}

RecorderStats Recorder::finish() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
  return stats_;
}

void Recorder::write(const Batch& b) {
  std::lock_guard guard(hdf5::lock());
  hdf5::quiet_errors();  // this thread's HDF5 error stack
  if (file_ < 0) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    // SWMR needs the newest file format (HDF5 1.10).
    const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (swmr_) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    file_ = H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file_ < 0) throw io_error(path_, fmt::format("cannot create {}", path_));
  }
  const auto f = static_cast<hid_t>(file_);
  for (const auto& t : b.inputs) append(f, path_, "/inputs/" + t.name, t.tensor);
  for (const auto& t : b.outputs) append(f, path_, "/outputs/" + t.name, t.tensor);
  if (swmr_ && !swmr_started_) {
    // Every dataset exists now: from here on a reader (h5py with
    // swmr=True, e.g. a training task) sees each batch once it is flushed.
    if (H5Fstart_swmr_write(f) < 0) {
      throw io_error(path_, fmt::format("cannot make {} readable while written (SWMR)", path_));
    }
    swmr_started_ = true;
  }
  if (H5Fflush(f, H5F_SCOPE_LOCAL) < 0) {
    throw io_error(path_,
                   fmt::format("cannot write {} (flushing a batch; is the disk full?)", path_));
  }
}

void Recorder::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    std::string error;
    try {
      write(b);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    writing_ = false;
    queued_bytes_ -= b.bytes;
    if (error.empty()) {
      if (!b.inputs.empty() && !b.inputs[0].tensor.shape().empty()) {
        stats_.rows += b.inputs[0].tensor.shape()[0];
      }
    } else {
      if (stats_.errors == 0) spdlog::error("recording to {} failed: {}", path_, error);
      ++stats_.errors;
      stats_.last_error = error;
    }
    cv_.notify_all();
  }
}

}  // namespace tandem::detail
