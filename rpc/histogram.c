/* The log-linear latency histogram of rpc/histogram.h. */
#include "rpc/histogram.h"

/* Values are bucketed as u = v - 1, so that a bound is inclusive: u in [lower(i), lower(i+1)). */
static uint64_t lower(unsigned i) {
  if (i < RPC_HIST_LINEAR) return i;
  unsigned e = (i - RPC_HIST_LINEAR) / (1u << RPC_HIST_SUB_BITS) + 3u;
  uint64_t sub = (i - RPC_HIST_LINEAR) % (1u << RPC_HIST_SUB_BITS);
  return (1ull << e) + (sub << (e - RPC_HIST_SUB_BITS));
}

unsigned rpc_histogram_index(uint64_t us) {
  uint64_t u = us ? us - 1 : 0;
  if (u < RPC_HIST_LINEAR) return (unsigned)u;
  if (u >= (1ull << RPC_HIST_MAX_EXP)) return RPC_HIST_BOUNDS;
  unsigned e = 63u - (unsigned)__builtin_clzll(u); /* 3 .. MAX_EXP-1 */
  unsigned sub = (unsigned)(u >> (e - RPC_HIST_SUB_BITS)) & ((1u << RPC_HIST_SUB_BITS) - 1u);
  return RPC_HIST_LINEAR + (e - 3u) * (1u << RPC_HIST_SUB_BITS) + sub;
}

uint64_t rpc_histogram_bound(unsigned i) {
  return i < RPC_HIST_BOUNDS ? lower(i + 1) : UINT64_MAX;
}

void rpc_histogram_record(rpc_histogram *h, uint64_t us) {
  h->counts[rpc_histogram_index(us)]++;
  h->count++;
  h->sum_us += us;
  if (us > h->max_us) h->max_us = us;
}

void rpc_histogram_merge(rpc_histogram *dst, const rpc_histogram *src) {
  for (unsigned i = 0; i < RPC_HIST_BUCKETS; i++) dst->counts[i] += src->counts[i];
  dst->count += src->count;
  dst->sum_us += src->sum_us;
  if (src->max_us > dst->max_us) dst->max_us = src->max_us;
}

uint64_t rpc_histogram_percentile(const rpc_histogram *h, double q) {
  if (h->count == 0 || !(q > 0)) return 0;
  if (q > 1) q = 1;
  double x = q * (double)h->count;
  uint64_t want = (uint64_t)x;
  if ((double)want < x || want == 0) want++; /* ceil, and at least one value */
  uint64_t seen = 0;
  for (unsigned i = 0; i < RPC_HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= want) {
      uint64_t b = rpc_histogram_bound(i);
      return b < h->max_us ? b : h->max_us;
    }
  }
  return h->max_us;
}
