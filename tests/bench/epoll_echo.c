/* The baseline: a plain edge-triggered epoll echo server, single-threaded, the practical limit of
 * hand-written C. Read until EAGAIN into one shared buffer, write back what was read, keep only
 * the unwritten rest per connection, and ask for EPOLLOUT only while something is buffered (and
 * stop reading meanwhile: back-pressure). Per-connection state is a slot in an fd-indexed array.
 *
 * epoll_echo [--host H] [--port P | --unix PATH]; prints the bound port (or path) on stdout's
 * first line; exits 0 on SIGINT or SIGTERM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "tests/bench/bench_util.h"

#define READ_BUF_SIZE (64u * 1024u) /* bytes per read(2) */
#define MAX_EVENTS 512              /* events per epoll_wait */

typedef struct conn {
  char *pend;      /* unwritten bytes (malloc'd), NULL when none */
  size_t pend_off; /* first unwritten byte */
  size_t pend_len; /* end of the unwritten bytes */
} conn;

typedef struct server {
  int ep, lfd, sfd;
  size_t nconns; /* slots in conns: the fd limit */
  conn *conns;   /* indexed by fd */
  char buf[READ_BUF_SIZE];
} server;

static void conn_close(server *s, int fd) {
  free(s->conns[fd].pend);
  memset(&s->conns[fd], 0, sizeof(conn));
  close(fd); /* also removes it from the epoll set (no dup exists) */
}

static int set_events(server *s, int fd, unsigned events) {
  struct epoll_event ev = {.events = events | EPOLLET, .data.fd = fd};
  return epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Write the buffered rest. Returns 1 when drained, 0 when still buffered, -1 on error. */
static int conn_flush(server *s, int fd) {
  conn *c = &s->conns[fd];
  while (c->pend_off < c->pend_len) {
    ssize_t n = write(fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
    if (n < 0) return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -1);
    c->pend_off += (size_t)n;
  }
  free(c->pend);
  c->pend = NULL;
  c->pend_off = c->pend_len = 0;
  return set_events(s, fd, EPOLLIN) == 0 ? 1 : -1;
}

/* Read until EAGAIN, echoing each chunk. Returns 0, or -1 when the connection is to be closed. */
static int conn_read(server *s, int fd) {
  for (;;) {
    ssize_t n = read(fd, s->buf, sizeof(s->buf));
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -1);
    ssize_t w = write(fd, s->buf, (size_t)n);
    if (w < 0 && errno != EAGAIN) return -1;
    if (w < 0) w = 0;
    if (w < n) {
      conn *c = &s->conns[fd];
      c->pend = malloc((size_t)(n - w));
      if (c->pend == NULL) return -1;
      memcpy(c->pend, s->buf + w, (size_t)(n - w));
      c->pend_off = 0;
      c->pend_len = (size_t)(n - w);
      return set_events(s, fd, EPOLLIN | EPOLLOUT) == 0 ? 0 : -1;
    }
  }
}

static void on_conn_event(server *s, int fd, unsigned events) {
  if (s->conns[fd].pend != NULL) {
    int rc = conn_flush(s, fd);
    if (rc < 0) {
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
    /* EAGAIN: all taken. EMFILE/ENFILE: at the fd limit; the next connection to arrive triggers
     * another try (edge-triggered), so there is no busy loop. */
    if (fd < 0 && (errno == ECONNABORTED || errno == EINTR)) continue;
    if (fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if ((size_t)fd >= s->nconns || bench_nodelay(fd) != 0 ||
        epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
    }
  }
}

static int server_init(server *s, const bench_addr *a) {
  if (bench_epoll_setup(a, &s->ep, &s->lfd, &s->sfd, &s->nconns) != 0) return -1;
  s->conns = calloc(s->nconns, sizeof(conn));
  return s->conns == NULL ? -1 : 0;
}

static const char *const flags[] = {BENCH_USAGE_HOST, BENCH_USAGE_PORT, BENCH_USAGE_UNIX, NULL};
static const ex_usage usage = {"[--host H] [--port P | --unix PATH]", flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  for (int i = 1; i < argc; i++)
    if (bench_addr_flag(&a, argc, argv, &i) <= 0) ex_usage_exit(&usage, 2);
  static server s;
  if (server_init(&s, &a) != 0) {
    fprintf(stderr, "epoll_echo: setup failed: %s\n", strerror(errno));
    return 1;
  }
  struct epoll_event evs[MAX_EVENTS];
  for (int running = 1; running;) {
    int n = epoll_wait(s.ep, evs, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == s.lfd)
        on_accept(&s);
      else if (fd == s.sfd)
        running = 0;
      else
        on_conn_event(&s, fd, evs[i].events);
    }
  }
  for (size_t fd = 0; fd < s.nconns; fd++) {
    if (s.conns[fd].pend != NULL) free(s.conns[fd].pend);
  }
  free(s.conns);
  if (a.unix_path != NULL) unlink(a.unix_path);
  return 0;
}
