/* The facts about a machine that decide how fast a job coordinator can be
 * there, for bench/all.py: what a process wake-up costs (a 1 KiB round
 * trip over a Unix socket between two processes), what a system call costs
 * (sched_yield, getpid), and the memcpy bandwidth far beyond the caches.
 * Prints one JSON object. Usage: machine_facts */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

static void exchange(int fd, char* buf, size_t n, int first_write) {
  for (int step = 0; step < 2; ++step) {
    size_t done = 0;
    if ((step == 0) == (first_write != 0)) {
      while (done < n) done += (size_t)write(fd, buf + done, n - done);
    } else {
      while (done < n) {
        const ssize_t got = read(fd, buf + done, n - done);
        if (got <= 0) exit(1);
        done += (size_t)got;
      }
    }
  }
}

/* Median round trip of 1 KiB between this process and a forked child. */
static double socket_round_trip_us(void) {
  enum { kTrips = 20000, kWarm = 1000, kBytes = 1024 };
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return -1;
  char buf[kBytes];
  memset(buf, 1, sizeof buf);
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    for (int i = 0; i < kTrips + kWarm; ++i) exchange(fds[1], buf, kBytes, 0);
    _exit(0);
  }
  close(fds[1]);
  static double t[kTrips];
  for (int i = 0; i < kTrips + kWarm; ++i) {
    const double t0 = now_us();
    exchange(fds[0], buf, kBytes, 1);
    if (i >= kWarm) t[i - kWarm] = now_us() - t0;
  }
  waitpid(child, NULL, 0);
  close(fds[0]);
  return median(t, kTrips);
}

static double syscall_us(long number) {
  enum { kCalls = 200000 };
  const double t0 = now_us();
  for (int i = 0; i < kCalls; ++i) syscall(number);
  return (now_us() - t0) / kCalls;
}

/* Best of 5 copies of 256 MiB, touched first (first-touch faults are not
 * the copy's cost). */
static double memcpy_gb_per_s(void) {
  const size_t n = (size_t)256 << 20;
  char* a = malloc(n);
  char* b = malloc(n);
  if (!a || !b) return -1;
  memset(a, 1, n);
  memset(b, 2, n);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const double t0 = now_us();
    memcpy(b, a, n);
    const double took = now_us() - t0;
    if (took < best) best = took;
  }
  const double gbps = n / best / 1e3;
  free(a);
  free(b);
  return gbps;
}

int main(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  printf(
      "{\"cpus\": %d, \"unix_socket_rtt_1k_us\": %.2f, \"sched_yield_us\": %.3f, "
      "\"getpid_us\": %.3f, \"memcpy_gb_per_s\": %.2f}\n",
      CPU_COUNT(&set), socket_round_trip_us(), syscall_us(SYS_sched_yield), syscall_us(SYS_getpid),
      memcpy_gb_per_s());
  return 0;
}
