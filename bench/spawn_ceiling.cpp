// The machine's ceiling for executable tasks: how many /bin/true processes
// per second posix_spawn + waitpid can start and reap with 1, 2, 4 and 8
// spawning threads, no scheduler at all. bench/pilot_throughput.py prints it
// beside the task rates, since no task runner can beat it.

#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  const int per_thread = argc > 1 ? std::atoi(argv[1]) : 500;
  double best = 0;
  for (int threads : {1, 2, 4, 8}) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([per_thread] {
        char prog[] = "/bin/true";
        char* args[] = {prog, nullptr};
        for (int i = 0; i < per_thread; ++i) {
          pid_t pid = 0;
          if (posix_spawn(&pid, prog, nullptr, nullptr, args, environ) != 0) std::abort();
          int status = 0;
          waitpid(pid, &status, 0);
        }
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = threads * per_thread / s;
    best = std::max(best, rate);
    std::printf("%d thread(s): %.0f spawns/s\n", threads, rate);
  }
  std::printf("ceiling: %.0f\n", best);
}
