#include "exec/command.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "base/files.hpp"
#include "base/signals.hpp"

extern char** environ;

namespace tandem::detail {

namespace {

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Output is relayed through one buffer: a worker handles one pipe at a time,
// and a fresh buffer per command would pay first-touch page faults.
char g_relay[64 * 1024];

}  // namespace

std::vector<std::string> inherited_environment(bool clean_mpi) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (clean_mpi) {
      const char* v = *e;
      // Keep the settings a person chose (OMPI_MCA_*, OMPI_ALLOW_*) and drop
      // the launcher's wiring: PMIx/PMI, the job's identity and Open MPI's
      // per-process values. OMPI_MCA_ess is both: mpiexec sets it, and
      // MPI_Init rewrites it to "pmi" in the worker's own environment, which
      // makes a nested mpirun exit 1 without a word.
      const bool launcher_wiring =
          starts_with(v, "PMIX_") || starts_with(v, "PMI_") || starts_with(v, "OMPI_COMM_WORLD_") ||
          starts_with(v, "OMPI_MCA_ess") || starts_with(v, "OMPI_MCA_orte_") ||
          starts_with(v, "OMPI_MCA_pmix") || starts_with(v, "OMPI_FIRST_RANKS") ||
          starts_with(v, "OMPI_APP_CTX") || starts_with(v, "OMPI_NUM_APP_CTX") ||
          starts_with(v, "OMPI_UNIVERSE_SIZE") || starts_with(v, "OMPI_FILE_LOCATION") ||
          starts_with(v, "OMPI_MCA_initial_wdir") ||
          starts_with(v, "OMPI_MCA_shmem_RUNTIME_QUERY_hint") || starts_with(v, "OMPI_ARGV") ||
          starts_with(v, "OMPI_COMMAND") || starts_with(v, "OMPI_MCA_num_procs") ||
          starts_with(v, "OMPI_MCA_ompi_") || starts_with(v, "OMPI_MCA_mpi_oversubscribe") ||
          starts_with(v, "SLURM_PROCID") || starts_with(v, "SLURM_LOCALID") ||
          starts_with(v, "SLURM_STEP_");
      if (launcher_wiring) continue;
    }
    env.emplace_back(*e);
  }
  return env;
}

int signal_session(pid_t sid, int sig) {
  int killed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid != sid && ::getsid(pid) == sid && ::kill(pid, sig) == 0) ++killed;
  }
  return killed;
}

RunningCommand::RunningCommand(const CommandLaunch& launch)
    : argv0_(launch.argv.empty() ? std::string() : launch.argv[0]),
      paths_{launch.stdout_path, launch.stderr_path},
      timeout_s_(launch.timeout_s),
      grace_s_(launch.kill_grace_s),
      own_session_(launch.own_session) {
  spawn(launch);
}

RunningCommand::~RunningCommand() {
  if (pid_ > 0 && !exited_) {
    signal_group(SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
  if (pid_ > 0) remove_forward_group(pid_);
  for (int i = 0; i < 2; ++i) {
    close_fd(pipes_[i]);
    close_fd(files_[i]);
  }
  close_fd(pidfd_);
}

void RunningCommand::spawn(const CommandLaunch& launch) {
  if (launch.argv.empty()) {
    finished_ = true;
    result_.exit_code = 127;
    result_.reason = "no program to run";
    return;
  }
  // A program without a '/' is looked up on the PATH the task will have,
  // as execvpe does (posix_spawn itself would look in the working directory).
  std::string program = launch.argv[0];
  if (program.find('/') == std::string::npos) {
    const char* path = env_value(launch.env, "PATH");
    program = find_program(program, path);
    if (program.empty()) {
      finished_ = true;
      result_.exit_code = 127;
      result_.reason =
          fmt::format("cannot start '{}': not found on PATH ({})", argv0_, path ? path : "not set");
      return;
    }
  }
  std::vector<char*> argv;
  for (const auto& a : launch.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : launch.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    finished_ = true;
    result_.exit_code = 127;
    result_.reason = fmt::format("cannot create pipes for '{}': {}", argv0_, std::strerror(errno));
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  // The MPI library's sockets and shared memory stay with the worker.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!launch.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, launch.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  // setsid() also makes the child the leader of a new group of the same id.
  const short group = launch.own_session ? POSIX_SPAWN_SETSID : POSIX_SPAWN_SETPGROUP;
  posix_spawnattr_setflags(&attr, static_cast<short>(group | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK));
  // The child runs on the CPUs of the thread that spawns it: those of the
  // task, for the moment of the spawn.
  cpu_set_t own;
  bool rebound = false;
  if (!launch.cpus.empty() && pthread_getaffinity_np(pthread_self(), sizeof own, &own) == 0) {
    cpu_set_t want;
    CPU_ZERO(&want);
    for (int c : launch.cpus) CPU_SET(c, &want);
    rebound = pthread_setaffinity_np(pthread_self(), sizeof want, &want) == 0;
  }
  const int rc = ::posix_spawn(&pid_, program.c_str(), &actions, &attr, argv.data(), envp.data());
  if (rebound) pthread_setaffinity_np(pthread_self(), sizeof own, &own);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  ::close(err[1]);
  pipes_[0] = out[0];
  pipes_[1] = err[0];
  if (rc != 0) {
    pid_ = -1;
    finished_ = true;
    close_fd(pipes_[0]);
    close_fd(pipes_[1]);
    result_.exit_code = 127;
    result_.reason = fmt::format("cannot start '{}': {}", argv0_, std::strerror(rc));
    return;
  }
  add_forward_group(pid_);
  for (int fd : pipes_) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  pidfd_ = open_pidfd(pid_);
  if (timeout_s_ > 0) {
    deadline_ = clock::now() + std::chrono::duration_cast<clock::duration>(
                                   std::chrono::duration<double>(timeout_s_));
  }
}

void RunningCommand::add_poll_fds(std::vector<pollfd>& fds) const {
  if (finished_) return;
  for (int fd : pipes_) {
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  }
  if (pidfd_ >= 0 && !exited_) fds.push_back({pidfd_, POLLIN, 0});
}

void RunningCommand::drain(int which) {
  int& fd = pipes_[which];
  while (fd >= 0) {
    const ssize_t n = ::read(fd, g_relay, sizeof g_relay);
    if (n > 0) {
      if (files_[which] < 0) {
        files_[which] =
            ::open(paths_[which].c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      }
      if (files_[which] >= 0) {
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::write(files_[which], g_relay + done, n - done);
          if (w <= 0) break;  // a full disk loses output, never the task
          done += w;
        }
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    close_fd(fd);  // EOF or error
  }
}

// An MPI launcher's local ranks are in groups of their own but in its
// session: they get the signal too, at once. Ranks die on SIGTERM, so the
// launcher ends within its grace instead of waiting for them; the whole
// attempt is over before an outer launcher that forwarded an interrupt
// gives up on its ranks (Open MPI's mpirun kills them a second later).
void RunningCommand::signal_group(int sig) {
  if (pid_ <= 0) return;
  ::kill(-pid_, sig);
  if (own_session_) signal_session(pid_, sig);
}

void RunningCommand::cancel(const std::string& reason) {
  if (finished_ || exited_ || stop_ != Stop::none) return;
  // A command that has already ended on its own finished its work: reap it
  // first, so that a stop arriving before we noticed its end does not call
  // it canceled and run it a second time on resume.
  progress();
  if (finished_ || exited_) return;
  stop_ = Stop::cancel;
  stop_reason_ = reason;
  signal_group(SIGTERM);
  term_sent_flag_ = true;
  term_sent_ = clock::now();
}

void RunningCommand::progress() {
  if (finished_) return;
  drain(0);
  drain(1);
  const auto now = clock::now();
  if (!exited_) {
    const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exited_at_ = now;
      // Anything left in the group (children that outlived the leader) goes
      // too; that also closes the pipes they inherited.
      signal_group(SIGKILL);
      // An MPI launcher's ranks are in groups of their own: whatever of
      // them outlived it (a launcher killed at the end of its grace) goes
      // now, so that no rank of a stopped task runs on.
      if (own_session_) signal_session(pid_, SIGKILL);
      remove_forward_group(pid_);
      drain(0);
      drain(1);
    } else if (timeout_s_ > 0 && stop_ == Stop::none && now >= deadline_) {
      stop_ = Stop::timeout;
      signal_group(SIGTERM);
      term_sent_flag_ = true;
      term_sent_ = now;
    } else if (term_sent_flag_ && !kill_sent_ &&
               (now - term_sent_ >= std::chrono::duration<double>(grace_s_) ||
                (own_session_ && signal_session(pid_, 0) == 0))) {
      // The grace is over; or every rank of a stopped MPI program has
      // ended, and the launcher, which has nothing left to stop, would take
      // seconds to notice: ending it now keeps a forwarded interrupt's
      // whole stop inside the second Open MPI's outer mpirun gives its ranks.
      signal_group(SIGKILL);
      kill_sent_ = true;
    }
  }
  if (exited_) {
    // A process that left the group may hold the pipes open: stop waiting
    // for their end a little after the command itself ended.
    if (now - exited_at_ > std::chrono::seconds(2)) {
      close_fd(pipes_[0]);
      close_fd(pipes_[1]);
    }
    if (pipes_[0] < 0 && pipes_[1] < 0) make_result();
  }
}

void RunningCommand::make_result() {
  finished_ = true;
  close_fd(files_[0]);
  close_fd(files_[1]);
  close_fd(pidfd_);
  const bool signalled = WIFSIGNALED(status_);
  const int sig = signalled ? WTERMSIG(status_) : 0;
  result_.exit_code = signalled ? 128 + sig : WEXITSTATUS(status_);
  if (stop_ == Stop::timeout) {
    result_.outcome = Outcome::failed;
    result_.reason = fmt::format("timed out after {:g} s and was stopped", timeout_s_);
  } else if (stop_ == Stop::cancel) {
    result_.outcome = Outcome::canceled;
    result_.reason = stop_reason_;
  } else if (!signalled && result_.exit_code == 0) {
    result_.outcome = Outcome::done;
  } else if (!signalled) {
    result_.outcome = Outcome::failed;
    result_.reason = fmt::format("exited with code {}", result_.exit_code);
  } else {
    result_.reason = fmt::format("killed by signal {} ({})", sig, ::strsignal(sig));
    result_.outcome = Outcome::failed;
    if (stop_signal() != 0) {
      // The job's own stop reached the group through the signal handler.
      result_.outcome = Outcome::canceled;
      result_.reason += " when the run was interrupted";
    }
  }
  if (result_.outcome == Outcome::failed && !paths_[1].empty()) {
    // What the program said last is usually why: a loader's "cannot open
    // shared object file", a Python traceback's last line.
    if (const std::string tail = tail_of_file(paths_[1]); !tail.empty()) {
      result_.reason += fmt::format("; its stderr ends: {}", tail);
    }
  }
}

CommandResult run_command(const CommandLaunch& launch, const std::function<bool()>& should_stop) {
  RunningCommand cmd(launch);
  std::vector<pollfd> fds;
  int wait_ms = 1;  // short first waits catch quick commands without a long nap
  for (;;) {
    cmd.progress();
    if (cmd.finished()) break;
    fds.clear();
    cmd.add_poll_fds(fds);
    ::poll(fds.data(), fds.size(), wait_ms);
    wait_ms = std::min(wait_ms * 2, 100);
    if (should_stop && should_stop()) cmd.cancel("stopped: the run was interrupted");
  }
  return cmd.result();
}

}  // namespace tandem::detail
