#pragma once
// The journal, RUN_DIR/journal.jsonl: one line per task instance that
// reached a final state, appended as they finish, and one line per attempt
// that was lost with the rank it ran on (a crash, a timeout that ended the
// job), charged when the next job starts. It is what --resume reads to
// skip finished work and to count a poison task's attempts.
//
// The journal is the truth (docs/when-things-go-wrong.md): lines are written
// whole or not at all, a background thread makes them durable with
// fdatasync at a bounded interval (group commit), and once a write fails
// the journal says so and takes nothing more, so that the coordinator stops
// handing out work rather than run tasks whose results would be lost.

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "config/workflow.hpp"
#include "coordinator/scheduler.hpp"

namespace tandem::detail {

/// What the journal of an earlier run says about one instance.
struct JournalEntry {
  std::optional<TaskState> state;  // the last final state recorded, if any
  int attempts = 0;                // the highest attempt recorded (final or lost)
  int lost = 0;                    // attempts lost with their rank (job/lost_attempts.hpp)
  std::string reason;              // of the last record
  std::string result;              // a DONE line's return value, JSON text ("" for none)
};

/// The journal read back, by (task name, index): the last line wins. A line
/// that cannot be read (one cut short by a crash) is skipped with a warning.
std::map<std::pair<std::string, int>, JournalEntry> read_journal(const std::string& path);

class Journal {
 public:
  /// Opens @p path for appending; a torn last line left by a crash is cut
  /// off first. @p sync_interval_s: seconds between fdatasync calls, 0 for
  /// none (the page cache alone: a crash of the process loses nothing, a
  /// crash of the node may lose what the kernel had not written).
  /// @throws tandem::io_error when the file cannot be opened.
  Journal(const std::string& path, const Workflow& wf, double sync_interval_s);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  /// Buffers the final state of @p inst, with its return value @p result
  /// (JSON text, as the task gave it) when it has one.
  void append(const Instance& inst, std::string_view result = {});
  /// Writes what append() buffered, then @p lines (whole lines, each with
  /// its newline), and waits until all of it is on disk (fdatasync, with
  /// or without the interval): for what must be durable before anyone is
  /// told, a submission. False when it is not (failure() says why).
  bool write_durably(std::string_view lines);
  /// The same without waiting: writes @p lines and has the background
  /// thread make them durable at once. Returns a ticket for is_durable(),
  /// or 0 when the write failed (failure() says why). Without the thread
  /// (sync interval 0) it waits, as write_durably().
  long long write_for_durability(std::string_view lines);
  /// True once what was written up to @p ticket is on disk. A journal that
  /// failed is never durable again: check failed() too.
  bool is_durable(long long ticket) const { return durable_.load() >= ticket; }
  /// Writes what append() buffered. False once the journal cannot be
  /// written (now or by the background sync); failure() says why.
  bool flush();
  /// Flushes and waits for the data to be on disk (when syncing is on).
  bool close();

  bool failed() const { return write_errno_ != 0 || sync_errno_.load() != 0; }
  /// The message for the user: the file, the cause, what to do.
  std::string failure() const;
  /// Final states that reached the journal's buffer but not the file.
  long long unrecorded() const { return unrecorded_; }
  const std::string& path() const { return path_; }

 private:
  void reserve(std::size_t most);
  bool write_lines(std::string_view lines);
  void sync_loop(double interval_s);

  std::string path_;
  int fd_ = -1;
  long long size_ = 0;  // bytes of whole lines in the file
  std::vector<std::string> quoted_names_;
  std::vector<char> buffer_;
  std::size_t used_ = 0;
  std::size_t lines_ = 0;  // lines in the buffer
  int write_errno_ = 0;
  long long unrecorded_ = 0;

  std::thread syncer_;
  std::mutex sync_mutex_;
  std::condition_variable sync_wake_;
  bool sync_stop_ = false;
  bool sync_now_ = false;                // write_for_durability asks for a sync at once
  std::atomic<long long> requested_{0};  // the latest ticket given out
  std::atomic<long long> durable_{0};    // tickets up to here are on disk
  std::atomic<bool> dirty_{false};
  std::atomic<int> sync_errno_{0};
};

}  // namespace tandem::detail
