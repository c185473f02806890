/* C steering from an executable task (tests/steering/test_steering.py):
 * submits, waits as they complete, and checks the errors it gets. */
#include <stdio.h>
#include <string.h>

#include <tandem/tandem.h>

#define CHECK(call)                                            \
  do {                                                         \
    if ((call) != TANDEM_OK) {                                 \
      fprintf(stderr, "%s: %s\n", #call, tandem_last_error()); \
      return 1;                                                \
    }                                                          \
  } while (0)

int main(void) {
  tandem_client* client = NULL;
  CHECK(tandem_connect(&client));
  int64_t handles[4];
  CHECK(tandem_submit(client, "square", "{\"x\": 7}", &handles[0]));
  char requests[256];
  snprintf(requests, sizeof requests,
           "[{\"task\": \"square\", \"args\": {\"x\": 8}},"
           " {\"task\": \"square\", \"args\": {\"x\": 9}, \"after\": [%lld]}]",
           (long long)handles[0]);
  int n = 0;
  CHECK(tandem_submit_json(client, requests, &handles[1], 3, &n));
  if (n != 2) return 2;
  int left = 3;
  while (left > 0) {
    tandem_task_results* done = NULL;
    CHECK(tandem_wait_tasks(client, left, handles, 1, &done));
    for (int i = 0; i < tandem_task_results_count(done); ++i) {
      const int64_t h = tandem_task_result_handle(done, i);
      printf("%s[%d] %s %s\n", tandem_task_result_task(done, i), tandem_task_result_index(done, i),
             tandem_task_result_state(done, i), tandem_task_result_json(done, i));
      for (int j = 0; j < left; ++j) {
        if (handles[j] == h) handles[j] = handles[--left];
      }
    }
    tandem_task_results_free(done);
  }
  int64_t none = 0;
  if (tandem_submit(client, "nonesuch", NULL, &none) != TANDEM_ERR_ARGUMENT) return 3;
  printf("unknown: %s\n", tandem_last_error());
  if (tandem_submit(client, "square", "[1]", &none) != TANDEM_ERR_ARGUMENT) return 4;
  printf("not an object: %s\n", tandem_last_error());
  tandem_disconnect(client);
  return 0;
}
