/* An executable task for the proxy tests. Each mode checks what it gets and
 * exits 0 only if the proxy behaved; the services are "double" (scale by 2)
 * and "echo".
 *
 *   proxy_task check ROWS        one request, every value checked
 *   proxy_task flood N           N requests in flight at once, all checked
 *   proxy_task twice             two connections from one process, both work
 *   proxy_task garbage           junk on the socket: an error reply, then a
 *                                good request on a new connection works
 *   proxy_task huge-frame        a frame length past reason: the proxy closes
 *                                the connection; a new one works
 *   proxy_task die-mid-request   sends a 1 MiB request and exits at once
 *   proxy_task unknown-service   a clear TANDEM_ERR_SERVICE naming the service
 *   proxy_task no-socket         without TANDEM_SOCKET: TANDEM_ERR_CONNECT
 *   proxy_task matrix            every dtype from 1 B to 256 MiB to "echo",
 *                                through the proxy and on the direct path:
 *                                both give back the bytes sent; one line
 *                                "dtype bytes hash" each on stdout
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <tandem/tandem.h>

#include "echo_matrix.h"

#define FAIL(...)                    \
  do {                               \
    fprintf(stderr, "proxy_task: "); \
    fprintf(stderr, __VA_ARGS__);    \
    fprintf(stderr, "\n");           \
    exit(1);                         \
  } while (0)

static void ok(tandem_status s, const char* what) {
  if (s != TANDEM_OK) FAIL("%s: %s: %s", what, tandem_status_name(s), tandem_last_error());
}

static tandem_client* connect_ready(void) {
  tandem_client* c = NULL;
  ok(tandem_connect(&c), "connect");
  ok(tandem_wait_ready(c, "double", 60), "wait_ready");
  return c;
}

/* Sends rows x 4 floats (seeded by seed) to "double" and checks 2x. */
static tandem_request* send_rows(tandem_client* c, int64_t rows, float seed, float** keep,
                                 tandem_tensor** tensor) {
  float* x = malloc(sizeof(float) * rows * 4);
  for (int64_t i = 0; i < rows * 4; ++i) x[i] = seed + (float)i;
  const int64_t dims[2] = {rows, 4};
  ok(tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, tensor), "tensor");
  const char* names[1] = {"x"};
  tandem_request* r = NULL;
  ok(tandem_infer_async(c, "double", 1, names, tensor, &r), "infer_async");
  *keep = x;
  return r;
}

static void check_reply(tandem_request* r, int64_t rows, float seed) {
  tandem_outputs* out = NULL;
  ok(tandem_wait(r, &out), "wait");
  if (tandem_outputs_count(out) != 1) FAIL("expected one output");
  const tandem_tensor* y = tandem_outputs_tensor(out, 0);
  if (tandem_outputs_find(out, "x") != y) FAIL("the output is not found by its name");
  /* A name the reply lacks: NULL, and the error names what it has. */
  if (tandem_outputs_find(out, "r") != NULL ||
      strcmp(tandem_last_error(), "no output 'r' (have: x)") != 0)
    FAIL("a missing output says '%s'", tandem_last_error());
  if (tandem_tensor_ndim(y) != 2 || tandem_tensor_dim(y, 0) != rows || tandem_tensor_dim(y, 1) != 4)
    FAIL("wrong output shape");
  const float* v = tandem_tensor_data(y);
  for (int64_t i = 0; i < rows * 4; ++i) {
    if (v[i] != 2.0f * (seed + (float)i))
      FAIL("value %lld is %g, not %g", (long long)i, v[i], 2.0f * (seed + (float)i));
  }
  tandem_outputs_free(out);
}

/* Whether this process maps a Tandem shared-memory segment of its own
 * (mine != 0) or of another process (mine == 0): proof that a tensor went
 * through shared memory rather than through the socket. */
static int maps_segment(int mine) {
  char own[64];
  snprintf(own, sizeof own, "/dev/shm/tandem.%d.", (int)getpid());
  FILE* maps = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (maps && fgets(line, sizeof line, maps)) {
    const char* seg = strstr(line, "/dev/shm/tandem.");
    if (!seg) continue;
    const int is_own = strncmp(seg, own, strlen(own)) == 0;
    if (is_own == (mine != 0)) found = 1;
  }
  if (maps) fclose(maps);
  return found;
}

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

/* Sends @p n bytes of @p dtype to "echo" and checks they come back. */
static void echo_back(tandem_client* c, int dtype, const unsigned char* x, size_t n,
                      const char* path) {
  const int64_t dims[1] = {matrix_elements(dtype, n)};
  tandem_tensor* t = NULL;
  ok(tandem_tensor_view((tandem_dtype)dtype, 1, dims, TANDEM_ROW_MAJOR, (void*)x, &t), "tensor");
  const char* names[1] = {"x"};
  tandem_outputs* out = NULL;
  ok(tandem_infer(c, "echo", 1, names, &t, &out), path);
  const tandem_tensor* y = tandem_outputs_tensor(out, 0);
  if (tandem_tensor_dtype(y) != (tandem_dtype)dtype || tandem_tensor_nbytes(y) != n ||
      memcmp(tandem_tensor_data(y), x, n) != 0)
    FAIL("%s: dtype %d, %zu bytes did not come back as sent", path, dtype, n);
  tandem_outputs_free(out);
  tandem_tensor_free(t);
}

static void echo_matrix(void) {
  /* The proxy first (TANDEM_DIRECT=0), while nothing maps an endpoint. */
  setenv("TANDEM_DIRECT", "0", 1);
  tandem_client* proxy = NULL;
  ok(tandem_connect(&proxy), "connect");
  unsetenv("TANDEM_DIRECT");
  ok(tandem_wait_ready(proxy, "echo", 60), "wait_ready");
  tandem_client* direct = NULL;
  ok(tandem_connect(&direct), "connect");
  unsigned char* x = malloc(matrix_bytes[MATRIX_SIZES - 1]);
  for (int dtype = 0; dtype < MATRIX_DTYPES; ++dtype) {
    for (int s = 0; s < MATRIX_SIZES; ++s) {
      const size_t n = (size_t)matrix_elements(dtype, matrix_bytes[s]) * matrix_dtype_size[dtype];
      matrix_fill(x, n, dtype);
      echo_back(proxy, dtype, x, n, "through the proxy");
      if (dtype == 0 && s == 0 && maps_direct_endpoint())
        FAIL("TANDEM_DIRECT=0 took the direct path");
      echo_back(direct, dtype, x, n, "on the direct path");
      printf("%d %zu %016llx\n", dtype, n, (unsigned long long)matrix_hash(x, n));
    }
  }
  if (!maps_direct_endpoint()) FAIL("the direct path was not taken");
  free(x);
  tandem_disconnect(direct);
  tandem_disconnect(proxy);
}

static int raw_socket(void) {
  const char* path = getenv("TANDEM_SOCKET");
  if (!path) FAIL("TANDEM_SOCKET is not set");
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) FAIL("raw connect failed");
  return fd;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "check";
  if (!strcmp(mode, "check")) {
    const int64_t rows = argc > 2 ? atoll(argv[2]) : 2;
    /* No wait_ready: the first request waits while "double" starts. */
    tandem_client* c = NULL;
    ok(tandem_connect(&c), "connect");
    ok(tandem_set_ready_timeout(c, 120), "set_ready_timeout");
    float* x;
    tandem_tensor* t;
    tandem_request* r = send_rows(c, rows, 1.0f, &x, &t);
    check_reply(r, rows, 1.0f);
    /* 32 KiB and up: the request left from our segment, the reply came in
     * the worker's. */
    if (rows * 16 >= 32 * 1024 && (!maps_segment(1) || !maps_segment(0)))
      FAIL("a %lld-row request did not travel through shared memory both ways", (long long)rows);
    tandem_tensor_free(t);
    free(x);
    tandem_disconnect(c);
  } else if (!strcmp(mode, "flood")) {
    const int n = argc > 2 ? atoi(argv[2]) : 1000;
    tandem_client* c = connect_ready();
    tandem_request** r = malloc(sizeof *r * n);
    float** x = malloc(sizeof *x * n);
    tandem_tensor** t = malloc(sizeof *t * n);
    for (int i = 0; i < n; ++i) r[i] = send_rows(c, 3, (float)(i * 100), &x[i], &t[i]);
    for (int i = 0; i < n; ++i) {
      check_reply(r[i], 3, (float)(i * 100));
      tandem_tensor_free(t[i]);
      free(x[i]);
    }
    tandem_disconnect(c);
    printf("flood: %d requests answered\n", n);
  } else if (!strcmp(mode, "twice")) {
    tandem_client* a = connect_ready();
    tandem_client* b = connect_ready();
    float *xa, *xb;
    tandem_tensor *ta, *tb;
    tandem_request* ra = send_rows(a, 2, 5.0f, &xa, &ta);
    tandem_request* rb = send_rows(b, 2, 7.0f, &xb, &tb);
    check_reply(rb, 2, 7.0f);
    check_reply(ra, 2, 5.0f);
    tandem_disconnect(a);
    tandem_disconnect(b);
  } else if (!strcmp(mode, "garbage")) {
    int fd = raw_socket();
    /* A well-formed frame holding junk: the proxy answers with an error. */
    char junk[72];
    memset(junk, 0xAB, sizeof junk);
    uint64_t len = sizeof junk;
    write(fd, &len, sizeof len);
    write(fd, junk, sizeof junk);
    uint64_t reply_len = 0;
    if (read(fd, &reply_len, sizeof reply_len) != sizeof reply_len || reply_len == 0 ||
        reply_len > 4096)
      FAIL("no error reply to garbage");
    char* reply = malloc(reply_len + 1);
    size_t got = 0;
    while (got < reply_len) {
      ssize_t k = read(fd, reply + got, reply_len - got);
      if (k <= 0) FAIL("short error reply");
      got += (size_t)k;
    }
    reply[reply_len] = 0;
    int found = 0;
    for (size_t i = 0; i + 8 < reply_len; ++i)
      if (!memcmp(reply + i, "could not", 9)) found = 1;
    if (!found) FAIL("the error reply does not say what went wrong");
    close(fd);
    tandem_client* c = connect_ready();
    float* x;
    tandem_tensor* t;
    check_reply(send_rows(c, 2, 3.0f, &x, &t), 2, 3.0f);
    tandem_disconnect(c);
  } else if (!strcmp(mode, "huge-frame")) {
    int fd = raw_socket();
    uint64_t len = (uint64_t)1 << 40;
    write(fd, &len, sizeof len);
    char byte;
    if (read(fd, &byte, 1) != 0) FAIL("the proxy kept a connection that sent a 1 TiB frame");
    close(fd);
    tandem_client* c = connect_ready();
    float* x;
    tandem_tensor* t;
    check_reply(send_rows(c, 2, 4.0f, &x, &t), 2, 4.0f);
    tandem_disconnect(c);
  } else if (!strcmp(mode, "die-mid-request")) {
    tandem_client* c = connect_ready();
    float* x;
    tandem_tensor* t;
    send_rows(c, 65536, 1.0f, &x, &t); /* 1 MiB, through shared memory */
    _exit(0);                          /* no reply read, nothing cleaned up */
  } else if (!strcmp(mode, "unknown-service")) {
    tandem_client* c = connect_ready();
    float x[4] = {1, 2, 3, 4};
    const int64_t dims[1] = {4};
    tandem_tensor* t;
    ok(tandem_tensor_view(TANDEM_FP32, 1, dims, TANDEM_ROW_MAJOR, x, &t), "tensor");
    const char* names[1] = {"x"};
    tandem_outputs* out = NULL;
    tandem_status s = tandem_infer(c, "no_such_model", 1, names, &t, &out);
    if (s != TANDEM_ERR_SERVICE || !strstr(tandem_last_error(), "no_such_model"))
      FAIL("unknown service gave %s: %s", tandem_status_name(s), tandem_last_error());
    tandem_disconnect(c);
  } else if (!strcmp(mode, "deadline")) {
    /* Through the proxy: a deadline too short to meet is TANDEM_ERR_DEADLINE,
     * a long one is answered, and the outputs name who answered. */
    tandem_client* c = connect_ready();
    float x[4] = {1, 2, 3, 4};
    const int64_t dims[2] = {1, 4};
    tandem_tensor* t;
    ok(tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, &t), "tensor");
    const char* names[1] = {"x"};
    tandem_infer_options opts = {0, TANDEM_TRANSPORT_AUTO, 0.001};
    tandem_request* r = NULL;
    ok(tandem_infer_async_opts(c, "double", 1, names, &t, &opts, &r), "infer_async_opts");
    tandem_outputs* out = NULL;
    tandem_status s = tandem_wait(r, &out);
    if (s != TANDEM_ERR_DEADLINE || !strstr(tandem_last_error(), "deadline exceeded"))
      FAIL("a 1 us deadline gave %s: %s", tandem_status_name(s), tandem_last_error());
    opts.deadline_ms = 10000;
    ok(tandem_infer_async_opts(c, "double", 1, names, &t, &opts, &r), "infer_async_opts");
    ok(tandem_wait(r, &out), "wait with a long deadline");
    const float* y = tandem_tensor_data(tandem_outputs_tensor(out, 0));
    if (y[3] != 8.0f) FAIL("wrong answer %g", y[3]);
    if (strcmp(tandem_outputs_source(out), "double") != 0)
      FAIL("source '%s'", tandem_outputs_source(out));
    opts.deadline_ms = -1;
    if (tandem_infer_async_opts(c, "double", 1, names, &t, &opts, &r) != TANDEM_ERR_ARGUMENT)
      FAIL("a negative deadline was taken");
    tandem_outputs_free(out);
    tandem_tensor_free(t);
    tandem_disconnect(c);
    printf("deadlines through the proxy: as they should be\n");
  } else if (!strcmp(mode, "no-socket")) {
    unsetenv("TANDEM_SOCKET");
    tandem_client* c = NULL;
    tandem_status s = tandem_connect(&c);
    if (s != TANDEM_ERR_CONNECT || !strstr(tandem_last_error(), "TANDEM_SOCKET"))
      FAIL("connect without a socket gave %s: %s", tandem_status_name(s), tandem_last_error());
  } else if (!strcmp(mode, "matrix")) {
    echo_matrix();
  } else {
    FAIL("unknown mode %s", mode);
  }
  return 0;
}
