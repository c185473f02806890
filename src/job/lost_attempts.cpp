#include "job/lost_attempts.hpp"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "base/files.hpp"
#include "base/rank_record.hpp"

namespace fs = std::filesystem;

namespace tandem::detail {

namespace {

using rank_record::Page;

std::string text(const char* s, std::size_t max) {
  return std::string(s, strnlen(s, max));
}

std::string who(const Page& p) {
  const auto role_of = static_cast<Role>(p.role);
  const char* role = role_of == Role::worker    ? "worker "
                     : role_of == Role::service ? "service replica "
                                                : "";
  return fmt::format("{}rank {} on {}", role, p.rank, text(p.host, sizeof p.host));
}

std::string how_it_ended(const Page& p) {
  switch (p.cause.load()) {
    case rank_record::kTimeoutAbort:
      return text(p.note, sizeof p.note);
    case rank_record::kExitInTask:
      return "ended when the task called exit() (a function task must return or throw)";
    case rank_record::kFatalSignal: {
      const int sig = p.fatal_signal.load();
      const char* abbrev = sigabbrev_np(sig);
      return abbrev ? fmt::format("died with SIG{}", abbrev)
                    : fmt::format("died of signal {}", sig);
    }
    default:
      return "was killed without a word (SIGKILL, perhaps the out-of-memory killer)";
  }
}

// The attempts running in @p p's slots; with @p pid, only that process's.
void charge_slots(const Page& p, bool functions_only, const std::string& reason,
                  std::vector<LostAttempt>& out, int pid = 0) {
  for (const auto& s : p.slots) {
    const auto kind = s.kind.load();
    if (kind == rank_record::kFree) continue;
    if (functions_only && kind != rank_record::kFunction) continue;
    if (pid != 0 && s.pid != pid) continue;
    out.push_back({text(s.task, sizeof s.task), s.index, s.attempt, reason});
  }
}

}  // namespace

std::vector<LostAttempt> find_lost_attempts(const std::string& ranks_dir) {
  std::map<int, Page> pages;  // by world rank
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ranks_dir, ec)) {
    if (e.path().extension() != ".rec") continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    Page p;
    const ssize_t n = ::pread(fd, static_cast<void*>(&p), sizeof p, 0);
    ::close(fd);
    if (n != static_cast<ssize_t>(sizeof p) || std::memcmp(p.magic, "TNDMREC1", 8) != 0) continue;
    const int rank = p.rank;
    std::memcpy(static_cast<void*>(&pages[rank]), &p, sizeof p);
  }
  bool launcher_stopped_others = false;
  for (const auto& [rank, p] : pages) {
    if (!p.ended_cleanly.load() && p.stop_signal.load() != 0) launcher_stopped_others = true;
  }
  std::vector<LostAttempt> lost;
  for (const auto& [rank, p] : pages) {
    if (p.ended_cleanly.load()) continue;
    const bool spoke = p.cause.load() != rank_record::kNone;
    const bool silent = !spoke && p.stop_signal.load() == 0;
    if (!spoke && !(silent && launcher_stopped_others)) continue;
    const std::string reason = fmt::format("{} {}", who(p), how_it_ended(p));
    if (static_cast<Role>(p.role) == Role::service) {
      // The batch's requests came from tasks on these ranks.
      const int n = std::min(p.batch_clients.load(), rank_record::kClients);
      for (int i = 0; i < n; ++i) {
        auto client = pages.find(p.clients[i]);
        if (client == pages.end()) continue;
        // A request on the direct path names its task's process: only
        // that task is charged, not every task its worker was running.
        charge_slots(client->second, false, reason + " while serving a batch with its requests",
                     lost, p.client_pids[i]);
      }
      continue;
    }
    std::vector<LostAttempt> mine;
    charge_slots(p, true, "", mine);
    for (LostAttempt& a : mine) {
      a.reason = fmt::format("{} {} while running {}[{}] (attempt {})", who(p), how_it_ended(p),
                             a.task, a.index, a.attempt);
      lost.push_back(std::move(a));
    }
  }
  // One charge per attempt, even if two ranks of a multi-rank task died.
  std::set<std::tuple<std::string, int, int>> seen;
  std::erase_if(lost, [&seen](const LostAttempt& a) {
    return !seen.insert({a.task, a.index, a.attempt}).second;
  });
  return lost;
}

std::vector<LostAttempt> charge_lost_attempts(const std::string& ranks_dir,
                                              const std::string& journal_path) {
  std::vector<LostAttempt> lost = find_lost_attempts(ranks_dir);
  if (!lost.empty()) {
    // A job that died after charging but before removing the pages must
    // not charge them twice.
    std::set<std::tuple<std::string, int, int>> charged;
    std::ifstream in(journal_path);
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"lost\":true") == std::string::npos) continue;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      charged.insert({j.value("task", ""), j.value("index", -1), j.value("attempt", -1)});
    }
    std::string lines;
    for (const LostAttempt& a : lost) {
      if (charged.contains({a.task, a.index, a.attempt})) continue;
      lines += nlohmann::json{{"task", a.task},
                              {"index", a.index},
                              {"lost", true},
                              {"attempt", a.attempt},
                              {"reason", a.reason}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
               "\n";
      spdlog::warn("the previous job lost {}[{}] attempt {}: {}", a.task, a.index, a.attempt,
                   a.reason);
    }
    if (!lines.empty()) {
      cut_torn_last_line(journal_path);
      append_line_durably(journal_path, lines);
    }
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ranks_dir, ec)) {
    if (e.path().extension() == ".rec") fs::remove(e.path(), ec);
  }
  return lost;
}

}  // namespace tandem::detail
