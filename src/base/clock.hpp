#pragma once
// Time stamps: wall-clock microseconds since the epoch, so that records of
// different ranks and runs can be compared and read by people.

#include <chrono>
#include <cstdint>

namespace tandem::detail {

inline std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace tandem::detail
