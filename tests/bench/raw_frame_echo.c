/* The raw contestant of the RPC benchmarks (the ceiling): a length-prefixed echo server with
 * //rpc's 24-byte frame header and no protobuf. Single gaio watcher, reads into a per-connection
 * user buffer, frames parsed with rpc_frame_parse(); every REQUEST is answered with a RESPONSE
 * (status 0, same request_id) whose body is the request's body, one gaio_write per response
 * (gaio coalesces the writes queued on a connection). Pipelined frames are handled in order.
 *
 * raw_frame_echo [--backend epoll|uring] [--host H] [--port P]
 * Prints the bound port on stdout's first line; exits 0 on SIGINT or SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gaio/gaio.h"
#include "rpc/frame.h"
#include "tests/bench/bench_util.h"

#define ACCEPTS 16u              /* accepts kept queued on the listener */
#define BATCH 512                /* results taken per gaio_wait() */
#define RBUF_INITIAL (64u << 10) /* per-connection read buffer; grows to hold a whole frame */
#define MAX_BODY RPC_DEFAULT_MAX_BODY

enum { CTX_LISTEN = 1, CTX_CONN = 2, CTX_WRITE = 3 };

typedef struct conn {
  int kind; /* CTX_CONN */
  int fd;
  unsigned pending; /* the read and the writes not yet completed */
  int dead;         /* gaio_free() called: free once nothing is pending */
  size_t len, cap;
  uint8_t *buf;
} conn;

typedef struct wbuf {
  int kind; /* CTX_WRITE */
  conn *c;
  uint8_t data[];
} wbuf;

static gaio_watcher *w;
static int lfd_kind = CTX_LISTEN;
static int lfd;
static unsigned long conn_errors;

static void conn_put(conn *c) {
  if (--c->pending > 0 || !c->dead) return;
  free(c->buf);
  free(c);
}

static void conn_kill(conn *c, int error) {
  if (error != GAIO_EOF && error != -ECONNRESET && error != -EPIPE && error != -ECANCELED &&
      error != -ESHUTDOWN)
    conn_errors++;
  if (c->dead) return;
  c->dead = 1;
  gaio_free(w, c->fd);
}

static void conn_read(conn *c) {
  if (c->dead) return;
  int rc = gaio_read(w, c->fd, c->buf + c->len, c->cap - c->len, c);
  if (rc != 0) {
    conn_kill(c, rc);
    return;
  }
  c->pending++;
}

static int respond(conn *c, const rpc_frame *f) {
  wbuf *b = malloc(sizeof *b + RPC_FRAME_HEADER_SIZE + f->body_len);
  if (b == NULL) return -ENOMEM;
  b->kind = CTX_WRITE;
  b->c = c;
  rpc_frame r = {.type = RPC_TYPE_RESPONSE, .request_id = f->request_id, .body_len = f->body_len};
  rpc_frame_encode(&r, b->data);
  memcpy(b->data + RPC_FRAME_HEADER_SIZE, f->body, f->body_len);
  int rc = gaio_write(w, c->fd, b->data, RPC_FRAME_HEADER_SIZE + f->body_len, b);
  if (rc != 0) {
    free(b);
    return rc;
  }
  c->pending++;
  return 0;
}

/* Answer every whole frame in the buffer, keep the partial one, make room for the next. */
static int on_data(conn *c) {
  size_t pos = 0;
  rpc_frame f;
  for (;;) {
    long n = rpc_frame_parse(c->buf + pos, c->len - pos, MAX_BODY, &f);
    if (n == -EAGAIN) break;
    if (n < 0) return (int)n;
    if (f.type != RPC_TYPE_REQUEST) return -EPROTO;
    int rc = respond(c, &f);
    if (rc != 0) return rc;
    pos += (size_t)n;
  }
  memmove(c->buf, c->buf + pos, c->len - pos);
  c->len -= pos;
  if (c->len >= RPC_FRAME_HEADER_SIZE) {
    size_t need = RPC_FRAME_HEADER_SIZE + (size_t)f.body_len;
    if (need > c->cap) {
      uint8_t *nb = realloc(c->buf, need);
      if (nb == NULL) return -ENOMEM;
      c->buf = nb;
      c->cap = need;
    }
  }
  return 0;
}

static void on_read(conn *c, const gaio_result *r) {
  if (r->error != 0 || c->dead) {
    conn_kill(c, r->error);
  } else {
    c->len += r->size;
    int rc = on_data(c);
    if (rc != 0) conn_kill(c, rc);
    else conn_read(c);
  }
  conn_put(c);
}

static void conn_start(int fd) {
  conn *c = calloc(1, sizeof *c);
  uint8_t *buf = malloc(RBUF_INITIAL);
  int rc = c == NULL || buf == NULL ? -ENOMEM : bench_nodelay(fd);
  if (rc == 0) rc = gaio_attach(w, fd);
  if (rc != 0) {
    conn_errors++;
    free(buf);
    free(c);
    close(fd);
    return;
  }
  c->kind = CTX_CONN;
  c->fd = fd;
  c->buf = buf;
  c->cap = RBUF_INITIAL;
  c->pending = 1; /* held while starting */
  conn_read(c);
  conn_put(c);
}

static void on_result(const gaio_result *r, unsigned *queued, int *listening) {
  switch (*(const int *)r->ctx) {
    case CTX_LISTEN:
      (*queued)--;
      if (r->error == 0) conn_start(r->conn_fd);
      else if (r->error == -ECANCELED || r->error == -ESHUTDOWN) *listening = 0;
      break;
    case CTX_CONN:
      on_read(r->ctx, r);
      break;
    case CTX_WRITE: {
      wbuf *b = r->ctx;
      conn *c = b->c;
      free(b);
      if (r->error != 0) conn_kill(c, r->error);
      conn_put(c);
      break;
    }
  }
}

static void *signal_main(void *arg) {
  int sig;
  sigwait(arg, &sig);
  gaio_watcher_close(w);
  return NULL;
}

static const char *const flags[] = {
    "--backend NAME    epoll or uring (default: gaio's choice; GAIO_BACKEND overrides it)",
    BENCH_USAGE_HOST, BENCH_USAGE_PORT, NULL};
static const ex_usage usage = {"[--backend epoll|uring] [--host H] [--port P]", flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  gaio_options o = {0};
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(&a, argc, argv, &i);
    if (rc < 0) ex_usage_exit(&usage, 2);
    if (rc == 1) continue;
    if (strcmp(argv[i], "--backend") == 0 && (o.backend = bench_flag_value(argc, argv, &i))) continue;
    ex_usage_exit(&usage, 2);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  int rc = gaio_watcher_create(&w, &o);
  if (rc != 0) {
    fprintf(stderr, "raw_frame_echo: watcher: %s\n", gaio_strerror(rc));
    return 1;
  }
  lfd = bench_listen(&a, 0, 1);
  if (lfd < 0 || bench_print_bound(lfd, &a) < 0 || gaio_attach(w, lfd) != 0) return 1;
  pthread_t sig_thread;
  pthread_create(&sig_thread, NULL, signal_main, &set);
  unsigned queued = 0;
  int listening = 1;
  gaio_result res[BATCH];
  for (;;) {
    while (listening && queued < ACCEPTS && gaio_accept(w, lfd, NULL, &lfd_kind) == 0) queued++;
    int n = gaio_wait(w, res, BATCH, -1);
    if (n < 0) break; /* -ESHUTDOWN after the signal: every request has completed */
    for (int i = 0; i < n; i++) on_result(&res[i], &queued, &listening);
  }
  pthread_kill(sig_thread, SIGTERM);
  pthread_join(sig_thread, NULL);
  gaio_watcher_destroy(w);
  if (conn_errors != 0) fprintf(stderr, "raw_frame_echo: %lu connection errors\n", conn_errors);
  return 0;
}
