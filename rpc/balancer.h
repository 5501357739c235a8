/* Balancers (balancer.c): which endpoint of a channel takes the next call. Private to //rpc.
 * The channel describes its endpoints through a view (usable now? calls in flight? weight?) and
 * the balancer answers with an index; it keeps only its own cursor and random state. */
#ifndef GAIO_RPC_BALANCER_H
#define GAIO_RPC_BALANCER_H

#include <stdint.h>

#define RPC__LB_MAX 64u /* endpoints a balancer chooses among (= RPC_MAX_ENDPOINTS) */

/* The endpoints as the balancer sees them, for one pick. */
typedef struct rpc__lb_view {
  unsigned n;                                        /* endpoints 0 .. n-1 (at most RPC__LB_MAX) */
  int (*usable)(const void *arg, unsigned i);        /* can take a call now */
  unsigned (*load)(const void *arg, unsigned i);     /* calls in flight there */
  unsigned (*weight)(const void *arg, unsigned i);   /* relative share, >= 1 */
  const void *arg;
} rpc__lb_view;

typedef struct rpc__balancer {
  int policy;                /* RPC_LB_* of rpc.h, never RPC_LB_DEFAULT */
  unsigned current;          /* pick_first: the endpoint in use; round_robin: the next one */
  long credit[RPC__LB_MAX];  /* round_robin with weights: smooth weighted round robin */
  uint64_t rng;
} rpc__balancer;

/* Set b up for policy (RPC_LB_DEFAULT: p2c). seed starts its random numbers. Returns 0, or
 * -EINVAL for an unknown policy. */
int rpc__balancer_init(rpc__balancer *b, int policy, uint64_t seed);
/* The endpoint for the next call, or -1 when none is usable.
 * - pick_first: the endpoint in use while it is usable, else the first usable one in order;
 * - round_robin: the usable endpoints in turn, each weight times per round;
 * - p2c: two usable endpoints drawn at random (by weight), the one with fewer calls in flight
 *   per unit of weight (ties: the first drawn). */
int rpc__balancer_pick(rpc__balancer *b, const rpc__lb_view *v);

#endif /* GAIO_RPC_BALANCER_H */
