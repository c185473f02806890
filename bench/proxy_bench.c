/* The proxy benchmark's task: round trips of the echo service with the C
 * API — on the direct path to the node-local replica, then through the
 * worker's proxy (a second connection with TANDEM_DIRECT=0) — then Redis
 * SET+GET of the same bytes from the same process (SmartSim's path), and a
 * bare Unix-socket round trip between this process and a child (the floor
 * for one wake-up each way). Each a median over many trips. Prints JSON
 * lines. Usage (as a task): proxy_bench REDIS_PORT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <tandem/tandem.h>

#include "timing.h"

static const size_t sizes[2] = {1024, 1 << 20};
static const int trips[2] = {5000, 300};

/* Whether this process maps a replica's direct endpoint. */
static int maps_direct_endpoint(void) {
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (maps && fgets(line, sizeof line, maps)) {
    if (strstr(line, "/dev/shm/tandem.") && strstr(line, ".direct")) found = 1;
  }
  if (maps) fclose(maps);
  return found;
}

static int echo_trips(const char* kind, char* data, double* t) {
  tandem_client* client = NULL;
  if (tandem_connect(&client) != TANDEM_OK || tandem_wait_ready(client, "echo", 60) != TANDEM_OK) {
    fprintf(stderr, "proxy_bench: %s\n", tandem_last_error());
    return 1;
  }
  for (int s = 0; s < 2; ++s) {
    const int64_t dims[2] = {1, (int64_t)(sizes[s] / 4)};
    tandem_tensor* x = NULL;
    tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, data, &x);
    const char* names[1] = {"x"};
    const int warm = trips[s] / 10;
    for (int i = 0; i < trips[s] + warm; ++i) {
      const double t0 = now_us();
      tandem_outputs* out = NULL;
      if (tandem_infer(client, "echo", 1, names, &x, &out) != TANDEM_OK) {
        fprintf(stderr, "proxy_bench: %s\n", tandem_last_error());
        return 1;
      }
      if (tandem_tensor_nbytes(tandem_outputs_tensor(out, 0)) != sizes[s]) return 1;
      tandem_outputs_free(out);
      if (i >= warm) t[i - warm] = now_us() - t0;
    }
    printf("{\"kind\": \"%s\", \"bytes\": %zu, \"median_us\": %.3f}\n", kind, sizes[s],
           median(t, trips[s]));
    tandem_tensor_free(x);
  }
  if (!strcmp(kind, "direct") && !maps_direct_endpoint()) {
    fprintf(stderr, "proxy_bench: the direct path was not taken\n");
    return 1;
  }
  tandem_disconnect(client);
  return 0;
}

static int redis_trips(int port, const char* data, double* t) {
  redisContext* r = redisConnect("127.0.0.1", port);
  if (!r || r->err) {
    fprintf(stderr, "proxy_bench: cannot reach redis\n");
    return 1;
  }
  for (int s = 0; s < 2; ++s) {
    const int warm = trips[s] / 10;
    for (int i = 0; i < trips[s] + warm; ++i) {
      const double t0 = now_us();
      freeReplyObject(redisCommand(r, "SET t %b", data, sizes[s]));
      redisReply* got = redisCommand(r, "GET t");
      if (!got || got->type != REDIS_REPLY_STRING || (size_t)got->len != sizes[s]) return 1;
      freeReplyObject(got);
      if (i >= warm) t[i - warm] = now_us() - t0;
    }
    printf("{\"kind\": \"redis\", \"bytes\": %zu, \"median_us\": %.3f}\n", sizes[s],
           median(t, trips[s]));
  }
  redisFree(r);
  return 0;
}

static int full_io(int fd, char* buf, size_t n, int writing) {
  for (size_t done = 0; done < n;) {
    const ssize_t k = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
    if (k <= 0) return 1;
    done += (size_t)k;
  }
  return 0;
}

/* 1 KiB there and back over a Unix socket pair, to a child that echoes. */
static int socket_trips(double* t) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  const int n = trips[0], warm = n / 10;
  char buf[1024] = {0};
  const pid_t child = fork();
  if (child == 0) {
    close(sv[0]);
    for (int i = 0; i < n + warm; ++i) {
      if (full_io(sv[1], buf, sizeof buf, 0) || full_io(sv[1], buf, sizeof buf, 1)) _exit(1);
    }
    _exit(0);
  }
  close(sv[1]);
  for (int i = 0; i < n + warm; ++i) {
    const double t0 = now_us();
    if (full_io(sv[0], buf, sizeof buf, 1) || full_io(sv[0], buf, sizeof buf, 0)) return 1;
    if (i >= warm) t[i - warm] = now_us() - t0;
  }
  int status = 0;
  waitpid(child, &status, 0);
  close(sv[0]);
  printf("{\"kind\": \"socket\", \"bytes\": 1024, \"median_us\": %.3f}\n", median(t, n));
  return 0;
}

int main(int argc, char** argv) {
  double* t = malloc(sizeof(double) * 6000);
  char* data = calloc(1, sizes[1]);
  if (echo_trips("direct", data, t)) return 1;
  setenv("TANDEM_DIRECT", "0", 1);
  if (echo_trips("proxy", data, t)) return 1;
  if (argc > 1 && redis_trips(atoi(argv[1]), data, t)) return 1;
  if (socket_trips(t)) return 1;
  free(t);
  free(data);
  return 0;
}
