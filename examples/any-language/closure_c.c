/* Asks the served closure model for R(u, a) on a grid of n points, from a
 * plain C program through the worker's proxy, and prints "u a r" lines. */
#include <stdio.h>
#include <stdlib.h>

#include <tandem/tandem.h>

static int check(tandem_status s, const char* what) {
  if (s == TANDEM_OK) return 0;
  fprintf(stderr, "closure_c: %s: %s: %s\n", what, tandem_status_name(s), tandem_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 1000;
  float* x = malloc(sizeof(float) * 2 * n);
  float* r = malloc(sizeof(float) * n);
  for (int i = 0; i < n; ++i) {
    x[2 * i] = (float)i / n;                  /* u in [0, 1) */
    x[2 * i + 1] = 0.5f + 1.5f * (i % 7) / 6; /* a in [0.5, 2] */
  }
  tandem_client* client = NULL;
  if (check(tandem_connect(&client), "connect")) return 1;
  if (check(tandem_wait_ready(client, "closure", 120), "wait_ready")) return 1;
  const int64_t dims[2] = {n, 2};
  tandem_tensor* input = NULL;
  if (check(tandem_tensor_view(TANDEM_FP32, 2, dims, TANDEM_ROW_MAJOR, x, &input), "tensor"))
    return 1;
  const char* names[1] = {"x"};
  tandem_outputs* out = NULL;
  if (check(tandem_infer(client, "closure", 1, names, &input, &out), "infer")) return 1;
  const tandem_tensor* y = tandem_outputs_find(out, "r");
  if (!y || check(tandem_tensor_copy_to(y, r, sizeof(float) * n), "copy")) return 1;
  for (int i = 0; i < n; ++i) printf("%.6f %.6f %.9g\n", x[2 * i], x[2 * i + 1], r[i]);
  tandem_outputs_free(out);
  tandem_tensor_free(input);
  tandem_disconnect(client);
  free(x);
  free(r);
  return 0;
}
