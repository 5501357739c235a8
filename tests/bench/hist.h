/* A latency histogram with log-linear buckets (HdrHistogram's shape, fixed size, no allocation):
 * values below 2^HIST_SUB_BITS+1 have one bucket each; above, every power of two is split into
 * 2^HIST_SUB_BITS buckets, so any value is known within 1/32 (about 3%). Values are uint64
 * (nanoseconds here). Header-only: the load generator is its one user. */
#ifndef GAIO_TESTS_BENCH_HIST_H
#define GAIO_TESTS_BENCH_HIST_H

#include <stdint.h>
#include <string.h>

#define HIST_SUB_BITS 5u                  /* 32 buckets per power of two */
#define HIST_LINEAR (2u << HIST_SUB_BITS) /* 64 exact buckets: 0..63 */
#define HIST_BUCKETS (HIST_LINEAR + (64u - HIST_SUB_BITS - 1u) * (1u << HIST_SUB_BITS))

typedef struct hist {
  uint64_t count;
  uint64_t max;
  uint64_t buckets[HIST_BUCKETS];
} hist;

static inline unsigned hist_index(uint64_t v) {
  if (v < HIST_LINEAR) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS + 1 */
  unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1u);
  return HIST_LINEAR + (e - HIST_SUB_BITS - 1u) * (1u << HIST_SUB_BITS) + sub;
}

/* The middle of bucket i's value range. */
static inline uint64_t hist_value(unsigned i) {
  if (i < HIST_LINEAR) return i;
  unsigned e = (i - HIST_LINEAR) / (1u << HIST_SUB_BITS) + HIST_SUB_BITS + 1u;
  uint64_t sub = (i - HIST_LINEAR) % (1u << HIST_SUB_BITS);
  uint64_t low = (1ull << e) + (sub << (e - HIST_SUB_BITS));
  return low + (1ull << (e - HIST_SUB_BITS)) / 2u;
}

static inline void hist_reset(hist *h) { memset(h, 0, sizeof(*h)); }

static inline void hist_add(hist *h, uint64_t v) {
  h->buckets[hist_index(v)]++;
  h->count++;
  if (v > h->max) h->max = v;
}

/* The value at quantile q (0..1): the bucket where the running count reaches q * count. */
static inline uint64_t hist_quantile(const hist *h, double q) {
  if (h->count == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)h->count);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += h->buckets[i];
    if (seen >= want) return hist_value(i) < h->max ? hist_value(i) : h->max;
  }
  return h->max;
}

#endif /* GAIO_TESTS_BENCH_HIST_H */
