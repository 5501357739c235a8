/* Timers of the RPC loops: a binary min-heap of (when, seq). See internal.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

/* ---- Timers ------------------------------------------------------------------------------ */

void rpc__timer_init(rpc__timer *t, int kind) {
  memset(t, 0, sizeof *t);
  t->idx = RPC__TIMER_OFF;
  t->kind = kind;
}

static int tless(const rpc__timer *a, const rpc__timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void tset(rpc__theap *h, size_t i, rpc__timer *t) {
  h->a[i] = t;
  t->idx = i;
}

static void sift_up(rpc__theap *h, size_t i) {
  rpc__timer *t = h->a[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!tless(t, h->a[p])) break;
    tset(h, i, h->a[p]);
    i = p;
  }
  tset(h, i, t);
}

static void sift_down(rpc__theap *h, size_t i) {
  rpc__timer *t = h->a[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && tless(h->a[c + 1], h->a[c])) c++;
    if (!tless(h->a[c], t)) break;
    tset(h, i, h->a[c]);
    i = c;
  }
  tset(h, i, t);
}

void rpc__timer_disarm(rpc__theap *h, rpc__timer *t) {
  size_t i = t->idx;
  if (i == RPC__TIMER_OFF) return;
  t->idx = RPC__TIMER_OFF;
  h->n--;
  if (i == h->n) return;
  rpc__timer *moved = h->a[h->n];
  tset(h, i, moved);
  sift_up(h, i);
  sift_down(h, moved->idx);
}

int rpc__timer_arm(rpc__theap *h, rpc__timer *t, uint64_t when) {
  rpc__timer_disarm(h, t);
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    rpc__timer **a = realloc(h->a, cap * sizeof *a);
    if (!a) return -ENOMEM;
    h->a = a;
    h->cap = cap;
  }
  t->when = when;
  t->seq = h->seq++;
  tset(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

rpc__timer *rpc__timer_pop_due(rpc__theap *h, uint64_t now) {
  if (h->n == 0 || h->a[0]->when > now) return NULL;
  rpc__timer *t = h->a[0];
  rpc__timer_disarm(h, t);
  return t;
}

int rpc__theap_timeout_ms(const rpc__theap *h, uint64_t now) {
  if (h->n == 0) return -1;
  uint64_t when = h->a[0]->when;
  if (when <= now) return 0;
  uint64_t ms = (when - now + 999999u) / 1000000u;
  return ms > 3600000u ? 3600000 : (int)ms;
}

void rpc__theap_free(rpc__theap *h) {
  free(h->a);
  memset(h, 0, sizeof *h);
}
