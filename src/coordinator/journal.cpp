// The journal: one JSON line per task instance that reached a final state,
// and one per attempt lost with its rank.

#include "coordinator/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/files.hpp"
#include "tandem/error.hpp"

namespace tandem::detail {

std::map<std::pair<std::string, int>, JournalEntry> read_journal(const std::string& path) {
  std::map<std::pair<std::string, int>, JournalEntry> entries;
  std::ifstream in(path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("submitted")) continue;  // a submission (coordinator/submissions.hpp)
      auto key = std::make_pair(j.at("task").get<std::string>(), j.at("index").get<int>());
      const bool lost = j.contains("lost");
      std::optional<TaskState> st;
      if (!lost) {
        // Only final states are journaled; anything else is not ours.
        st = parse_name<TaskState>(j.at("state").get<std::string>());
        if (!st || !is_final(*st)) {
          spdlog::warn("{}:{}: skipping a journal line with no final state", path, lineno);
          continue;
        }
      }
      const int attempts = lost ? j.at("attempt").get<int>() : j.value("attempts", 0);
      JournalEntry& e = entries[std::move(key)];
      if (lost) {
        ++e.lost;
      } else {
        e.state = st;
      }
      e.attempts = std::max(e.attempts, attempts);
      e.reason = j.value("reason", std::string());
      if (const auto r = j.find("result"); !lost && r != j.end()) e.result = r->dump();
    } catch (const std::exception& e) {
      // A line cut short by a crash: that task simply runs again.
      spdlog::warn("{}:{}: skipping an unreadable journal line ({})", path, lineno, e.what());
    }
  }
  return entries;
}

Journal::Journal(const std::string& path, const Workflow& wf, double sync_interval_s)
    : path_(path) {
  if (const long long cut = cut_torn_last_line(path); cut > 0) {
    spdlog::warn("{}: cut off a last line an earlier job left unfinished ({} bytes)", path, cut);
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw io_error(path, fmt::format("cannot open the journal {}: {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0) size_ = st.st_size;
  buffer_.resize(1 << 20);
  for (const TaskSpec& t : wf.tasks) quoted_names_.push_back(nlohmann::json(t.name).dump());
  if (sync_interval_s > 0)
    syncer_ = std::thread([this, sync_interval_s] { sync_loop(sync_interval_s); });
}

Journal::~Journal() {
  close();
  if (fd_ >= 0) ::close(fd_);
}

void Journal::sync_loop(double interval_s) {
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(interval_s));
  std::unique_lock<std::mutex> hold(sync_mutex_);
  while (!sync_stop_) {
    sync_wake_.wait_for(hold, interval, [this] { return sync_stop_ || sync_now_; });
    sync_now_ = false;
    if (!dirty_.exchange(false)) continue;
    // Every ticket given out before this sync starts is covered by it.
    const long long covers = requested_.load();
    hold.unlock();
    if (::fdatasync(fd_) != 0) {
      int expected = 0;
      sync_errno_.compare_exchange_strong(expected, errno);
    } else {
      durable_.store(covers);
    }
    hold.lock();
  }
}

std::string Journal::failure() const {
  const int err = write_errno_ != 0 ? write_errno_ : sync_errno_.load();
  if (err == 0) return {};
  return fmt::format("cannot write the journal {}: {}", path_, std::strerror(err));
}

namespace {

// Appends a literal and a number to the journal's buffer without the
// format-string parsing, strlen and bounds checks of the general tools.
template <std::size_t N>
char* put(char* p, const char (&literal)[N]) {
  std::memcpy(p, literal, N - 1);
  return p + N - 1;
}

char* put(char* p, std::string_view s) {
  std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

char* put(char* p, long long v) {
  return std::to_chars(p, p + 24, v).ptr;
}

std::string quoted_reason(const std::string& reason) {
  if (reason.empty()) return {};
  return nlohmann::json(reason).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void Journal::reserve(std::size_t most) {
  if (buffer_.size() - used_ < most) {
    flush();
    if (buffer_.size() < most) buffer_.resize(most);
  }
}

void Journal::append(const Instance& inst, std::string_view result) {
  if (write_errno_ != 0) {
    ++unrecorded_;
    return;
  }
  // Written by hand rather than through a format string: at a million tasks
  // a second this line is the coordinator's largest cost per task.
  const std::string reason = quoted_reason(inst.reason);
  const std::string& name = quoted_names_[inst.task];
  reserve(256 + name.size() + reason.size() + result.size());
  if (write_errno_ != 0) {
    // The flush to make room for this line failed: it is not recorded
    // either, and counts with the others (it used to go uncounted, and
    // the resume then reran one more than the message said).
    ++unrecorded_;
    return;
  }
  char* p = buffer_.data() + used_;
  p = put(p, "{\"task\":");
  p = put(p, std::string_view(name));
  p = put(p, ",\"index\":");
  p = put(p, static_cast<long long>(inst.index));
  p = put(p, ",\"state\":\"");
  p = put(p, name_of(inst.state));
  p = put(p, "\",\"attempts\":");
  p = put(p, static_cast<long long>(inst.attempt));
  p = put(p, ",\"exit_code\":");
  p = put(p, static_cast<long long>(inst.exit_code));
  p = put(p, ",\"worker\":");
  p = put(p, static_cast<long long>(inst.worker));
  p = put(p, ",\"scheduled_us\":");
  p = put(p, static_cast<long long>(inst.t_scheduled));
  p = put(p, ",\"started_us\":");
  p = put(p, static_cast<long long>(inst.t_started));
  p = put(p, ",\"ended_us\":");
  p = put(p, static_cast<long long>(inst.t_ended));
  if (!reason.empty()) {
    p = put(p, ",\"reason\":");
    p = put(p, std::string_view(reason));
  }
  if (!result.empty()) {
    p = put(p, ",\"result\":");
    p = put(p, result);
  }
  p = put(p, "}\n");
  used_ = static_cast<std::size_t>(p - buffer_.data());
  ++lines_;
}

bool Journal::flush() {
  if (write_errno_ != 0 || used_ == 0) return !failed();
  if (!write_all(fd_, buffer_.data(), used_)) {
    write_errno_ = errno;
    // Cut off what part of the batch landed, so the file holds whole lines.
    if (::ftruncate(fd_, size_) != 0) {
      // The reader skips a torn last line; nothing more to do here.
    }
    unrecorded_ += static_cast<long long>(lines_);
  } else {
    size_ += static_cast<long long>(used_);
    dirty_.store(true);
  }
  used_ = 0;
  lines_ = 0;
  return !failed();
}

// What append() buffered, then @p lines, whole or not at all.
bool Journal::write_lines(std::string_view lines) {
  if (!flush()) return false;
  if (!write_all(fd_, lines.data(), lines.size())) {
    write_errno_ = errno;
    if (::ftruncate(fd_, size_) != 0) {
      // The reader stops at a torn line; nothing more to do here.
    }
    return false;
  }
  size_ += static_cast<long long>(lines.size());
  return true;
}

bool Journal::write_durably(std::string_view lines) {
  if (!write_lines(lines)) return false;
  if (::fdatasync(fd_) != 0) {
    write_errno_ = errno;
    return false;
  }
  return true;
}

long long Journal::write_for_durability(std::string_view lines) {
  if (!syncer_.joinable()) {
    if (!write_durably(lines)) return 0;
    const long long ticket = requested_.fetch_add(1) + 1;
    durable_.store(ticket);
    return ticket;
  }
  if (!write_lines(lines)) return 0;
  long long ticket = 0;
  {
    std::lock_guard<std::mutex> hold(sync_mutex_);
    ticket = requested_.fetch_add(1) + 1;
    dirty_.store(true);
    sync_now_ = true;
  }
  sync_wake_.notify_one();
  return ticket;
}

bool Journal::close() {
  flush();
  if (syncer_.joinable()) {
    {
      std::lock_guard<std::mutex> hold(sync_mutex_);
      sync_stop_ = true;
    }
    sync_wake_.notify_all();
    syncer_.join();
    if (dirty_.exchange(false) && ::fdatasync(fd_) != 0 && write_errno_ == 0) {
      write_errno_ = errno;
    }
  }
  return !failed();
}

}  // namespace tandem::detail
