/* Timing helpers shared by the C benchmark programs. */
#ifndef TANDEM_BENCH_TIMING_H
#define TANDEM_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

static inline double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static inline int compare_doubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Sorts @p v in place and returns its median. */
static inline double median(double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, compare_doubles);
  return v[n / 2];
}

#endif
