/* echo_demo: an echo server and a checking client in one process, each on its own watcher.
 *
 *   echo_demo [-c connections] [-s message_bytes] [-d seconds] [-n round_trips] [-b backend]
 *             (defaults: 64 connections, 4096 bytes, 2 seconds; -n alone runs without a time
 *             limit; gaio's choice of backend, which the GAIO_BACKEND environment variable
 *             overrides; -b uring or -b epoll names one, for both watchers)
 *
 * The server is echo_service on 127.0.0.1, port 0, looped by a thread of its own, which also
 * accepts the connections (accepts queued on the listening socket, through gaio). The client
 * opens C connections on a second watcher, looped by the main thread. On every connection it
 * does round trips: fill a message with bytes that depend on the connection and the round,
 * queue a gaio_write() of it and, at the same time, a gaio_read_full() of the same length (reads
 * and writes are independent), then compare every byte that came back. Each round has a
 * deadline, so a stuck peer shows up as -ETIMEDOUT instead of a hang.
 *
 * It prints a short summary and exits 0 only if every byte matched, no error happened, and the
 * watchers' counters agree with what was sent (submitted == completed, bytes in == bytes out). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "examples/echo_service.h"
#include "examples/example_util.h"

#define BATCH 512
#define ROUND_TIMEOUT_NS (10ull * 1000000000ull) /* per round trip */
#define STALL_NS (ROUND_TIMEOUT_NS + 5000000000ull) /* no result at all for this long: give up */
#define MAX_REPORTED 5                              /* errors printed in full; the rest counted */

/* ---- The server: echo_service, listening, and a thread running the loop ---- */

typedef struct demo_server {
  echo_service echo;
  pthread_t thread;
  int port;
  int rc;
} demo_server;

static void *server_main(void *arg) {
  demo_server *s = arg;
  s->rc = echo_service_run(&s->echo);
  return NULL;
}

static int server_start(demo_server *s, const char *backend) {
  int lfd = ex_listen("127.0.0.1", 0, 0);
  if (lfd < 0) return lfd;
  s->port = ex_local_port(lfd);
  int rc = s->port < 0 ? ex_err("getsockname", s->port) : echo_service_init(&s->echo, backend);
  if (rc != 0) {
    close(lfd);
    return rc;
  }
  s->echo.quiet = 1; /* the client reports; the server only counts */
  if ((rc = echo_service_listen(&s->echo, lfd)) != 0) { /* the watcher owns lfd now */
    echo_service_destroy(&s->echo);
    return rc;
  }
  if ((rc = pthread_create(&s->thread, NULL, server_main, s)) != 0) {
    echo_service_destroy(&s->echo);
    return ex_err("pthread_create(server)", -rc);
  }
  return 0;
}

/* Close the watcher (its loop drains, the accepts too, and returns), wait, and free. */
static void server_stop(demo_server *s, gaio_stats *st) {
  gaio_watcher_close(s->echo.w);
  pthread_join(s->thread, NULL);
  gaio_watcher_stats(s->echo.w, st);
  echo_service_destroy(&s->echo);
}

/* ---- The client ---- */

typedef struct conn {
  int fd;
  unsigned id;
  uint64_t round;   /* the round in progress */
  int pending;      /* requests of this round not yet delivered (the write and the read) */
  int failed;       /* an error happened: free the fd once nothing is pending */
  unsigned char *tx; /* message sent, then compared with rx */
  unsigned char *rx;
} conn;

typedef struct client {
  gaio_watcher *w;
  conn *conns;
  size_t nconns, size;
  int active;              /* connections still doing round trips */
  uint64_t end;            /* no new round after this gaio_now() time (0: none) */
  uint64_t max_rounds;     /* no new round after this many started (0: none) */
  uint64_t started, rounds; /* rounds started, rounds completed and checked */
  uint64_t bad_bytes, errors;
  uint64_t t_end;          /* when the last connection finished */
} client;

/* Message bytes: xorshift32 seeded from (connection, round), so that a byte echoed on the wrong
 * connection or from an earlier round is caught, not only a corrupted one. */
static void fill(unsigned char *p, size_t n, unsigned id, uint64_t round) {
  uint32_t x = (id + 1) * 0x9E3779B9u ^ (uint32_t)(round * 0x85EBCA6Bu);
  if (x == 0) x = 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (unsigned char)x;
  }
}

static void report(client *cl, conn *c, const char *what, int error) {
  cl->errors++;
  c->failed = 1;
  if (cl->errors <= MAX_REPORTED)
    fprintf(stderr, "%s: connection %u, round %" PRIu64 ": %s: %s\n", ex_prog(), c->id, c->round,
            what, gaio_strerror(error));
}

/* Start the next round on c, or retire c. */
static void next_round(client *cl, conn *c) {
  int more = !c->failed && (cl->end == 0 || gaio_now() < cl->end) &&
             (cl->max_rounds == 0 || cl->started < cl->max_rounds);
  if (!more) {
    if (c->failed) {
      int rc = gaio_free(cl->w, c->fd); /* closes it; nothing of c is pending */
      if (rc != 0) ex_err("gaio_free", rc);
    }
    if (--cl->active == 0) cl->t_end = gaio_now();
    return;
  }
  c->round = cl->started++;
  fill(c->tx, cl->size, c->id, c->round);
  uint64_t deadline = gaio_now() + ROUND_TIMEOUT_NS;
  int rc = gaio_write_deadline(cl->w, c->fd, c->tx, cl->size, c, deadline);
  if (rc != 0) {
    report(cl, c, "gaio_write", rc);
    next_round(cl, c); /* nothing pending: retire it now */
    return;
  }
  c->pending = 1;
  rc = gaio_read_full(cl->w, c->fd, c->rx, cl->size, c, deadline);
  if (rc != 0)
    report(cl, c, "gaio_read_full", rc); /* retired when the write's result comes */
  else
    c->pending = 2;
}

static void check(client *cl, conn *c) {
  if (memcmp(c->rx, c->tx, cl->size) == 0) {
    cl->rounds++;
    return;
  }
  size_t bad = 0;
  for (size_t i = 0; i < cl->size; i++) bad += c->rx[i] != c->tx[i];
  cl->bad_bytes += bad;
  cl->errors++;
  c->failed = 1;
  if (cl->errors <= MAX_REPORTED)
    fprintf(stderr, "%s: connection %u, round %" PRIu64 ": %zu of %zu bytes differ\n", ex_prog(),
            c->id, c->round, bad, cl->size);
}

static void on_result(client *cl, const gaio_result *r) {
  conn *c = r->ctx;
  if (r->error != 0)
    report(cl, c, r->op == GAIO_OP_WRITE ? "write" : "read_full", r->error);
  else if (r->op == GAIO_OP_READ_FULL)
    check(cl, c);
  if (--c->pending == 0) next_round(cl, c);
}

/* Loop until every connection is retired. Returns 0 or a negative errno. */
static int client_run(client *cl) {
  gaio_result res[BATCH];
  uint64_t last = gaio_now();
  for (size_t i = 0; i < cl->nconns; i++) next_round(cl, &cl->conns[i]);
  while (cl->active > 0) {
    int n = gaio_wait(cl->w, res, BATCH, 1000);
    if (n < 0) return ex_err("gaio_wait", n);
    for (int i = 0; i < n; i++) on_result(cl, &res[i]);
    uint64_t now = gaio_now();
    if (n > 0) last = now;
    /* Every request has a deadline, so silence this long means a result was lost. */
    if (now - last > STALL_NS) return ex_err("no result for too long", -ETIMEDOUT);
  }
  return 0;
}

/* Open the connections (blocking connect, then gaio_attach). Returns 0 or a negative errno. */
static int client_connect(client *cl, int port) {
  for (size_t i = 0; i < cl->nconns; i++) {
    conn *c = &cl->conns[i];
    c->id = (unsigned)i;
    c->fd = -1;
    c->tx = malloc(cl->size);
    c->rx = malloc(cl->size);
    if (c->tx == NULL || c->rx == NULL) return ex_err("malloc", -ENOMEM);
    int fd = ex_connect("127.0.0.1", port);
    if (fd < 0) return fd;
    int rc = gaio_attach(cl->w, fd);
    if (rc != 0) {
      close(fd);
      return ex_err("gaio_attach", rc);
    }
    c->fd = fd;
    cl->active++;
  }
  return 0;
}

/* Close the watcher (it closes the connections) and take the results still queued, if any. */
static void client_close(client *cl) {
  gaio_result res[BATCH];
  gaio_watcher_close(cl->w);
  int n;
  while ((n = gaio_wait(cl->w, res, BATCH, -1)) != -ESHUTDOWN) {
    if (n < 0) {
      ex_err("gaio_wait", n);
      cl->errors++;
      break;
    }
  }
}

/* ---- Summary ---- */

/* The counters must tell the same story as the client: every submit got its result, and each
 * side read exactly what the other wrote. Returns the number of disagreements (printed). */
static int audit(const client *cl, const gaio_stats *cs, const gaio_stats *ss) {
  int bad = 0;
  uint64_t echoed = cl->rounds * cl->size;
  if (cs->submitted != cs->completed || ss->submitted != ss->completed) {
    fprintf(stderr, "%s: submitted != completed (client %" PRIu64 "/%" PRIu64 ", server %" PRIu64
            "/%" PRIu64 ")\n", ex_prog(), cs->submitted, cs->completed, ss->submitted,
            ss->completed);
    bad++;
  }
  if (cl->errors == 0 && (cs->bytes_written != echoed || cs->bytes_read != echoed ||
                          ss->bytes_read != echoed || ss->bytes_written != echoed)) {
    fprintf(stderr, "%s: byte counters disagree: expected %" PRIu64 ", client wrote %" PRIu64
            " read %" PRIu64 ", server read %" PRIu64 " wrote %" PRIu64 "\n", ex_prog(), echoed,
            cs->bytes_written, cs->bytes_read, ss->bytes_read, ss->bytes_written);
    bad++;
  }
  return bad;
}

static const char *const flags[] = {
    "-c CONNECTIONS    client connections, 1..8000 (default 64)",
    "-s BYTES          bytes per message, 1..16777216 (default 4096)",
    "-d SECONDS        run this long, 1..3600 (default 2)",
    "-n ROUND_TRIPS    round trips per connection (default: no limit; alone: no time limit)",
    EX_USAGE_BACKEND, NULL};
static const ex_usage usage = {
    "[-c connections] [-s message_bytes] [-d seconds] [-n round_trips] [-b uring|epoll]", flags};

int main(int argc, char **argv) {
  ex_init(argv[0]);
  long nconns = 64, size = 4096, seconds = 2, rounds = 0;
  const char *backend = NULL;
  int have_d = 0, opt;
  while ((opt = getopt_long(argc, argv, "c:s:d:n:b:h", ex_help_option, NULL)) != -1) {
    int rc = -EINVAL;
    if (opt == 'b') {
      backend = optarg;
      rc = 0;
    }
    if (opt == 'c') rc = ex_parse_long('c', optarg, 1, 8000, &nconns);
    if (opt == 's') rc = ex_parse_long('s', optarg, 1, 16 << 20, &size);
    if (opt == 'd') {
      rc = ex_parse_long('d', optarg, 1, 3600, &seconds);
      have_d = 1;
    }
    if (opt == 'n') rc = ex_parse_long('n', optarg, 1, 1L << 40, &rounds);
    if (rc != 0) ex_usage_exit(&usage, opt == 'h' ? 0 : 2);
  }
  if (optind != argc) ex_usage_exit(&usage, 2);

  /* Each connection costs two fds in this process (client and server side): lift the soft limit
   * to the hard one, so that -c can go up to about half of it. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) ex_err("setrlimit(RLIMIT_NOFILE)", -errno);
  }

  demo_server srv;
  if (server_start(&srv, backend) != 0) return 1;

  client cl = {.nconns = (size_t)nconns, .size = (size_t)size, .max_rounds = (uint64_t)rounds};
  int rc = ex_watcher_create(&cl.w, NULL, backend);
  if (rc != 0) {
    gaio_stats ignored;
    server_stop(&srv, &ignored);
    return 1;
  }
  cl.conns = calloc(cl.nconns, sizeof(conn));
  rc = cl.conns == NULL ? ex_err("calloc", -ENOMEM) : client_connect(&cl, srv.port);
  uint64_t t0 = gaio_now();
  if (rc == 0) {
    if (rounds == 0 || have_d) cl.end = t0 + (uint64_t)seconds * 1000000000u;
    rc = client_run(&cl);
  }
  if (rc != 0) cl.errors++;
  if (cl.t_end == 0) cl.t_end = gaio_now();
  client_close(&cl);

  gaio_stats cs, ss;
  gaio_watcher_stats(cl.w, &cs);
  server_stop(&srv, &ss);
  uint64_t server_errors = atomic_load(&srv.echo.errors);
  if (server_errors != 0)
    fprintf(stderr, "%s: %" PRIu64 " server connections ended with an error\n", ex_prog(),
            server_errors);
  cl.errors += server_errors + (srv.rc != 0);
  int disagreements = audit(&cl, &cs, &ss);

  double secs = (double)(cl.t_end - t0) / 1e9;
  double mb = (double)(cl.rounds * cl.size) / 1e6;
  int ok = rc == 0 && cl.errors == 0 && cl.bad_bytes == 0 && disagreements == 0 && cl.rounds > 0;
  printf("%s: %zu connections x %zu-byte messages, %s backend, %.2f s\n", ex_prog(), cl.nconns,
         cl.size, gaio_backend_name(cl.w), secs);
  printf("%s: %" PRIu64 " round trips (%.0f/s), %.1f MB echoed (%.1f MB/s)\n", ex_prog(),
         cl.rounds, secs > 0 ? (double)cl.rounds / secs : 0.0, mb, secs > 0 ? mb / secs : 0.0);
  printf("%s: %s: %" PRIu64 " errors, %" PRIu64 " mismatched bytes%s\n", ex_prog(),
         ok ? "OK" : "FAILED", cl.errors, cl.bad_bytes, ok ? ", every echoed byte checked" : "");

  gaio_watcher_destroy(cl.w);
  if (cl.conns != NULL) {
    for (size_t i = 0; i < cl.nconns; i++) {
      free(cl.conns[i].tx);
      free(cl.conns[i].rx);
    }
  }
  free(cl.conns);
  return ok ? 0 : 1;
}
