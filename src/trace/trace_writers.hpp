#pragma once
// The trace's two files, written rank by rank on rank 0 so that only one
// rank's events are in memory at a time:
//   trace.h5    one compound table per event kind (/task_start, ...), rows
//               in time order per rank: t_ns, rank and the kind's fields;
//   trace.json  Chrome trace events (Perfetto, chrome://tracing): one
//               process per rank named "rank R role", events in time order.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hdf5/file.hpp"
#include "trace/trace.hpp"
#include "trace/trace_output.hpp"

namespace tandem::detail::trace {

class Writers {
 public:
  /// @throws tandem::error when a file cannot be created.
  Writers(const std::string& run_dir, const Timeline& timeline, const Names& names, bool chrome);
  ~Writers();
  Writers(const Writers&) = delete;
  Writers& operator=(const Writers&) = delete;

  /// Appends rank @p rank's events (on rank 0's timeline, sorted by time).
  void add_rank(int rank, const std::vector<Event>& events);
  /// Closes both files; @p dropped events did not fit in the buffers.
  void finish(std::uint64_t dropped);

 private:
  void add_hdf5(int rank, const std::vector<Event>& events);
  void add_chrome(int rank, const std::vector<Event>& events);
  std::string task_name(std::int64_t instance) const;
  std::string service_name(int service) const;

  const Names& names_;
  std::optional<h5::File> hdf5_file_;
  std::vector<h5::Dataset> tables_;  // per kind
  std::FILE* json_ = nullptr;
  bool first_json_event_ = true;
  std::string json_path_;
  std::string hdf5_path_;
  bool finished_ = false;
};

}  // namespace tandem::detail::trace
