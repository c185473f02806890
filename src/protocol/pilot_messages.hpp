#pragma once
// The pilot's messages between the coordinator and the workers.
//
// These messages are the scheduler's hot path (a null task costs a few
// hundred nanoseconds end to end), so they are flat arrays sent with plain
// MPI, not Boost.Serialization archives; the one-off set-up message uses
// Boost (see run.cpp).
//
//   coordinator -> worker, tags::kWork, int32 array:
//     [kTasks, n, id, attempt, id, attempt, ...]   one-rank tasks, in order
//     [kMulti, id, attempt, n, w0, ..., wn-1, g...] one multi-rank attempt;
//                                                  w* are worker indices, g*
//                                                  the GPUs of each of the
//                                                  task's ranks in turn
//     [kPlaced, id, attempt, g0, g1, ...]          one task with its GPUs
//                                                  (indices into the node's)
//     [kDefine, n, (id, task, index, nbytes, words...) * n]
//                                                  submitted instances, sent
//                                                  before the message that
//                                                  hands them out: their args,
//                                                  JSON packed into int32s
//   steering task's worker <-> coordinator, tags::kSteer / kSteerAnswer,
//     JSON text: {"submit":[{task,args,priority,after,key}...]} -> {"handles":[...]};
//     {"wait":[handles]} -> {"results":[...]}; or {"error":"..."}
//     [kServe, slot]                               serve as elastic replica
//                                                  plan.replicas[slot]
//     [kResume, version]                           back from serving: route
//                                                  with that table or newer
//     [kCancel]                                    the run is interrupted
//     [kStop]                                      the run is over
//   worker -> coordinator, tags::kUpdate, bytes: UpdateHeader, then n records
//     of ResultRecord each followed by reason_len bytes of reason text and
//     result_len bytes of the task's return value (JSON; 0 for none).

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "protocol/tags.hpp"

namespace tandem::detail::protocol {

enum WorkKind : std::int32_t {
  kTasks = 1,
  kMulti = 2,
  kCancel = 3,
  kStop = 4,
  kPlaced = 5,
  kDefine = 6,
  kServe = 7,   // [kServe, slot]: serve as elastic replica plan.replicas[slot] (the worker is idle)
  kResume = 8,  // [kResume, table version]: back from serving; route with that table or newer
};

struct UpdateHeader {
  std::int32_t want = 0;      // tasks wanted; 0: no request, just results
  std::int32_t results = 0;   // records that follow
  std::int32_t idle = 0;      // 1: nothing queued and nothing running
  std::int32_t bye = 0;       // 1: last message, after kStop
  std::int32_t rejoined = 0;  // 1: back from serving an elastic replica, idle
  std::int32_t unused = 0;
  std::int64_t busy_us = 0;  // with bye: time spent running tasks
};

struct ResultRecord {
  std::int32_t id;
  std::int32_t attempt;
  std::int32_t outcome;  // detail::Outcome
  std::int32_t exit_code;
  std::int64_t t_start;
  std::int64_t t_end;
  std::int32_t reason_len;
  std::int32_t result_len = 0;  // the task's return value, JSON, after the reason
};

/// Appends plain values and text to a byte buffer that is reused between
/// messages, so steady-state sending allocates nothing.
class ByteWriter {
 public:
  void clear() { bytes_.clear(); }
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  void put_text(const std::string& s) { bytes_.insert(bytes_.end(), s.begin(), s.end()); }
  template <typename T>
  T* at(std::size_t offset) {
    return reinterpret_cast<T*>(bytes_.data() + offset);
  }
  const std::vector<char>& bytes() const { return bytes_; }
  std::vector<char>& bytes() { return bytes_; }
  std::size_t size() const { return bytes_.size(); }

 private:
  std::vector<char> bytes_;
};

/// Reads what ByteWriter wrote; get() returns false past the end.
class ByteReader {
 public:
  ByteReader(const char* data, std::size_t size) : p_(data), end_(data + size) {}
  template <typename T>
  bool get(T& v) {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(T)) return false;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return true;
  }
  bool get_text(std::size_t n, std::string& s) {
    if (static_cast<std::size_t>(end_ - p_) < n) return false;
    s.assign(p_, n);
    p_ += n;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace tandem::detail::protocol
