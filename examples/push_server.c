/* push_server: every interval, send one timestamped line to every connected client.
 *
 *   push_server [-p port] [-a address] [-i interval_ms] [-b backend]
 *               (defaults: 0, 127.0.0.1, 1000, gaio's choice of backend)
 *
 * One loop thread does everything: it accepts clients through gaio (accepts queued on the
 * listening socket, which is attached to the watcher), so a new client joins the list in the
 * thread that broadcasts, with no hand-off. It wakes up for the ticks through gaio_wait()'s
 * timeout. Each tick formats its
 * line once, in one shared buffer, and queues a gaio_write() of it on every client; the buffer
 * counts the writes still using it and is freed by the last one to complete. A client that
 * errors (or hangs up) is dropped: gaio_free() cancels its pending requests, and the client's
 * memory goes once the last of them has been delivered. Try it with:
 *
 *   push_server -p 7001 -i 500     and, in other terminals,     nc 127.0.0.1 7001 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "examples/example_util.h"

#define BATCH 256
/* A client that falls this far behind is dropped: its writes then complete with -ENOBUFS. */
#define MAX_PENDING_PER_CLIENT (256u * 1024u)

/* One tick's line, shared by every write of that tick. */
typedef struct line {
  unsigned refs; /* writes submitted and not yet delivered */
  size_t len;
  char text[64];
} line;

/* A write's ctx is its client, which a failed write must drop (r->fd alone would not do: once
 * an fd is freed its number can come back for a new client). The line is found back from the
 * result's buf, which is the buffer given at submit. */
static line *line_of(void *text) { return (line *)((char *)text - offsetof(line, text)); }

typedef struct client {
  struct client *prev, *next; /* in the server's list (loop thread only) */
  int fd;
  int dropped;       /* gaio_free() done (or the watcher closed) */
  unsigned requests; /* submitted, not yet delivered: the client is freed when it drops to 0 */
} client;

typedef struct server {
  gaio_watcher *w;
  ex_listener listener; /* its accepts have op GAIO_OP_ACCEPT and ctx == &listener */
  client clients;       /* list head */
  size_t nclients;
  uint64_t ticks, lines_sent, dropped;
} server;

/* ---- Clients ---- */

static void list_insert(client *head, client *c) {
  c->next = head->next;
  c->prev = head;
  head->next->prev = c;
  head->next = c;
}

/* A connection was just accepted: attach it, queue its read, and add it to the list. The read
 * is there only to notice when the client hangs up (EOF) or fails; whatever it sends is ignored.
 * It reads into the swap buffer (NULL), so an idle client costs no buffer. On failure fd is
 * closed (by hand before the attach, by gaio_free after it). */
static void adopt(server *srv, int fd) {
  client *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    close(fd);
    ex_err("calloc", -ENOMEM);
    return;
  }
  c->fd = fd;
  int rc = gaio_attach(srv->w, fd);
  if (rc != 0) {
    close(fd);
    free(c);
    if (rc != -ESHUTDOWN) ex_err("gaio_attach", rc);
    return;
  }
  rc = gaio_read(srv->w, fd, NULL, 0, c);
  if (rc != 0) {
    if (rc != -ESHUTDOWN) {
      ex_err("gaio_read", rc);
      gaio_free(srv->w, fd);
    }
    free(c);
    return;
  }
  c->requests = 1;
  list_insert(&srv->clients, c);
  srv->nclients++;
  printf("%s: client fd %d connected (%zu now)\n", ex_prog(), c->fd, srv->nclients);
}

/* Stop using c: free its fd, which cancels its pending requests (each still gets its result). */
static void drop(server *srv, client *c, int error) {
  if (c->dropped) return;
  c->dropped = 1;
  if (error == -ESHUTDOWN) return; /* the watcher was closed: it closes every fd itself */
  if (error == GAIO_EOF) {
    printf("%s: client fd %d hung up\n", ex_prog(), c->fd);
  } else {
    srv->dropped++;
    fprintf(stderr, "%s: client fd %d dropped: %s\n", ex_prog(), c->fd, gaio_strerror(error));
  }
  int rc = gaio_free(srv->w, c->fd);
  if (rc != 0 && rc != -ESHUTDOWN) ex_err("gaio_free", rc);
}

/* One of c's requests was delivered; free c after its last one. */
static void release(server *srv, client *c) {
  if (--c->requests > 0 || !c->dropped) return;
  c->prev->next = c->next;
  c->next->prev = c->prev;
  srv->nclients--;
  free(c);
}

/* ---- Ticks ---- */

static void broadcast(server *srv) {
  srv->ticks++;
  if (srv->nclients == 0) return;
  line *l = malloc(sizeof(*l));
  if (l == NULL) {
    ex_err("malloc", -ENOMEM);
    return;
  }
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  localtime_r(&ts.tv_sec, &tm);
  int n = snprintf(l->text, sizeof(l->text), "tick %" PRIu64 " %02d:%02d:%02d.%03ld\n",
                   srv->ticks, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
  l->len = (size_t)n;
  l->refs = 0;
  for (client *c = srv->clients.next; c != &srv->clients; c = c->next) {
    if (c->dropped) continue;
    int rc = gaio_write(srv->w, c->fd, l->text, l->len, c);
    if (rc != 0) {
      drop(srv, c, rc); /* no result will come for this write */
      continue;
    }
    l->refs++;
    c->requests++;
  }
  if (l->refs == 0) free(l);
}

/* ---- Results ---- */

static void on_result(server *srv, const gaio_result *r) {
  if (r->op == GAIO_OP_ACCEPT) {
    int fd = ex_listener_on_result(&srv->listener, r);
    if (fd >= 0) adopt(srv, fd);
    return;
  }
  client *c = r->ctx;
  if (r->op == GAIO_OP_WRITE) {
    line *l = line_of(r->buf);
    if (--l->refs == 0) free(l);
    if (r->error == 0)
      srv->lines_sent++;
    else
      drop(srv, c, r->error);
  } else if (r->error != 0) {
    drop(srv, c, r->error);
  } else if (!c->dropped) {
    /* The client sent something: ignore it (r->buf is the swap slice) and keep listening. */
    int rc = gaio_read(srv->w, c->fd, NULL, 0, c);
    if (rc == 0)
      c->requests++;
    else
      drop(srv, c, rc);
  }
  release(srv, c);
}

/* Milliseconds until the next tick, rounded up, for gaio_wait()'s timeout. */
static int ms_until(uint64_t when) {
  uint64_t now = gaio_now();
  return when <= now ? 0 : (int)((when - now + 999999u) / 1000000u);
}

/* Runs until the watcher is closed and every result is delivered. */
static int run(server *srv, long interval_ms) {
  gaio_result res[BATCH];
  const uint64_t interval = (uint64_t)interval_ms * 1000000u;
  uint64_t next_tick = gaio_now() + interval;
  int first_error = 0;
  for (;;) {
    int timeout = ms_until(next_tick);
    int resume = ex_listener_timeout(&srv->listener); /* -1, or the end of an accept pause */
    if (resume >= 0 && resume < timeout) timeout = resume;
    int n = gaio_wait(srv->w, res, BATCH, timeout);
    if (n == -ESHUTDOWN) break;
    if (n < 0) {
      ex_err("gaio_wait", n);
      if (first_error == 0) first_error = n;
      gaio_watcher_close(srv->w); /* drain, then stop */
      continue;
    }
    for (int i = 0; i < n; i++) on_result(srv, &res[i]);
    if (gaio_now() >= next_tick) {
      broadcast(srv);
      next_tick += interval;
      if (next_tick < gaio_now()) next_tick = gaio_now() + interval; /* fell behind: skip */
    }
  }
  return first_error;
}

/* Signal thread: close the watcher; the loop drains (accepts included) and returns. */
static void stop(void *arg) {
  server *srv = arg;
  gaio_watcher_close(srv->w);
}

static const char *const flags[] = {
    EX_USAGE_PORT, EX_USAGE_ADDRESS,
    "-i MS             interval between two lines, 1..3600000 ms (default 1000)",
    EX_USAGE_BACKEND, NULL};
static const ex_usage usage = {"[-p port] [-a address] [-i interval_ms] [-b uring|epoll]", flags};

int main(int argc, char **argv) {
  ex_init(argv[0]);
  const char *addr = "127.0.0.1", *backend = NULL;
  long port = 0, interval_ms = 1000;
  int opt;
  while ((opt = getopt_long(argc, argv, "p:a:i:b:h", ex_help_option, NULL)) != -1) {
    if (opt == 'p' && ex_parse_long('p', optarg, 0, 65535, &port) == 0) continue;
    if (opt == 'i' && ex_parse_long('i', optarg, 1, 3600000, &interval_ms) == 0) continue;
    if (opt == 'a') {
      addr = optarg;
      continue;
    }
    if (opt == 'b') {
      backend = optarg;
      continue;
    }
    ex_usage_exit(&usage, opt == 'h' ? 0 : 2);
  }
  if (optind != argc) ex_usage_exit(&usage, 2);

  /* Before any thread exists, so that every thread inherits the blocked signals. */
  ex_signals sig;
  if (ex_signals_block(&sig) != 0) return 1;

  server srv = {.w = NULL};
  srv.clients.next = srv.clients.prev = &srv.clients;
  /* The watcher first, so that a bad -b fails before "listening on" is printed. Zero fields
   * keep their defaults; a client that stops reading is cut off at this backlog. */
  gaio_options o = {.max_write_pending = MAX_PENDING_PER_CLIENT};
  if (ex_watcher_create(&srv.w, &o, backend) != 0) return 1;
  int lfd = ex_listen(addr, (int)port, 0);
  if (lfd >= 0 && ex_print_listening(lfd) < 0) {
    close(lfd);
    lfd = -1;
  }
  /* The listener owns lfd: the watcher closes it, or it is closed on error. */
  if (lfd < 0 || ex_listener_start(&srv.listener, srv.w, lfd, 0) != 0) {
    gaio_watcher_destroy(srv.w);
    return 1;
  }
  printf("%s: backend %s, a line every %ld ms; stop with Ctrl-C\n", ex_prog(),
         gaio_backend_name(srv.w), interval_ms);
  fflush(stdout);

  /* Last, once everything stop() touches exists. Without it, stop at once: run() then only
   * drains. */
  int failed = ex_signals_start(&sig, stop, &srv) != 0;
  if (failed) stop(&srv);

  int rc = run(&srv, interval_ms);

  ex_signals_join(&sig);
  printf("%s: %" PRIu64 " ticks, %" PRIu64 " lines sent, %" PRIu64 " clients served, %" PRIu64
         " dropped, %" PRIu64 " failed accepts\n",
         ex_prog(), srv.ticks, srv.lines_sent, srv.listener.accepted, srv.dropped,
         srv.listener.errors);
  ex_print_stats(ex_prog(), srv.w);
  gaio_watcher_destroy(srv.w);
  return rc == 0 && !failed ? 0 : 1;
}
