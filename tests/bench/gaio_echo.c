/* The gaio-c contestant: an echo server on the proactor. Each connection has one request in
 * flight: a read, then a write of the bytes read, then the next read. Connections are accepted
 * with gaio_accept() (--accepts N kept queued on the listener, 16 by default as in examples/).
 *
 * Two read styles (--read):
 *   swap: NULL-buffer reads into the watcher's swap buffer; the bytes are copied into a
 *         per-connection buffer, allocated at the first data (so idle connections hold none),
 *         for the write.
 *   user: reads straight into the per-connection buffer, allocated with the connection.
 *
 * gaio_echo [--backend epoll|uring] [--read swap|user] [--threads N] [--buf BYTES]
 *           [--swap-size BYTES] [--accepts N] [--host H] [--port P | --unix PATH]
 * Prints the bound port (or path) on stdout's first line; exits 0 on SIGINT or SIGTERM. With
 * --threads N > 1 each thread has its own watcher and its own SO_REUSEPORT listener. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gaio/gaio.h"
#include "tests/bench/bench_util.h"

#define DEFAULT_ACCEPTS 16u     /* accepts kept queued on a listener (--accepts) */
#define MAX_ACCEPTS 4096u       /* --accepts limit */
#define ACCEPT_PAUSE_MS 100     /* accepting pauses this long when out of fds or memory */
#define BATCH 512               /* results taken per gaio_wait() */
#define MAX_THREADS 64          /* --threads limit */
#define DEFAULT_BUF (64u << 10) /* bytes per read and per-connection buffer, as the others */
#define DEFAULT_SWAP (4u << 20) /* --read swap: swap buffer, 64 reads of DEFAULT_BUF per wait */
#define MAX_BUF (64u << 20)     /* --buf and --swap-size limit */

typedef struct config {
  bench_addr addr;
  const char *backend; /* NULL: gaio's choice */
  int user_bufs;       /* --read user */
  int threads;
  size_t buf;       /* bytes per read (gaio_options.read_max in swap mode) */
  size_t swap_size; /* gaio_options.swap_size; 0 = gaio's default */
  unsigned accepts; /* accepts kept queued */
} config;

typedef struct conn {
  int fd;
  char *buf; /* user mode: data[]; swap mode: malloc'd at the first data */
  char data[];
} conn;

typedef struct worker {
  const config *cfg;
  gaio_watcher *w;
  int lfd;
  int listening;         /* 0 once the listener is gone */
  unsigned queued;       /* accepts in flight */
  uint64_t paused_until; /* gaio_now() time to resume accepting, 0: not paused */
  pthread_t thread;
  int error;
  uint64_t accept_resource_errors; /* EMFILE and the like: expected at the fd limit */
  uint64_t conn_errors; /* connections that ended with an error other than EOF/shutdown */
  int first_conn_error; /* the first such error, and where it came from */
  const char *first_where;
} worker;

/* Count a connection's unexpected end; the first one is printed at exit. */
static void note_error(worker *wk, const char *where, int error) {
  if (wk->conn_errors++ == 0) {
    wk->first_conn_error = error;
    wk->first_where = where;
  }
}

/* ---- Accepting ---- */

static void accepts_arm(worker *wk) {
  while (wk->listening && wk->paused_until == 0 && wk->queued < wk->cfg->accepts) {
    int rc = gaio_accept(wk->w, wk->lfd, NULL, &wk->lfd);
    if (rc == -ESHUTDOWN || rc == -EBADF) {
      wk->listening = 0;
    } else if (rc != 0) {
      wk->paused_until = gaio_now() + (uint64_t)ACCEPT_PAUSE_MS * 1000000u;
    } else {
      wk->queued++;
    }
  }
}

static void conn_start(worker *wk, int fd) {
  size_t extra = wk->cfg->user_bufs ? wk->cfg->buf : 0;
  conn *c = malloc(sizeof(*c) + extra);
  int rc = c == NULL ? -ENOMEM : bench_nodelay(fd);
  if (rc == 0) rc = gaio_attach(wk->w, fd);
  if (rc != 0) {
    note_error(wk, "accepted connection setup", rc);
    free(c);
    close(fd); /* on attach error the caller keeps the fd */
    return;
  }
  c->fd = fd;
  c->buf = wk->cfg->user_bufs ? c->data : NULL;
  if ((rc = gaio_read(wk->w, fd, c->buf, wk->cfg->user_bufs ? wk->cfg->buf : 0, c)) != 0) {
    note_error(wk, "first read", rc);
    gaio_free(wk->w, fd);
    free(c);
  }
}

static void on_accept(worker *wk, const gaio_result *r) {
  wk->queued--;
  switch (-r->error) {
    case 0:
      conn_start(wk, r->conn_fd);
      break;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      wk->accept_resource_errors++;
      /* The pending connection stays in the backlog: retrying at once would spin. */
      if (wk->paused_until == 0)
        wk->paused_until = gaio_now() + (uint64_t)ACCEPT_PAUSE_MS * 1000000u;
      break;
    case ECANCELED:
    case ESHUTDOWN:
    case EBADF:
    case EINVAL:
      wk->listening = 0;
      break;
    default: /* ECONNABORTED and other per-connection errors: take the next one */
      note_error(wk, "accept", r->error);
      break;
  }
  accepts_arm(wk);
}

/* Before each wait: end a pause whose time has come; the wait timeout that keeps the pause. */
static int accept_timeout(worker *wk) {
  if (wk->paused_until == 0) return -1;
  uint64_t now = gaio_now();
  if (now < wk->paused_until) return (int)((wk->paused_until - now) / 1000000u) + 1;
  wk->paused_until = 0;
  accepts_arm(wk);
  return wk->paused_until == 0 ? -1 : ACCEPT_PAUSE_MS;
}

/* ---- Echo ---- */

static void conn_end(worker *wk, conn *c, int error) {
  /* A client that leaves with messages in flight resets the connection: expected. */
  if (error != GAIO_EOF && error != -ESHUTDOWN && error != -ECONNRESET && error != -EPIPE)
    note_error(wk, "connection", error);
  if (error != -ESHUTDOWN) gaio_free(wk->w, c->fd); /* after a close the watcher closes it */
  if (c->buf != c->data) free(c->buf);
  free(c);
}

static int echo_back(worker *wk, conn *c, const gaio_result *r) {
  if (!wk->cfg->user_bufs) {
    if (c->buf == NULL && (c->buf = malloc(wk->cfg->buf)) == NULL) return -ENOMEM;
    memcpy(c->buf, r->buf, r->size);
  }
  return gaio_write(wk->w, c->fd, c->buf, r->size, c);
}

static void on_io(worker *wk, const gaio_result *r) {
  conn *c = r->ctx;
  if (r->error != 0) {
    conn_end(wk, c, r->error);
    return;
  }
  int rc = r->op == GAIO_OP_READ
               ? echo_back(wk, c, r)
               : gaio_read(wk->w, c->fd, wk->cfg->user_bufs ? c->buf : NULL, wk->cfg->buf, c);
  if (rc != 0) conn_end(wk, c, rc); /* no result follows a failed submit */
}

static void *worker_main(void *arg) {
  worker *wk = arg;
  gaio_result res[BATCH];
  accepts_arm(wk);
  for (;;) {
    int n = gaio_wait(wk->w, res, BATCH, accept_timeout(wk));
    if (n == -ESHUTDOWN) break;
    if (n < 0) {
      fprintf(stderr, "gaio_echo: gaio_wait: %s\n", gaio_strerror(n));
      wk->error = n;
      gaio_watcher_close(wk->w); /* then drain until -ESHUTDOWN, which frees the conns */
      continue;
    }
    for (int i = 0; i < n; i++) {
      if (res[i].op == GAIO_OP_ACCEPT && res[i].ctx == &wk->lfd)
        on_accept(wk, &res[i]);
      else
        on_io(wk, &res[i]);
    }
  }
  return NULL;
}

/* ---- Setup ---- */

static int worker_init(worker *wk, const config *cfg, bench_addr *addr) {
  memset(wk, 0, sizeof(*wk));
  wk->cfg = cfg;
  gaio_options o = {.backend = cfg->backend, .swap_size = cfg->swap_size};
  if (!cfg->user_bufs) o.read_max = cfg->buf;
  int rc = gaio_watcher_create(&wk->w, &o);
  if (rc != 0) {
    fprintf(stderr, "gaio_echo: backend %s not available: %s\n",
            cfg->backend ? cfg->backend : "(auto)", gaio_strerror(rc));
    return rc;
  }
  wk->lfd = bench_listen(addr, cfg->threads > 1, 1);
  if (wk->lfd < 0) return wk->lfd;
  if ((rc = gaio_attach(wk->w, wk->lfd)) != 0) {
    close(wk->lfd);
    fprintf(stderr, "gaio_echo: attach listener: %s\n", gaio_strerror(rc));
    return rc;
  }
  wk->listening = 1;
  return 0;
}

static int parse_args(config *cfg, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(&cfg->addr, argc, argv, &i);
    if (rc < 0) return rc;
    if (rc == 1) continue;
    static const char *const known[] = {"--backend", "--read", "--threads",
                                        "--accepts", "--buf",  "--swap-size"};
    const char *flag = argv[i], *v = NULL;
    for (size_t k = 0; k < sizeof(known) / sizeof(known[0]) && v == NULL; k++) {
      if (strcmp(flag, known[k]) == 0 && (v = bench_flag_value(argc, argv, &i)) == NULL)
        return -EINVAL;
    }
    long n;
    if (v != NULL && strcmp(flag, "--backend") == 0) {
      cfg->backend = v;
    } else if (strcmp(flag, "--read") == 0 && (!strcmp(v, "swap") || !strcmp(v, "user"))) {
      cfg->user_bufs = strcmp(v, "user") == 0;
    } else if (strcmp(flag, "--threads") == 0) {
      if (bench_parse_long(flag, v, 1, MAX_THREADS, &n) != 0) return -EINVAL;
      cfg->threads = (int)n;
    } else if (strcmp(flag, "--accepts") == 0) {
      if (bench_parse_long(flag, v, 1, MAX_ACCEPTS, &n) != 0) return -EINVAL;
      cfg->accepts = (unsigned)n;
    } else if (strcmp(flag, "--buf") == 0 || strcmp(flag, "--swap-size") == 0) {
      if (bench_parse_long(flag, v, 1, MAX_BUF, &n) != 0) return -EINVAL;
      *(flag[2] == 'b' ? &cfg->buf : &cfg->swap_size) = (size_t)n;
    } else {
      fprintf(stderr, "gaio_echo: unknown flag or bad value: %s\n", flag);
      return -EINVAL;
    }
  }
  if (cfg->threads > 1 && cfg->addr.unix_path != NULL) {
    fprintf(stderr, "gaio_echo: --threads > 1 needs TCP (SO_REUSEPORT), not --unix\n");
    return -EINVAL;
  }
  if (!cfg->user_bufs && cfg->swap_size == 0) cfg->swap_size = DEFAULT_SWAP;
  /* A swap read takes a read_max slice, so the per-connection copy buffer needs no more. */
  if (!cfg->user_bufs && cfg->swap_size != 0 && cfg->buf > cfg->swap_size)
    cfg->buf = cfg->swap_size;
  return 0;
}

static worker workers[MAX_THREADS];

static void *signal_main(void *arg) {
  sigset_t *set = arg;
  int sig;
  sigwait(set, &sig);
  const config *cfg = workers[0].cfg;
  for (int i = 0; i < cfg->threads; i++) gaio_watcher_close(workers[i].w);
  return NULL;
}

_Static_assert(MAX_THREADS == 64 && MAX_ACCEPTS == 4096u, "the usage lines say 64 and 4096");
static const char *const flags[] = {
    "--backend NAME    epoll or uring (default: gaio's choice; GAIO_BACKEND overrides it)",
    "--read swap|user  read into the watcher's swap buffer or per-connection ones (default user)",
    "--threads N       threads, each with a watcher and a SO_REUSEPORT listener, 1..64 (default 1)",
    "--buf BYTES       bytes per read and per-connection buffer (default 65536)",
    "--swap-size BYTES the swap buffer with --read swap (default 4194304)",
    "--accepts N       accepts kept queued on the listener, 1..4096 (default 16)",
    BENCH_USAGE_HOST, BENCH_USAGE_PORT, BENCH_USAGE_UNIX, NULL};
static const ex_usage usage = {
    "[--backend epoll|uring] [--read swap|user] [--threads N] [--buf BYTES] [--swap-size BYTES] "
    "[--accepts N] [--host H] [--port P | --unix PATH]",
    flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  static config cfg = {
      .threads = 1, .user_bufs = 1, .buf = DEFAULT_BUF, .accepts = DEFAULT_ACCEPTS};
  if (parse_args(&cfg, argc, argv) != 0) ex_usage_exit(&usage, 2);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it; signal_main takes them */
  bench_addr addr = cfg.addr;
  int started = 0, rc = 0;
  while (started < cfg.threads) {
    rc = worker_init(&workers[started], &cfg, &addr);
    started++;
    if (rc != 0) break;
    if (started == 1) {
      /* The other threads' listeners share the port the first one got. */
      int port = bench_print_bound(workers[0].lfd, &addr);
      if (port < 0) {
        rc = port;
        break;
      }
      addr.port = port;
    }
  }
  if (rc != 0) {
    for (int i = 0; i < started; i++) gaio_watcher_destroy(workers[i].w);
    return 1;
  }
  pthread_t sig_thread;
  pthread_create(&sig_thread, NULL, signal_main, &set);
  for (int i = 0; i < cfg.threads; i++)
    pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
  int failed = 0;
  for (int i = 0; i < cfg.threads; i++) {
    pthread_join(workers[i].thread, NULL);
    failed |= workers[i].error != 0;
    if (workers[i].conn_errors != 0)
      fprintf(stderr, "gaio_echo: thread %d: %llu connection errors, the first: %s: %s\n", i,
              (unsigned long long)workers[i].conn_errors, workers[i].first_where,
              gaio_strerror(workers[i].first_conn_error));
    if (workers[i].accept_resource_errors != 0)
      fprintf(stderr, "gaio_echo: thread %d: %llu accepts failed for lack of fds or memory\n", i,
              (unsigned long long)workers[i].accept_resource_errors);
  }
  /* If the loops ended without a signal, wake the signal thread (its close is then a no-op). */
  pthread_kill(sig_thread, SIGTERM);
  pthread_join(sig_thread, NULL);
  for (int i = 0; i < cfg.threads; i++) gaio_watcher_destroy(workers[i].w);
  if (cfg.addr.unix_path != NULL) unlink(cfg.addr.unix_path);
  return failed;
}
