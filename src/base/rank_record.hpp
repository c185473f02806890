#pragma once
// Each rank's black box: RUN_DIR/ranks/rank-NNNNN.rec, a page of a file
// mapped into memory. Before a rank starts a task instance it writes which
// one into the page, and clears it when the instance ends; a replica writes
// which clients' requests are in the batch it runs. Those are plain stores
// into memory, nanoseconds, yet they outlive the process: the page belongs
// to the file, so a rank that dies (SIGSEGV, abort(), exit() in a task,
// even SIGKILL) leaves behind what it had in hand. Fatal-signal handlers add
// the signal; the stop handler adds SIGTERM and the like, which is how the
// next job tells the rank that died from the ranks the launcher then
// stopped. The next job reads the pages (job/lost_attempts.hpp) and charges
// the attempts that were lost.
//
// Everything a signal handler calls here is async-signal-safe.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/role.hpp"

namespace tandem::detail::rank_record {

constexpr int kSlots = 32;       // task instances one rank can hold at once
constexpr int kClients = 64;     // clients of one batch, for a replica
constexpr int kNameBytes = 64;   // of a task's name, cut short if longer
constexpr int kNoteBytes = 256;  // a sentence about how the rank ended

enum SlotKind : std::int32_t { kFree = 0, kFunction = 1, kCommand = 2 };
/// What ended the rank, when it was not a clean end.
enum Cause : std::int32_t {
  kNone = 0,
  kFatalSignal = 1,  // SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT
  kExitInTask = 2,   // exit() called while a function task ran
  kTimeoutAbort = 3  // on_timeout = "abort"
};

struct Slot {
  std::atomic<std::int32_t> kind;  // SlotKind; written last when taken, first when freed
  std::int32_t index;
  std::int32_t attempt;
  std::int32_t pid;  // a command task's process (0: unknown, or a function)
  std::int64_t started_us;
  char task[kNameBytes];
};

/// The page, as it is on disk. Fixed layout: the next job reads it back.
struct Page {
  char magic[8];  // "TNDMREC1"
  std::int32_t rank;
  std::int32_t node;
  std::int32_t pid;
  std::int32_t role;  // Role (base/role.hpp)
  char host[64];
  std::atomic<std::int32_t> ended_cleanly;
  std::atomic<std::int32_t> fatal_signal;
  std::atomic<std::int32_t> stop_signal;  // the first SIGTERM/SIGINT/SIGUSR1 it got
  std::atomic<std::int32_t> cause;        // Cause
  Slot slots[kSlots];
  std::atomic<std::int32_t> batch_clients;  // how many of clients[] are set
  std::int32_t clients[kClients];           // world ranks whose requests are in the batch
  std::int32_t client_pids[kClients];       // the task processes that sent them (0: unknown)
  char note[kNoteBytes];
};

/// Maps @p dir/rank-NNNNN.rec (creating @p dir) and installs the handlers
/// for fatal signals and exit(). False, with @p why, when the file cannot be
/// made: the rank runs on without a black box.
bool open(const std::string& dir, int rank, int node, Role role, std::string* why);
/// Marks a clean end and unmaps; the file stays for the next job to see.
void close_clean();
/// The page of this rank, or nullptr when none is open.
Page* page();

/// Slot @p slot now holds @p task[@p index], attempt @p attempt.
void take_slot(int slot, SlotKind kind, std::string_view task, int index, int attempt,
               std::int64_t started_us);
/// The process running slot @p slot's command task.
void set_slot_pid(int slot, int pid);
void free_slot(int slot);
/// A replica's batch: the world ranks whose requests it holds (0 to clear)
/// and, where known (the direct path), the task processes that sent them
/// (@p pids may be null).
void set_batch(const int* clients, const int* pids, int n);
/// Called by the stop handler: the first stop signal is kept.
void note_stop_signal(int sig);
/// The rank is about to end itself for @p cause; @p note says why (kept if
/// no note is there yet).
void note_cause(Cause cause, std::string_view note);

/// In a forked child: forget the parent's page (it is shared with the
/// parent) and its handlers, so that nothing the child does is taken for
/// the rank's own end.
void detach_in_child();

/// Where a dying rank's one line goes (default: fd 2), for a rank whose
/// stderr was sent to a file (job/logging.hpp).
void set_report_fd(int fd);

/// Called from the fatal-signal handler after the page is written, to
/// flush the logs; may be unsafe, so it runs last.
void set_flush_hook(void (*hook)());

}  // namespace tandem::detail::rank_record
