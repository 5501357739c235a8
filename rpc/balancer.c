/* pick_first, round_robin and power-of-two-choices least-outstanding (see balancer.h). */
#include "rpc/balancer.h"

#include <errno.h>
#include <string.h>

#include "rpc/rpc.h"

int rpc__balancer_init(rpc__balancer *b, int policy, uint64_t seed) {
  if (policy == RPC_LB_DEFAULT) policy = RPC_LB_P2C;
  if (policy != RPC_LB_PICK_FIRST && policy != RPC_LB_ROUND_ROBIN && policy != RPC_LB_P2C)
    return -EINVAL;
  memset(b, 0, sizeof *b);
  b->policy = policy;
  b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
  return 0;
}

static uint64_t next_rand(rpc__balancer *b) {
  b->rng ^= b->rng << 13; /* xorshift64 */
  b->rng ^= b->rng >> 7;
  b->rng ^= b->rng << 17;
  return b->rng;
}

static int pick_first(rpc__balancer *b, const rpc__lb_view *v) {
  if (b->current < v->n && v->usable(v->arg, b->current)) return (int)b->current;
  for (unsigned i = 0; i < v->n; i++)
    if (v->usable(v->arg, i)) {
      b->current = i;
      return (int)i;
    }
  return -1;
}

/* Smooth weighted round robin (each usable endpoint gains its weight, the richest is picked and
 * pays the total): with equal weights, plain round robin. */
static int round_robin(rpc__balancer *b, const rpc__lb_view *v) {
  long total = 0;
  int best = -1;
  for (unsigned i = 0; i < v->n; i++) {
    if (!v->usable(v->arg, i)) {
      b->credit[i] = 0;
      continue;
    }
    long w = (long)v->weight(v->arg, i);
    b->credit[i] += w;
    total += w;
    if (best < 0 || b->credit[i] > b->credit[best]) best = (int)i;
  }
  if (best >= 0) b->credit[best] -= total;
  return best;
}

/* One usable endpoint drawn at random in proportion to its weight, skipping `not`. */
static int draw(rpc__balancer *b, const rpc__lb_view *v, const unsigned *idx, unsigned n,
                unsigned long total, int not) {
  unsigned long x = (unsigned long)(next_rand(b) >> 11) % total;
  for (unsigned k = 0; k < n; k++) {
    if ((int)idx[k] == not) continue;
    unsigned long w = v->weight(v->arg, idx[k]);
    if (x < w) return (int)idx[k];
    x -= w;
  }
  return -1;
}

static int p2c(rpc__balancer *b, const rpc__lb_view *v) {
  unsigned idx[RPC__LB_MAX], n = 0;
  unsigned long total = 0;
  for (unsigned i = 0; i < v->n && n < RPC__LB_MAX; i++)
    if (v->usable(v->arg, i)) {
      idx[n++] = i;
      total += v->weight(v->arg, i);
    }
  if (n == 0) return -1;
  if (n == 1) return (int)idx[0];
  int a = draw(b, v, idx, n, total, -1);
  int c = draw(b, v, idx, n, total - v->weight(v->arg, (unsigned)a), a);
  /* Fewer calls per unit of weight: compare la/wa with lc/wc without dividing. */
  unsigned long la = v->load(v->arg, (unsigned)a), lc = v->load(v->arg, (unsigned)c);
  unsigned long wa = v->weight(v->arg, (unsigned)a), wc = v->weight(v->arg, (unsigned)c);
  return lc * wa < la * wc ? c : a;
}

int rpc__balancer_pick(rpc__balancer *b, const rpc__lb_view *v) {
  switch (b->policy) {
    case RPC_LB_PICK_FIRST:
      return pick_first(b, v);
    case RPC_LB_ROUND_ROBIN:
      return round_robin(b, v);
    default:
      return p2c(b, v);
  }
}
