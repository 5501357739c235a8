/* The libuv contestant: the same algorithm as epoll_echo with libuv's idioms. Reads go into one
 * shared buffer (the alloc callback hands it out; the read callback consumes it at once), each
 * chunk is sent with uv_try_write, and an unwritten rest is copied into a uv_write request while
 * reading stops until it is done (back-pressure). Single-threaded.
 *
 * uv_echo [--host H] [--port P | --unix PATH]; prints the bound port (or path) on stdout's first
 * line; exits 0 on SIGINT or SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "tests/bench/bench_util.h"

#define READ_BUF_SIZE (64u * 1024u) /* bytes per read */

typedef union stream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} stream;

typedef struct write_req {
  uv_write_t req;
  size_t len;
  char data[]; /* the unwritten rest */
} write_req;

static char read_buf[READ_BUF_SIZE];
static int is_unix;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_close(uv_handle_t *h) { free(h); }

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req);
  if (status != 0 || uv_read_start(s, on_alloc, on_read) != 0) {
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n == 0) return; /* EAGAIN */
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
  int w = uv_try_write(s, &b, 1);
  if (w == UV_EAGAIN) w = 0;
  if (w < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (w == n) return;
  size_t rest = (size_t)n - (size_t)w;
  write_req *req = malloc(sizeof(*req) + rest);
  if (req == NULL) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  memcpy(req->data, buf->base + w, rest);
  req->len = rest;
  uv_buf_t wb = uv_buf_init(req->data, (unsigned)rest);
  uv_read_stop(s);
  if (uv_write(&req->req, s, &wb, 1, on_write) != 0) {
    free(req);
    uv_close((uv_handle_t *)s, on_close);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status != 0) return;
  stream *c = malloc(sizeof(*c));
  if (c == NULL) return;
  if (is_unix)
    uv_pipe_init(server->loop, &c->pipe, 0);
  else
    uv_tcp_init(server->loop, &c->tcp);
  c->handle.data = c;
  if (uv_accept(server, &c->stream) != 0) {
    uv_close(&c->handle, on_close);
    return;
  }
  if (!is_unix) uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start(&c->stream, on_alloc, on_read) != 0) uv_close(&c->handle, on_close);
}

static void close_any(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  /* Connections are malloc'd and marked by data pointing at themselves; the rest is static. */
  uv_close(h, h->data == h ? on_close : NULL);
}

static void on_signal(uv_signal_t *sig, int signum) { uv_walk(sig->loop, close_any, NULL); }

static int listen_on(uv_loop_t *loop, stream *srv, const bench_addr *a) {
  int rc;
  if (is_unix) {
    uv_pipe_init(loop, &srv->pipe, 0);
    remove(a->unix_path);
    rc = uv_pipe_bind(&srv->pipe, a->unix_path);
  } else {
    struct sockaddr_storage ss;
    if (bench_sockaddr(a, &ss) < 0) return UV_EINVAL;
    uv_tcp_init(loop, &srv->tcp);
    rc = uv_tcp_bind(&srv->tcp, (struct sockaddr *)&ss, 0);
  }
  if (rc == 0) rc = uv_listen(&srv->stream, 65535, on_connection);
  if (rc != 0) return rc;
  uv_os_fd_t fd;
  uv_fileno(&srv->handle, &fd);
  return bench_print_bound(fd, a) < 0 ? UV_EIO : 0;
}

static const char *const flags[] = {BENCH_USAGE_HOST, BENCH_USAGE_PORT, BENCH_USAGE_UNIX, NULL};
static const ex_usage usage = {"[--host H] [--port P | --unix PATH]", flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  for (int i = 1; i < argc; i++)
    if (bench_addr_flag(&a, argc, argv, &i) <= 0) ex_usage_exit(&usage, 2);
  is_unix = a.unix_path != NULL;
  uv_loop_t *loop = uv_default_loop();
  static stream srv;
  int rc = listen_on(loop, &srv, &a);
  if (rc != 0) {
    fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(rc));
    return 1;
  }
  static uv_signal_t sigs[2];
  int signums[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(loop, &sigs[i]);
    uv_signal_start(&sigs[i], on_signal, signums[i]);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  if (is_unix) remove(a.unix_path);
  return 0;
}
