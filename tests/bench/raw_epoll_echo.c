/* The second raw contestant of the RPC benchmarks (raw-epoll), the ceiling that does not move with
 * the library: a plain edge-triggered epoll server of //rpc's length-prefixed frames, no gaio, no
 * protobuf, one thread. Each read(2) goes into a per-connection buffer (grown to hold a whole
 * frame); every whole REQUEST in it gets a RESPONSE (status 0, same request_id, the request's
 * body) appended to the connection's output buffer, and all the replies of one read leave in one
 * write(2). Unwritten output waits for EPOLLOUT, and the connection stops reading meanwhile
 * (back-pressure). Per-connection state is a slot in an fd-indexed array.
 *
 * raw_epoll_echo [--host H] [--port P]
 * Prints the bound port on stdout's first line; exits 0 on SIGINT or SIGTERM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "rpc/frame.h"
#include "tests/bench/bench_util.h"

#define RBUF_INITIAL (64u << 10) /* per-connection read buffer; grows to hold a whole frame */
#define MAX_EVENTS 512           /* events per epoll_wait */
#define MAX_BODY RPC_DEFAULT_MAX_BODY

typedef struct conn {
  uint8_t *in;       /* read bytes not yet answered (malloc'd at accept) */
  size_t in_len, in_cap;
  uint8_t *out;      /* replies not yet written */
  size_t out_off, out_len, out_cap;
} conn;

typedef struct server {
  int ep, lfd, sfd;
  size_t nconns; /* slots in conns: the fd limit */
  conn *conns;   /* indexed by fd */
  unsigned long errors;
} server;

static void conn_close(server *s, int fd) {
  conn *c = &s->conns[fd];
  free(c->in);
  free(c->out);
  memset(c, 0, sizeof *c);
  close(fd); /* also removes it from the epoll set (no dup exists) */
}

static int set_events(server *s, int fd, unsigned events) {
  struct epoll_event ev = {.events = events | EPOLLET, .data.fd = fd};
  return epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev);
}

static int reserve(uint8_t **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t n = *cap * 2 > need ? *cap * 2 : need;
  uint8_t *nb = realloc(*p, n);
  if (nb == NULL) return -1;
  *p = nb;
  *cap = n;
  return 0;
}

/* Write the pending output. Returns 1 when drained, 0 when some is left, -1 on error. */
static int conn_flush(conn *c, int fd) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -1);
    c->out_off += (size_t)n;
  }
  c->out_off = c->out_len = 0;
  return 1;
}

/* Answer every whole frame of c->in into c->out, keep the partial one, make room for the rest of
 * it. Returns 0 or -1 (a bad frame, no memory). */
static int conn_answer(conn *c) {
  size_t pos = 0;
  rpc_frame f;
  long n;
  while ((n = rpc_frame_parse(c->in + pos, c->in_len - pos, MAX_BODY, &f)) > 0) {
    if (f.type != RPC_TYPE_REQUEST) return -1;
    if (reserve(&c->out, &c->out_cap, c->out_len + (size_t)n) != 0) return -1;
    rpc_frame r = {.type = RPC_TYPE_RESPONSE, .request_id = f.request_id, .body_len = f.body_len};
    rpc_frame_encode(&r, c->out + c->out_len);
    memcpy(c->out + c->out_len + RPC_FRAME_HEADER_SIZE, f.body, f.body_len);
    c->out_len += (size_t)n;
    pos += (size_t)n;
  }
  if (n != -EAGAIN) return -1;
  memmove(c->in, c->in + pos, c->in_len - pos);
  c->in_len -= pos;
  if (c->in_len >= RPC_FRAME_HEADER_SIZE)
    return reserve(&c->in, &c->in_cap, RPC_FRAME_HEADER_SIZE + (size_t)f.body_len);
  return 0;
}

/* Read until EAGAIN, answering each read's frames with one write. Returns 0, or -1 when the
 * connection is to be closed. */
static int conn_read(server *s, int fd) {
  conn *c = &s->conns[fd];
  for (;;) {
    ssize_t n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -1);
    c->in_len += (size_t)n;
    if (conn_answer(c) != 0) {
      s->errors++;
      return -1;
    }
    int rc = conn_flush(c, fd);
    if (rc < 0) return -1;
    if (rc == 0) return set_events(s, fd, EPOLLIN | EPOLLOUT) == 0 ? 0 : -1;
  }
}

static void on_conn_event(server *s, int fd) {
  conn *c = &s->conns[fd];
  if (c->out_len > 0) {
    int rc = conn_flush(c, fd);
    if (rc < 0 || (rc == 1 && set_events(s, fd, EPOLLIN) != 0)) {
      conn_close(s, fd);
      return;
    }
    if (rc == 0) return; /* still buffered: don't read more */
  }
  if (conn_read(s, fd) != 0) conn_close(s, fd);
}

static void on_accept(server *s) {
  for (;;) {
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == ECONNABORTED || errno == EINTR)) continue;
    if (fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    conn *c = (size_t)fd < s->nconns ? &s->conns[fd] : NULL;
    if (c == NULL || (c->in = malloc(RBUF_INITIAL)) == NULL || bench_nodelay(fd) != 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      s->errors++;
      if (c != NULL) conn_close(s, fd);
      else close(fd);
      continue;
    }
    c->in_cap = RBUF_INITIAL;
  }
}

static int server_init(server *s, const bench_addr *a) {
  if (bench_epoll_setup(a, &s->ep, &s->lfd, &s->sfd, &s->nconns) != 0) return -1;
  s->conns = calloc(s->nconns, sizeof(conn));
  return s->conns == NULL ? -1 : 0;
}

static const char *const flags[] = {BENCH_USAGE_HOST, BENCH_USAGE_PORT, NULL};
static const ex_usage usage = {"[--host H] [--port P]", flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  for (int i = 1; i < argc; i++)
    if (bench_addr_flag(&a, argc, argv, &i) <= 0) ex_usage_exit(&usage, 2);
  if (a.unix_path != NULL) ex_usage_exit(&usage, 2);
  static server s;
  if (server_init(&s, &a) != 0) {
    fprintf(stderr, "raw_epoll_echo: setup failed: %s\n", strerror(errno));
    return 1;
  }
  struct epoll_event evs[MAX_EVENTS];
  for (int running = 1; running;) {
    int n = epoll_wait(s.ep, evs, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == s.lfd) on_accept(&s);
      else if (fd == s.sfd) running = 0;
      else on_conn_event(&s, fd);
    }
  }
  for (size_t fd = 0; fd < s.nconns; fd++) {
    free(s.conns[fd].in);
    free(s.conns[fd].out);
  }
  free(s.conns);
  if (s.errors != 0) fprintf(stderr, "raw_epoll_echo: %lu connection errors\n", s.errors);
  return 0;
}
