/* The echo matrix of the direct-path test: every dtype at sizes from 1 byte
 * to 256 MiB, the same bytes made by the C task (proxy_task matrix) and the
 * C++ function task (test_echo_matrix), so that their lines can be
 * compared. C and C++. */
#ifndef TANDEM_TEST_ECHO_MATRIX_H
#define TANDEM_TEST_ECHO_MATRIX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MATRIX_DTYPES 14 /* TANDEM_BOOL .. TANDEM_BYTES, tandem::DType's order */
#define MATRIX_SIZES 6

static const size_t matrix_bytes[MATRIX_SIZES] = {1, 1024, 32767, 32768, 1 << 20, 256u << 20};
static const size_t matrix_dtype_size[MATRIX_DTYPES] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 2, 4, 8, 1};

/* Elements of @p dtype in a tensor of about @p bytes (one at least). */
static inline int64_t matrix_elements(int dtype, size_t bytes) {
  const size_t n = bytes / matrix_dtype_size[dtype];
  return n > 0 ? (int64_t)n : 1;
}

static inline void matrix_fill(unsigned char* p, size_t n, int dtype) {
  for (size_t i = 0; i < n; ++i) {
    p[i] = dtype == 0 ? (unsigned char)(i & 1)
                      : (unsigned char)(i * 131u + (unsigned)dtype * 7u + (i >> 11));
  }
}

/* FNV-1a over 8-byte words, then the tail. */
static inline uint64_t matrix_hash(const unsigned char* p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

#endif
