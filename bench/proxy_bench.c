/* The proxy benchmark's task: round trips of the echo service through the
 * worker's proxy with the C API, then Redis SET+GET of the same bytes from
 * the same process (SmartSim's path), each a median over many trips.
 * Prints JSON lines. Usage (as a task): proxy_bench REDIS_PORT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <tandem/tandem.h>

#include "timing.h"

int main(int argc, char** argv) {
  const size_t sizes[2] = {1024, 1 << 20};
  const int trips[2] = {5000, 300};
  tandem_client* client = NULL;
  if (tandem_connect(&client) != TANDEM_OK || tandem_wait_ready(client, "echo", 60) != TANDEM_OK) {
    fprintf(stderr, "proxy_bench: %s\n", tandem_last_error());
    return 1;
  }
  double* t = malloc(sizeof(double) * 6000);
  char* data = calloc(1, sizes[1]);
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
    printf("{\"kind\": \"proxy\", \"bytes\": %zu, \"median_us\": %.3f}\n", sizes[s],
           median(t, trips[s]));
    tandem_tensor_free(x);
  }
  tandem_disconnect(client);
  if (argc > 1) {
    redisContext* r = redisConnect("127.0.0.1", atoi(argv[1]));
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
  }
  free(t);
  free(data);
  return 0;
}
