/* Retries of a channel (retry.c): which methods may be retried, how long to wait, and the
 * budget that keeps retries a small share of the load. Private to //rpc; the constants are
 * rpc.h's. Channel thread only. */
#ifndef GAIO_RPC_RETRY_H
#define GAIO_RPC_RETRY_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

typedef struct rpc__retry {
  uint32_t ids[RPC_MAX_IDEMPOTENT_METHODS]; /* method ids of the idempotent methods */
  unsigned n;
  unsigned max_attempts; /* attempts per call, the first included */
  double tokens;         /* the budget: one token per retry */
  uint64_t refilled;     /* when the floor was last refilled (ns, gaio_now()) */
} rpc__retry;

/* Idempotent methods by name ("package.Service/Method"); max_attempts 0 means
 * RPC_DEFAULT_RETRY_MAX_ATTEMPTS. Returns 0, or -EINVAL (more than RPC_MAX_IDEMPOTENT_METHODS,
 * a NULL or empty name, max_attempts < 0 or above RPC_RETRY_MAX_ATTEMPTS_LIMIT). */
int rpc__retry_init(rpc__retry *r, const char *const *methods, size_t n, int max_attempts,
                    uint64_t now);
/* 1 if calls of method_id may be retried. */
int rpc__retry_idempotent(const rpc__retry *r, uint32_t method_id);
/* A call was made: it earns RPC_RETRY_BUDGET_RATIO of a retry. */
void rpc__retry_deposit(rpc__retry *r);
/* A call would be retried at now: 1 and a token is spent, or 0 when the budget is empty. The
 * budget holds at most RPC_RETRY_BUDGET_CAP tokens, and refills to RPC_RETRY_BUDGET_FLOOR at
 * RPC_RETRY_BUDGET_FLOOR tokens per second whatever the traffic (a quiet channel may retry). */
int rpc__retry_withdraw(rpc__retry *r, uint64_t now);
/* The wait before retry number `retry` (1: the first), in ns: RPC_RETRY_BACKOFF_INITIAL_MS
 * doubled per retry up to RPC_RETRY_BACKOFF_MAX_MS, times a jitter in [0.5, 1.5) drawn from
 * rand (any 64 random bits). */
uint64_t rpc__retry_delay_ns(unsigned retry, uint64_t rand);

#endif /* GAIO_RPC_RETRY_H */
