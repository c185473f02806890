#include "ml_ranks/serving/recorder.hpp"

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tandem/error.hpp"

namespace tandem::detail {

namespace {

// Appends @p t along dimension 0 of dataset @p name, made on first use:
// chunks of about 1 MiB of rows, unlimited along dimension 0.
void append(h5::File& file, const std::string& name, const Tensor& t) {
  const auto& shape = t.shape();
  if (shape.empty()) throw argument_error(fmt::format("{} is a scalar; nothing to append", name));
  const std::vector<std::uint64_t> row_shape(shape.begin() + 1, shape.end());
  const h5::Id type = h5::stored_type(t.dtype());
  std::size_t row_bytes = dtype_size(t.dtype());
  for (const auto d : row_shape) row_bytes *= d;
  const bool made = !file.has(name);
  h5::Dataset set = made ? file.create_growing(name, type, row_shape,
                                               (1 << 20) / std::max<std::size_t>(row_bytes, 1))
                         : file.open_dataset(name);
  // The dtype by name: FP16, BF16 and BYTES are stored as unsigned
  // integers, and a replay must give them back as they came.
  if (made) set.set_attribute("dtype", std::string(dtype_name(t.dtype())));
  const auto have = set.shape();
  if (std::vector<std::uint64_t>(have.begin() + 1, have.end()) != row_shape) {
    throw argument_error(
        fmt::format("{} changed its shape; rows of {} do not fit", name, t.describe()));
  }
  set.append(type, static_cast<std::uint64_t>(shape[0]), t.data());
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
  file_.reset();
}

void Recorder::submit(const TensorList& inputs, const TensorList& outputs,
                      const std::vector<std::int64_t>& request_rows) {
  Batch b;
  b.request_rows = request_rows;
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
  if (!file_) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    file_.emplace(h5::File::create(path_, /*latest_format=*/swmr_));  // SWMR needs HDF5 1.10's
  }
  for (const auto& t : b.inputs) append(*file_, "/inputs/" + t.name, t.tensor);
  for (const auto& t : b.outputs) append(*file_, "/outputs/" + t.name, t.tensor);
  // Where each request's rows start and end, so that a replay can answer
  // request by request (backend = "replay").
  if (!b.request_rows.empty()) {
    std::vector<std::int64_t> rows = b.request_rows;
    append(*file_, "/requests/rows",
           Tensor::view(DType::INT64, {static_cast<std::int64_t>(rows.size())}, rows.data()));
  }
  if (swmr_ && !swmr_started_) {
    // Every dataset exists now: from here on a reader (h5py with
    // swmr=True, e.g. a training task) sees each batch once it is flushed.
    file_->start_swmr_write();
    swmr_started_ = true;
  }
  file_->flush();
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
