/* gaio-c RPC: the one latency histogram shape (log-linear, microseconds), used by the server's
 * and the channel's counters, the admin service and the command-line client.
 *
 * A value v (µs) falls in the first bucket i with v <= rpc_histogram_bound(i): the bounds are
 * 1, 2, .., 8, then four buckets per power of two (10, 12, 14, 16, 20, 24, 28, 32, 40, ...) up to
 * 2^27 µs (134.2 s); one more bucket holds everything above. Every value is thus known within
 * 25% (the bucket's width over its lower end), with 105 counters and no allocation. Recording
 * is O(1). Plain structs: they are snapshots (the live counters of a server or channel are
 * internal); whoever owns one may use it from one thread at a time. */
#ifndef GAIO_RPC_HISTOGRAM_H
#define GAIO_RPC_HISTOGRAM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RPC_HIST_SUB_BITS 2u   /* 2^2 = 4 buckets per power of two */
#define RPC_HIST_LINEAR 8u     /* values 0..8 µs: buckets of 1 µs */
#define RPC_HIST_MAX_EXP 27u   /* the last finite bound: 2^27 µs */
#define RPC_HIST_BOUNDS \
  (RPC_HIST_LINEAR + (RPC_HIST_MAX_EXP - 3u) * (1u << RPC_HIST_SUB_BITS)) /* 104 */
#define RPC_HIST_BUCKETS (RPC_HIST_BOUNDS + 1u) /* and one for the values above the last bound */

typedef struct rpc_histogram {
  uint64_t counts[RPC_HIST_BUCKETS]; /* counts[i]: values in (bound(i-1), bound(i)] */
  uint64_t count;                    /* sum of counts */
  uint64_t sum_us;
  uint64_t max_us;
} rpc_histogram;

/* The bucket of a value (0 .. RPC_HIST_BUCKETS-1). */
unsigned rpc_histogram_index(uint64_t us);

/* The inclusive upper bound of bucket i, in µs, for i < RPC_HIST_BOUNDS; UINT64_MAX for the
 * last bucket. */
uint64_t rpc_histogram_bound(unsigned i);

/* Count one value. */
void rpc_histogram_record(rpc_histogram *h, uint64_t us);

/* Add every count of src into dst. */
void rpc_histogram_merge(rpc_histogram *dst, const rpc_histogram *src);

/* The value at or below which a fraction q (0 < q <= 1) of the values lie: the bound of the
 * bucket where the running count reaches ceil(q * count), capped at max_us (so q = 1 gives
 * max_us exactly). 0 when the histogram is empty. */
uint64_t rpc_histogram_percentile(const rpc_histogram *h, double q);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_RPC_HISTOGRAM_H */
