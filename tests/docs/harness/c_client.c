/* A C block that asks a service, inside a function with the data it uses. */
#include <stdint.h>
#include <stdio.h>

#include <tandem/tandem.h>

int docs_example(int64_t n, float* data, float* result) {
  /* @DOC@ */
  return 0;
}
