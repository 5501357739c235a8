/* The inbox: items posted from any thread to a loop, woken with gaio_post(). See internal.h. */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "rpc/internal.h"

void rpc__inbox_init(rpc__inbox *ib, gaio_watcher *w) {
  memset(ib, 0, sizeof *ib);
  ib->kind = RPC__CTX_INBOX;
  ib->w = w;
  pthread_mutex_init(&ib->mu, NULL);
}

/* One wakeup for the items queued since the loop last took them. A watcher out of requests
 * (-ENOBUFS) or memory frees them as its loop delivers results, so waiting is enough; a closed
 * watcher (-ESHUTDOWN) takes the items in its last rpc__inbox_take(). */
static void wake(rpc__inbox *ib) {
  for (;;) {
    int rc = gaio_post(ib->w, ib);
    if (rc == 0 || rc == -ESHUTDOWN) return;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

int rpc__inbox_post(rpc__inbox *ib, rpc__item *it) {
  it->next = NULL;
  pthread_mutex_lock(&ib->mu);
  if (ib->closed) {
    pthread_mutex_unlock(&ib->mu);
    return -ESHUTDOWN;
  }
  if (ib->tail)
    ib->tail->next = it;
  else
    ib->head = it;
  ib->tail = it;
  int need = !ib->signalled;
  ib->signalled = 1;
  ib->posting += need;
  pthread_mutex_unlock(&ib->mu);
  if (need) {
    wake(ib);
    pthread_mutex_lock(&ib->mu);
    ib->posting--;
    pthread_mutex_unlock(&ib->mu);
  }
  return 0;
}

rpc__item *rpc__inbox_take(rpc__inbox *ib, int close_it) {
  pthread_mutex_lock(&ib->mu);
  rpc__item *h = ib->head;
  ib->head = ib->tail = NULL;
  ib->signalled = 0;
  if (close_it) ib->closed = 1;
  pthread_mutex_unlock(&ib->mu);
  return h;
}

/* A posting thread may still be inside gaio_post() for items the loop has taken already: wait
 * for it, so that the watcher outlives every use. */
void rpc__inbox_destroy(rpc__inbox *ib) {
  pthread_mutex_lock(&ib->mu);
  while (ib->posting > 0) {
    pthread_mutex_unlock(&ib->mu);
    sched_yield();
    pthread_mutex_lock(&ib->mu);
  }
  pthread_mutex_unlock(&ib->mu);
  pthread_mutex_destroy(&ib->mu);
}
