/* The echo service: see echo_service.h. */
#include "examples/echo_service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "examples/example_util.h"

/* Results taken per gaio_wait() call. */
#define BATCH 256

typedef struct conn {
  int fd;
  char buf[ECHO_BUF_SIZE];
} conn;

int echo_service_init(echo_service *s, const char *backend) {
  atomic_init(&s->errors, 0);
  s->quiet = 0;
  s->listening = 0;
  return ex_watcher_create(&s->w, NULL, backend);
}

int echo_service_listen(echo_service *s, int lfd) {
  int rc = ex_listener_start(&s->listener, s->w, lfd, s->quiet);
  if (rc == 0) s->listening = 1;
  return rc;
}

/* Take ownership of fd, a connection just accepted: attach it and submit its first read.
 * On failure fd is closed (by hand before the attach, by gaio_free after it). */
static void adopt(echo_service *s, int fd) {
  conn *c = malloc(sizeof(*c));
  if (c == NULL) {
    close(fd);
    ex_err("malloc", -ENOMEM);
    return;
  }
  c->fd = fd;
  int rc = gaio_attach(s->w, fd);
  if (rc != 0) {
    close(fd); /* on error the caller keeps the fd */
    free(c);
    if (rc != -ESHUTDOWN) ex_err("gaio_attach", rc);
    return;
  }
  rc = gaio_read(s->w, fd, c->buf, sizeof(c->buf), c);
  if (rc != 0) {
    /* The watcher owns the fd now: gaio_free closes it (after a close, the watcher already did). */
    if (rc != -ESHUTDOWN) {
      ex_err("gaio_read", rc);
      gaio_free(s->w, fd);
    }
    free(c);
  }
}

/* The connection is done: its one request just completed, with error. */
static void conn_end(echo_service *s, conn *c, int error) {
  if (error != GAIO_EOF && error != -ESHUTDOWN) {
    atomic_fetch_add(&s->errors, 1);
    if (!s->quiet) fprintf(stderr, "%s: fd %d: %s\n", ex_prog(), c->fd, gaio_strerror(error));
  }
  /* After gaio_watcher_close() the watcher closes every fd itself (and gaio_free would say so). */
  if (error != -ESHUTDOWN) {
    int rc = gaio_free(s->w, c->fd);
    if (rc != 0 && rc != -ESHUTDOWN) ex_err("gaio_free", rc);
  }
  free(c);
}

static void on_result(echo_service *s, const gaio_result *r) {
  if (r->op == GAIO_OP_ACCEPT) {
    int fd = ex_listener_on_result(&s->listener, r);
    if (fd >= 0) adopt(s, fd);
    return;
  }
  conn *c = r->ctx;
  if (r->error != 0) {
    conn_end(s, c, r->error);
    return;
  }
  /* A read brought r->size bytes: send them back. A write finished: read again. Either way
   * the buffer is free, because only one request per connection is in flight. */
  int rc = r->op == GAIO_OP_READ ? gaio_write(s->w, c->fd, c->buf, r->size, c)
                                 : gaio_read(s->w, c->fd, c->buf, sizeof(c->buf), c);
  if (rc != 0) conn_end(s, c, rc); /* no result will come for the failed submit */
}

int echo_service_run(echo_service *s) {
  gaio_result res[BATCH];
  int first_error = 0;
  for (;;) {
    int timeout = s->listening ? ex_listener_timeout(&s->listener) : -1;
    int n = gaio_wait(s->w, res, BATCH, timeout);
    if (n == -ESHUTDOWN) break; /* closed, and every result delivered */
    if (n < 0) {
      /* Unexpected: report it, close the watcher and drain its results (which frees the
       * connections) until it says -ESHUTDOWN. */
      ex_err("gaio_wait", n);
      if (first_error == 0) first_error = n;
      gaio_watcher_close(s->w);
      continue;
    }
    for (int i = 0; i < n; i++) on_result(s, &res[i]);
  }
  return first_error;
}

void echo_service_destroy(echo_service *s) {
  gaio_watcher_destroy(s->w);
  s->w = NULL;
}
