/* Counters, histograms and log lines of the server and the channel: the live, single-writer
 * forms of what rpc.h's *_stats structs snapshot, and the log helper. Private to //rpc. */
#ifndef GAIO_RPC_STATS_H
#define GAIO_RPC_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rpc/rpc.h"

/* A counter written by one thread (its worker or channel thread) and read by any: relaxed
 * loads and stores, plain moves on x86-64, no read-modify-write, no lock prefix. */
typedef _Atomic uint64_t rpc__counter;

static inline void rpc__count(rpc__counter *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static inline uint64_t rpc__get(const rpc__counter *c) {
  return atomic_load_explicit((rpc__counter *)c, memory_order_relaxed);
}

/* rpc_histogram, live: one writer. */
typedef struct rpc__hist {
  rpc__counter counts[RPC_HIST_BUCKETS];
  rpc__counter count, sum_us, max_us;
} rpc__hist;

void rpc__hist_record(rpc__hist *h, uint64_t us);
/* Add a snapshot of h into out. Any thread. */
void rpc__hist_add_to(rpc_histogram *out, const rpc__hist *h);

/* One method's counters in one worker. */
typedef struct rpc__method_counters {
  rpc__counter started, finished, request_bytes, response_bytes;
  rpc__counter completed[RPC_STATUS_CODES];
  rpc__hist latency;
} rpc__method_counters;

/* The answer to a call of method mc with status st (any answer, started or refused). */
static inline void rpc__count_status(rpc__method_counters *mc, int st) {
  rpc__count(&mc->completed[(unsigned)st < RPC_STATUS_CODES ? st : RPC_STATUS_UNKNOWN], 1);
}

/* A log sink with its threshold (copied from the options). */
typedef struct rpc__logger {
  rpc_log_fn fn;
  void *arg;
  int level;
} rpc__logger;

void rpc__logger_init(rpc__logger *l, rpc_log_fn fn, void *arg, int level);

static inline int rpc__log_on(const rpc__logger *l, int level) {
  return l->fn != NULL && level <= l->level;
}

/* Format and hand one line to the sink, if it wants this level. */
void rpc__log(const rpc__logger *l, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An address as text: "127.0.0.1:7000", "[::1]:7000", "unix:/path" ("unix:" unnamed), or "?"
 * (len 0 or another family). Always NUL-terminated within n bytes. */
void rpc__addr_text(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t n);

/* What is wrong with a header that rpc_frame_parse() called -EPROTO (len bytes at p, at least
 * RPC_FRAME_HEADER_SIZE): an enum rpc_protocol_error. */
int rpc__protocol_error_kind(const uint8_t *p, size_t len);

#endif /* GAIO_RPC_STATS_H */
