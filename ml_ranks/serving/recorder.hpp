#pragma once
// Recording a service's traffic: every batch's inputs and outputs appended to
// chunked, extendible HDF5 datasets (/inputs/NAME and /outputs/NAME, one
// row per request row), one file per replica, so that a run leaves the
// training data for the next model. Writing happens on a thread of its own
// behind a bounded queue: serving never waits for the disk. When the queue
// is full the batch is dropped and counted; a write that fails (a full disk)
// is logged once and counted, never fatal.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hdf5/file.hpp"
#include "tandem/tensor.hpp"

namespace tandem::detail {

struct RecorderStats {
  std::string file;
  long long rows = 0;     // rows written
  long long dropped = 0;  // batches not recorded because the queue was full
  long long errors = 0;   // writes that failed
  std::string last_error;
};

class Recorder {
 public:
  /// @param max_queued_bytes how much may wait for the disk before batches
  /// are dropped.
  /// @param swmr readable while it is written (HDF5 single-writer
  /// multiple-reader): after the first batch has made every dataset, no new
  /// one may be made, so only for services with a signature.
  explicit Recorder(std::string path, bool swmr = false,
                    std::size_t max_queued_bytes = std::size_t{256} << 20);
  ~Recorder();  // writes what is queued, then closes the file
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  /// Queues a copy of one batch; never blocks on the disk. @p request_rows:
  /// the rows of each request in the batch, in order (/requests/rows).
  void submit(const TensorList& inputs, const TensorList& outputs,
              const std::vector<std::int64_t>& request_rows = {});
  /// Waits for the queue to empty and returns the counters.
  RecorderStats finish();

 private:
  struct Batch {
    TensorList inputs;
    TensorList outputs;
    std::vector<std::int64_t> request_rows;
    std::size_t bytes = 0;
  };
  void run();
  void write(const Batch& b);

  std::string path_;
  std::size_t max_bytes_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::size_t queued_bytes_ = 0;
  bool stopping_ = false;
  bool writing_ = false;
  RecorderStats stats_;
  std::optional<h5::File> file_;  // made by the first batch
  bool swmr_ = false;
  bool swmr_started_ = false;
  std::thread thread_;
};

}  // namespace tandem::detail
