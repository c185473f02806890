#pragma once
// The run's trace: every rank records timestamped events into a buffer
// allocated once at start-up, with no I/O and no locks on the hot path (one
// atomic increment and a 32-byte store, about 25 ns). At the end the events
// go to rank 0, which writes RUN_DIR/trace.h5 (one table per kind) and
// RUN_DIR/trace.json (Chrome trace events).
//
// Times are CLOCK_MONOTONIC nanoseconds; each rank's offset from rank 0's
// clock is measured at start-up and taken off when the trace is written, so
// the files hold one timeline.

#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tandem::detail::trace {

/// What an event says; the meaning of its fields a..d per kind is in
/// kKindInfo (trace.cpp) and docs/observability.md.
enum Kind : std::uint8_t {
  kTaskDispatch,    // coordinator: a first instance id, b count, c worker index
  kTaskStart,       // worker: a instance id, b attempt, c slot
  kTaskEnd,         // worker: a instance id, b attempt, c outcome
  kRequestSend,     // client: a request id, b bytes, c service, d replica
  kRequestQueue,    // replica leader: a request id, b bytes, c client rank, d service
  kRequestBatch,    // replica leader: a request id, b batch id, c client rank, d service
  kBatchCompute,    // replica leader, at the batch's start: a batch id, b ns, c rows, d service
  kRequestReply,    // replica leader: a request id, b model version (0: error), c client, d service
  kReplyReceive,    // client: a request id, b model version (0: error), c service
  kServiceState,    // coordinator: a replica, b load time in us, c service, d state
  kBridgeRetry,     // bridge: a request id, b attempt, c HTTP status or -curl code, d service
  kPhase,           // any rank: a phase (Phase), b value; model loaded: b service, c replica
  kModelSwitch,     // replica leader: a version now served, b its load time in ns, c replica,
                    // d service
  kCollective,      // client, a node's leader in infer_all: a rows, b requests (more than 1:
                    // split at max_batch), c service, d ranks whose rows it carried
  kRole,            // a worker of an elastic service: a role (RoleChange), b replica, c service
  kScale,           // coordinator: a replicas wanted, b replicas serving, c service, d reason
                    // (ScaleReason)
  kRequestExpired,  // replica leader: a request id, b us past its deadline (negative: shed
                    // early, it could not have made it), c client rank, d service
  kClientDeadline,  // client: a request id, b 0 stopped waiting at the deadline, 1 a late
                    // reply discarded, c service
  kFallback,        // client: a the new request's id, b the first one's, c service it came
                    // from, d the fallback service
  kKindCount
};

/// What a kRole event says a worker does from then on.
enum RoleChange : std::int64_t {
  kRoleWorker = 0,  // back to tasks
  kRoleLoading = 1  // loading the model, then serving until the service shrinks
};

/// Why the coordinator moved a rank (kScale's d).
enum ScaleReason : std::int16_t {
  kScaleQueue = 0,   // the p95 time at the replicas passed target_queue_ms
  kScaleIdle = 1,    // no requests for a while
  kScaleTasks = 2,   // tasks wait for workers and the service has room to spare
  kScaleManual = 3,  // Client::scale
  kScaleRule = 4,    // [[scale]] after a task ended
  kScaleEnd = 5      // the run is over
};

/// Start-up milestones, recorded as kPhase events.
enum Phase : std::int64_t {
  kPhaseJobStart = 0,     // start_job entered (MPI is up); b: the process's age then, in us
  kPhaseRolesReady = 1,   // communicators split, roles known
  kPhaseModelLoaded = 2,  // a replica's backend finished loading
  kPhaseRunStart = 3,     // the coordinator starts dispatching
  kPhaseRunEnd = 4,       // the coordinator has every result
};

struct Event {
  std::int64_t t_ns;
  std::int64_t a;
  std::int64_t b;
  std::int32_t c;
  std::int16_t d;
  std::uint8_t kind;
  std::uint8_t pad;
};
static_assert(sizeof(Event) == 32);  // MonitorSpec::events_per_rank counts on it

inline std::int64_t clock_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

/// This process's event buffer.
struct Buffer {
  Event* events = nullptr;
  std::size_t capacity = 0;
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> dropped{0};
};

extern bool g_enabled;  // set before any thread records; read without a lock
extern Buffer g_buffer;

inline void record_at(std::int64_t t_ns, Kind kind, std::int64_t a = 0, std::int64_t b = 0,
                      std::int32_t c = 0, std::int16_t d = 0) {
  if (!g_enabled) return;
  const std::size_t i = g_buffer.next.fetch_add(1, std::memory_order_relaxed);
  if (i >= g_buffer.capacity) {
    g_buffer.dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  g_buffer.events[i] = Event{t_ns, a, b, c, d, kind, 0};
}

inline void record(Kind kind, std::int64_t a = 0, std::int64_t b = 0, std::int32_t c = 0,
                   std::int16_t d = 0) {
  if (!g_enabled) return;
  record_at(clock_ns(), kind, a, b, c, d);
}

/// Allocates room for @p capacity events (pages are touched as they fill)
/// and starts recording; 0 turns tracing off.
void start(std::size_t capacity);
/// Stops recording and frees the buffer.
void stop();
/// Microseconds since this process started (10 ms resolution), so that the
/// trace can show how long the launcher and MPI_Init took.
std::int64_t process_age_us();

/// The events recorded so far (valid until stop()).
std::size_t recorded();
std::uint64_t dropped();

/// Field names of each kind's table, for the files and the report; a null
/// name is a field the kind does not use.
struct KindInfo {
  const char* name;
  const char* a;
  const char* b;
  const char* c;
  const char* d;
};
const KindInfo& kind_info(int kind);

}  // namespace tandem::detail::trace
