#include "trace/trace.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <new>
#include <sstream>
#include <string>

namespace tandem::detail::trace {

bool g_enabled = false;
Buffer g_buffer;

namespace {
constexpr std::size_t kPrefaultEvents = std::size_t{1} << 18;  // 8 MiB

// What each field holds, per kind: the column names of trace.h5.
constexpr KindInfo kKindInfo[kKindCount] = {
    {"task_dispatch", "first_instance", "count", "worker", nullptr},
    {"task_start", "instance", "attempt", "slot", nullptr},
    {"task_end", "instance", "attempt", "outcome", nullptr},
    {"request_send", "request", "bytes", "service", "replica"},
    {"request_queue", "request", "bytes", "client", "service"},
    {"request_batch", "request", "batch", "client", "service"},
    {"batch_compute", "batch", "duration_ns", "rows", "service"},
    {"request_reply", "request", "version", "client", "service"},
    {"reply_receive", "request", "version", "service", nullptr},
    {"service_state", "replica", "load_us", "service", "state"},
    {"bridge_retry", "request", "attempt", "status", "service"},
    {"phase", "phase", "value", "replica", nullptr},
    {"model_switch", "version", "load_ns", "replica", "service"},
    {"collective", "rows", "requests", "service", "ranks"},
    {"role", "role", "replica", "service", nullptr},
    {"scale", "wanted", "serving", "service", "reason"},
    {"request_expired", "request", "past_deadline_us", "client", "service"},
    {"client_deadline", "request", "late_reply", "service", nullptr},
    {"fallback", "request", "first_request", "service", "fallback"},
};
}  // namespace

void start(std::size_t capacity) {
  stop();
  if (capacity == 0) return;
  // A page touched for the first time costs more than the events on it
  // (measured here: 16 ns an event on fresh pages, 5 on touched ones; huge
  // pages were worse, 50-80 ns, as the kernel zeroes and compacts 2 MiB at
  // a time), so the first kPrefaultEvents are touched now, off the hot
  // path. The rest costs address space until a long run needs it.
  const std::size_t bytes = capacity * sizeof(Event);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // no trace rather than no run
  const std::size_t prefault = std::min(capacity, kPrefaultEvents) * sizeof(Event);
  for (std::size_t off = 0; off < prefault; off += 4096) static_cast<volatile char*>(p)[off] = 0;
  g_buffer.events = static_cast<Event*>(p);
  g_buffer.capacity = capacity;
  g_buffer.next.store(0);
  g_buffer.dropped.store(0);
  g_enabled = true;
}

void stop() {
  g_enabled = false;
  if (g_buffer.events) munmap(g_buffer.events, g_buffer.capacity * sizeof(Event));
  g_buffer.events = nullptr;
  g_buffer.capacity = 0;
  g_buffer.next.store(0);
}

std::int64_t process_age_us() {
  // Field 22 of /proc/self/stat: start time in clock ticks since boot;
  // /proc/uptime: seconds since boot.
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  double uptime = 0;
  std::ifstream("/proc/uptime") >> uptime;
  const double started =
      std::strtod(field.c_str(), nullptr) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<std::int64_t>((uptime - started) * 1e6);
}

std::size_t recorded() {
  const std::size_t n = g_buffer.next.load();
  return n < g_buffer.capacity ? n : g_buffer.capacity;
}

std::uint64_t dropped() {
  return g_buffer.dropped.load();
}

const KindInfo& kind_info(int kind) {
  return kKindInfo[kind];
}

}  // namespace tandem::detail::trace
