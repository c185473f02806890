#include "base/rank_record.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace tandem::detail::rank_record {

static_assert(sizeof(Page) <= 4096, "the black box is one page");
// Tests and bench/faults.py read a rank's pid at this offset.
static_assert(offsetof(Page, pid) == 16, "the pid stays where readers look for it");

namespace {

Page* g_page = nullptr;
int g_report_fd = 2;
void (*g_flush)() = nullptr;
constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// Text built without allocating or locking, for the signal handler.
struct SafeText {
  char buf[1024];
  std::size_t n = 0;
  void add(const char* s) {
    while (*s && n + 1 < sizeof buf) buf[n++] = *s++;
  }
  void add(const char* s, std::size_t max) {
    for (std::size_t i = 0; i < max && s[i] && n + 1 < sizeof buf; ++i) buf[n++] = s[i];
  }
  void num(long long v) {
    char digits[24];
    int k = 0;
    const bool negative = v < 0;
    unsigned long long u = negative ? 0ULL - static_cast<unsigned long long>(v) : v;
    do {
      digits[k++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u && k < 23);
    if (negative) digits[k++] = '-';
    while (k > 0 && n + 1 < sizeof buf) buf[n++] = digits[--k];
  }
};

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "a signal";
  }
}

// One line on stderr: who died, of what, holding what.
void tell(const Page& p, const char* how) {
  SafeText t;
  t.add("tandem: rank ");
  t.num(p.rank);
  t.add(" on ");
  t.add(p.host, sizeof p.host);
  t.add(" ");
  t.add(how);
  bool first = true;
  for (const Slot& s : p.slots) {
    if (s.kind.load(std::memory_order_acquire) == kFree) continue;
    t.add(first ? " while running " : ", ");
    first = false;
    t.add(s.task, sizeof s.task);
    t.add("[");
    t.num(s.index);
    t.add("] attempt ");
    t.num(s.attempt);
  }
  const int clients = p.batch_clients.load();
  if (clients > 0) {
    t.add(first ? " while serving a batch for " : "; serving a batch for ");
    t.num(clients);
    t.add(" client(s)");
  }
  t.add("; the next --resume charges the attempt\n");
  ssize_t ignored = ::write(g_report_fd, t.buf, t.n);
  (void)ignored;
}

void on_fatal(int sig) {
  if (Page* p = g_page) {
    p->fatal_signal.store(sig);
    std::int32_t expected = kNone;
    p->cause.compare_exchange_strong(expected, kFatalSignal);
    SafeText how;
    if (p->cause.load() == kTimeoutAbort) {
      how.add("ended itself (on_timeout = \"abort\")");
    } else {
      how.add("died with ");
      how.add(signal_name(sig));
    }
    how.buf[how.n] = '\0';
    tell(*p, how.buf);
  }
  if (g_flush) g_flush();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void at_exit() {
  Page* p = g_page;
  if (!p || p->ended_cleanly.load()) return;
  for (const Slot& s : p->slots) {
    if (s.kind.load() != kFunction) continue;
    std::int32_t expected = kNone;
    p->cause.compare_exchange_strong(expected, kExitInTask);
    tell(*p, "called exit()");
    return;
  }
}

void install_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  // A stack of its own, so that a stack overflow can still be reported.
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_ONSTACK;
  for (int sig : kFatalSignals) sigaction(sig, &sa, nullptr);
  std::atexit(at_exit);
}

}  // namespace

bool open(const std::string& dir, int rank, int node, Role role, std::string* why) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = fmt::format("{}/rank-{:05d}.rec", dir, rank);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (why) *why = fmt::format("cannot create {}: {}", path, std::strerror(errno));
    return false;
  }
  // posix_fallocate, not ftruncate: the blocks exist now, so a full disk
  // later cannot turn a store into a SIGBUS.
  const int rc = ::posix_fallocate(fd, 0, 4096);
  void* mem = rc == 0 ? ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : nullptr;
  ::close(fd);
  if (mem == MAP_FAILED || mem == nullptr) {
    if (why) {
      *why = fmt::format("cannot map {}: {}", path, std::strerror(rc != 0 ? rc : errno));
    }
    return false;
  }
  auto* p = static_cast<Page*>(mem);
  std::memset(static_cast<void*>(p), 0, sizeof(Page));
  std::memcpy(p->magic, "TNDMREC1", 8);
  p->rank = rank;
  p->node = node;
  p->pid = static_cast<std::int32_t>(::getpid());
  p->role = static_cast<std::int32_t>(role);
  ::gethostname(p->host, sizeof p->host - 1);
  g_page = p;
  install_handlers();
  return true;
}

void close_clean() {
  Page* p = g_page;
  if (!p) return;
  p->ended_cleanly.store(1);
  g_page = nullptr;
  ::munmap(p, 4096);
}

Page* page() {
  return g_page;
}

void take_slot(int slot, SlotKind kind, std::string_view task, int index, int attempt,
               std::int64_t started_us) {
  Page* p = g_page;
  if (!p || slot < 0 || slot >= kSlots) return;
  Slot& s = p->slots[slot];
  s.kind.store(kFree, std::memory_order_relaxed);
  const std::size_t n = std::min(task.size(), static_cast<std::size_t>(kNameBytes - 1));
  std::memcpy(s.task, task.data(), n);
  s.task[n] = '\0';
  s.index = index;
  s.attempt = attempt;
  s.pid = 0;
  s.started_us = started_us;
  s.kind.store(kind, std::memory_order_release);
}

void set_slot_pid(int slot, int pid) {
  Page* p = g_page;
  if (!p || slot < 0 || slot >= kSlots) return;
  p->slots[slot].pid = pid;
}

void free_slot(int slot) {
  Page* p = g_page;
  if (!p || slot < 0 || slot >= kSlots) return;
  p->slots[slot].kind.store(kFree, std::memory_order_release);
}

void set_batch(const int* clients, const int* pids, int n) {
  Page* p = g_page;
  if (!p) return;
  p->batch_clients.store(0, std::memory_order_relaxed);
  n = std::min(n, kClients);
  for (int i = 0; i < n; ++i) {
    p->clients[i] = clients[i];
    p->client_pids[i] = pids ? pids[i] : 0;
  }
  p->batch_clients.store(n, std::memory_order_release);
}

void note_stop_signal(int sig) {
  Page* p = g_page;
  if (!p) return;
  std::int32_t expected = 0;
  p->stop_signal.compare_exchange_strong(expected, sig);
}

void note_cause(Cause cause, std::string_view note) {
  Page* p = g_page;
  if (!p) return;
  if (p->note[0] == '\0') {
    const std::size_t n = std::min(note.size(), static_cast<std::size_t>(kNoteBytes - 1));
    std::memcpy(p->note, note.data(), n);
    p->note[n] = '\0';
  }
  std::int32_t expected = kNone;
  p->cause.compare_exchange_strong(expected, cause);
}

void set_report_fd(int fd) {
  g_report_fd = fd;
}

void set_flush_hook(void (*hook)()) {
  g_flush = hook;
}

void detach_in_child() {
  g_page = nullptr;
  g_flush = nullptr;
  for (int sig : kFatalSignals) ::signal(sig, SIG_DFL);
}

}  // namespace tandem::detail::rank_record
