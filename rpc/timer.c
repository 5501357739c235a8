/* Timers of the RPC loops, on gaio_timer(): see internal.h for the two kinds of ctx. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "rpc/internal.h"

void rpc__timer_init(rpc__timer *t, int kind) {
  memset(t, 0, sizeof *t);
  t->kind = kind;
}

/* A disarmed timer either is cancelled (its result carries -ECANCELED) or has fired already
 * with its result on the way (gaio_timer_cancel() says -ENOENT): that one must be ignored. */
void rpc__timer_disarm(gaio_watcher *w, rpc__timer *t) {
  if (!t->armed) return;
  t->armed = 0;
  int rc = gaio_timer_cancel(w, t);
  assert(rc == 0 || rc == -ENOENT || rc == -ESHUTDOWN);
  if (rc == -ENOENT) t->stale++;
}

int rpc__timer_arm(gaio_watcher *w, rpc__timer *t, uint64_t when) {
  rpc__timer_disarm(w, t);
  int rc = gaio_timer(w, t, when ? when : 1);
  if (rc < 0) return rc;
  t->armed = 1;
  t->pending++;
  return 0;
}

int rpc__timer_fired(rpc__timer *t, const gaio_result *r) {
  assert(t->pending > 0);
  t->pending--;
  if (r->error != 0) return 0; /* cancelled, or the watcher is closing */
  if (t->stale > 0) {
    t->stale--;
    return 0;
  }
  assert(t->armed);
  t->armed = 0;
  return 1;
}
