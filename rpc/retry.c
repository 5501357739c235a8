/* Retry policy and budget (see retry.h). The budget is a token bucket, as gRPC's retry
 * throttling and Finagle's RetryBudget: each call deposits a tenth of a token and each retry
 * spends one, so retries stay under 10% of calls, plus a floor that refills with time. */
#include "rpc/retry.h"

#include <errno.h>
#include <string.h>

int rpc__retry_init(rpc__retry *r, const char *const *methods, size_t n, int max_attempts,
                    uint64_t now) {
  memset(r, 0, sizeof *r);
  if (n > RPC_MAX_IDEMPOTENT_METHODS || (n && !methods) || max_attempts < 0 ||
      max_attempts > RPC_RETRY_MAX_ATTEMPTS_LIMIT)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!methods[i] || !methods[i][0]) return -EINVAL;
    r->ids[r->n++] = rpc_method_id(methods[i], strlen(methods[i]));
  }
  r->max_attempts = max_attempts ? (unsigned)max_attempts : RPC_DEFAULT_RETRY_MAX_ATTEMPTS;
  r->tokens = RPC_RETRY_BUDGET_FLOOR;
  r->refilled = now;
  return 0;
}

int rpc__retry_idempotent(const rpc__retry *r, uint32_t method_id) {
  for (unsigned i = 0; i < r->n; i++)
    if (r->ids[i] == method_id) return 1;
  return 0;
}

void rpc__retry_deposit(rpc__retry *r) {
  r->tokens += RPC_RETRY_BUDGET_RATIO;
  if (r->tokens > RPC_RETRY_BUDGET_CAP) r->tokens = RPC_RETRY_BUDGET_CAP;
}

int rpc__retry_withdraw(rpc__retry *r, uint64_t now) {
  if (now > r->refilled) {
    double gain = (double)(now - r->refilled) * 1e-9 * RPC_RETRY_BUDGET_FLOOR;
    if (r->tokens < RPC_RETRY_BUDGET_FLOOR) {
      r->tokens += gain;
      if (r->tokens > RPC_RETRY_BUDGET_FLOOR) r->tokens = RPC_RETRY_BUDGET_FLOOR;
    }
    r->refilled = now;
  }
  if (r->tokens < 1.0) return 0;
  r->tokens -= 1.0;
  return 1;
}

uint64_t rpc__retry_delay_ns(unsigned retry, uint64_t rand) {
  double ms = RPC_RETRY_BACKOFF_INITIAL_MS;
  for (unsigned i = 1; i < retry && ms < RPC_RETRY_BACKOFF_MAX_MS; i++) ms *= 2;
  if (ms > RPC_RETRY_BACKOFF_MAX_MS) ms = RPC_RETRY_BACKOFF_MAX_MS;
  double jitter = 0.5 + (double)(rand >> 11) / (double)(1ull << 53); /* [0.5, 1.5) */
  return (uint64_t)(ms * jitter * 1e6);
}
