/* The inbox: items posted from any thread to a loop, woken through an eventfd. See
 * internal.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rpc/internal.h"

/* ---- Inbox ------------------------------------------------------------------------------- */

int rpc__inbox_init(rpc__inbox *ib, gaio_watcher *w) {
  memset(ib, 0, sizeof *ib);
  ib->kind = RPC__CTX_INBOX;
  pthread_mutex_init(&ib->mu, NULL);
  ib->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ib->efd < 0) return -errno;
  int rc = gaio_attach(w, ib->efd);
  if (rc < 0) {
    close(ib->efd);
    ib->efd = -1;
    return rc;
  }
  rc = gaio_read(w, ib->efd, &ib->rbuf, sizeof ib->rbuf, ib);
  if (rc < 0) return rc; /* the watcher closes the eventfd */
  return 0;
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
  int wake = !ib->signalled;
  ib->signalled = 1;
  if (wake) {
    uint64_t one = 1;
    /* The counter cannot overflow: it is written once per drain. */
    ssize_t r = write(ib->efd, &one, sizeof one);
    (void)r;
  }
  pthread_mutex_unlock(&ib->mu);
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

void rpc__inbox_rearm(rpc__inbox *ib, gaio_watcher *w) {
  gaio_read(w, ib->efd, &ib->rbuf, sizeof ib->rbuf, ib);
}

void rpc__inbox_destroy(rpc__inbox *ib) { pthread_mutex_destroy(&ib->mu); }
