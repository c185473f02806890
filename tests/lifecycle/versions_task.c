/* An executable task (C, through the worker's proxy): expects service "t"
 * at version FROM, loads TO from FILE, and checks the replies' versions
 * and values (version N multiplies by N).
 *   versions_task FROM TO FILE */
#include <stdio.h>
#include <stdlib.h>

#include <tandem/tandem.h>

static int infer_check(tandem_client* client, int version) {
  float x[8];
  for (int i = 0; i < 8; ++i) x[i] = (float)(i + 1);
  const int64_t dims[2] = {2, 4};
  tandem_tensor* in = NULL;
  tandem_outputs* out = NULL;
  const char* names[1] = {"x"};
  if (tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, &in) != TANDEM_OK) return 1;
  const tandem_status s = tandem_infer(client, "t", 1, names, &in, &out);
  tandem_tensor_free(in);
  if (s != TANDEM_OK) {
    fprintf(stderr, "infer: %s\n", tandem_last_error());
    return 1;
  }
  const float* y = (const float*)tandem_tensor_data(tandem_outputs_find(out, "y"));
  int bad = tandem_outputs_model_version(out) != version;
  for (int i = 0; i < 8; ++i) bad |= y[i] != x[i] * (float)version;
  if (bad)
    fprintf(stderr, "expected version %d, got %d (y[0] %g)\n", version,
            tandem_outputs_model_version(out), y[0]);
  tandem_outputs_free(out);
  return bad;
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const int from = atoi(argv[1]);
  const int to = atoi(argv[2]);
  tandem_client* client = NULL;
  if (tandem_connect(&client) != TANDEM_OK || tandem_wait_ready(client, "t", 60) != TANDEM_OK) {
    fprintf(stderr, "%s\n", tandem_last_error());
    return 1;
  }
  if (infer_check(client, from)) return 1;
  int serving = 0;
  if (tandem_load_model(client, "t", argv[3], to, &serving) != TANDEM_OK || serving != to) {
    fprintf(stderr, "load_model: %s (serving %d)\n", tandem_last_error(), serving);
    return 1;
  }
  if (infer_check(client, to)) return 1;
  tandem_disconnect(client);
  printf("c: versions %d -> %d through the proxy\n", from, to);
  return 0;
}
