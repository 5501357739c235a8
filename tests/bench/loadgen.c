/* The load generator of the echo benchmarks (a client, not a contestant: it uses epoll directly).
 *
 * Every connection is a byte stream whose content is a fixed pattern starting at a per-connection
 * offset, so every echoed byte is checked (memcmp against the pattern) and a mix-up between
 * connections or a lost, doubled or reordered byte is caught. A "message" is `size` bytes of it.
 *
 * Modes (--mode):
 *   pingpong  --conns N --depth D --size S: keep D messages in flight per connection; after
 *             --warmup seconds, count the messages echoed during --duration seconds: req/s, MB/s
 *             (echoed payload), latency p50/p99/p999 (from queueing a message to its last byte).
 *   stream    --conns N --size S: write S-byte chunks as fast as the socket takes them, read the
 *             echo; MB/s of echoed bytes during --duration after --warmup.
 *   burst     --conns N --size S: open N connections at once, each echoes one S-byte message
 *             and closes; total ms until the last echo, and per-connection p50/p99.
 *   idle      --conns N [--server-pid PID]: open N connections that send nothing, wait until the
 *             server holds them (its fd count), read its VmRSS before and after: bytes/conn.
 *   maxconn   --conns N --procs K [--server-pid PID]: K processes (each has its own fd limit)
 *             open connections in batches, each echoing --size bytes, until the server stops
 *             answering (or the client runs out); held = connections that echoed.
 * Other flags: --host H --port P | --unix PATH, --cpu C (pin this process), --src-ips K (spread
 * TCP connections over source addresses 127.0.0.2.., for many connections), --timeout SEC.
 *
 * Prints one line of key=value pairs on stdout; exits 0 on success, 1 on an error (a wrong byte,
 * a lost connection, a timeout), 2 on bad flags. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/bench_util.h"
#include "tests/bench/hist.h"

#define PAT_PERIOD 65521u      /* pattern period (prime, so it drifts against sizes) */
#define MAX_SIZE (1u << 20)    /* --size limit; the pattern is PAT_PERIOD + this long */
#define MAX_DEPTH 1024         /* --depth limit */
#define MAX_CONNS 200000       /* --conns limit */
#define MAX_PROCS 16           /* --procs limit */
#define READ_CHUNK (64u << 10) /* bytes per read(2) */
#define MAX_EVENTS 1024        /* events per epoll_wait */
#define CONNECT_WINDOW 256     /* connects in progress at once while setting up */
#define MAXCONN_BATCH 256      /* maxconn: connections opened per step */
#define MAXCONN_STEP_TIMEOUT_NS (2000000000ull) /* maxconn: wait for a batch's echoes */
#define POLL_MS 5 /* longest epoll_wait, so time checks stay fine-grained */

enum mode { M_PINGPONG, M_STREAM, M_BURST, M_IDLE, M_MAXCONN };
static const char *const mode_names[] = {"pingpong", "stream", "burst", "idle", "maxconn"};

enum cstate { C_NEW, C_CONNECTING, C_OPEN, C_DONE, C_FAILED };

typedef struct config {
  bench_addr addr;
  enum mode mode;
  long conns, depth, size, cpu, server_pid, procs, src_ips;
  double duration, warmup, timeout;
} config;

typedef struct lconn {
  int fd;
  enum cstate state;
  uint32_t salt;    /* pattern offset of byte 0 of the stream */
  uint64_t issued;  /* bytes the workload has asked to send */
  uint64_t sent;    /* bytes written */
  uint64_t recvd;   /* bytes received (and checked) */
  uint64_t t_start; /* burst: when connect() was called */
  uint64_t *t_send; /* pingpong: queue time of message k in slot k % depth */
} lconn;

typedef struct loadgen {
  config cfg;
  int ep;
  lconn *c;
  uint64_t *times;
  long next_open;  /* next connection to open */
  long connecting; /* connects in progress */
  long opened, done, failed;
  long window;          /* most connects in progress at once */
  int running;          /* pingpong/stream: issue new messages */
  uint64_t t0, t1;      /* measurement window */
  uint64_t msgs, bytes; /* counted inside the window */
  long errors;
  hist h;
} loadgen;

static unsigned char pat[PAT_PERIOD + MAX_SIZE];
static unsigned char rbuf[READ_CHUNK];

static void pat_init(void) {
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < PAT_PERIOD; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
    pat[i] = (unsigned char)(x >> 24);
  }
  for (size_t i = PAT_PERIOD; i < sizeof(pat); i++) pat[i] = pat[i - PAT_PERIOD];
}

static const unsigned char *pat_at(const lconn *c, uint64_t off) {
  return pat + (c->salt + off) % PAT_PERIOD;
}

static void fail(loadgen *lg, lconn *c, const char *why, int err) {
  if (lg->errors++ < 5) {
    fprintf(stderr, "loadgen: conn %ld: %s%s%s\n", (long)(c - lg->c), why, err ? ": " : "",
            err ? strerror(err) : "");
  }
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->state = C_FAILED;
  lg->failed++;
}

/* ---- Opening connections ---- */

static int src_bind(loadgen *lg, int fd, long i) {
  if (lg->cfg.src_ips <= 0 || lg->cfg.addr.unix_path != NULL) return 0;
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(i % lg->cfg.src_ips));
  return bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
}

/* Start connecting c. Returns 0, -EAGAIN (a unix listener's backlog is full: retry later) or
 * another negative errno (EMFILE: this process is out of fds). */
static int conn_open(loadgen *lg, lconn *c, long i) {
  struct sockaddr_storage ss;
  int len = bench_sockaddr(&lg->cfg.addr, &ss);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = src_bind(lg, fd, i);
  if (rc == 0 && connect(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0 && errno != EINPROGRESS)
    rc = -errno;
  if (rc != 0) {
    close(fd);
    return rc;
  }
  bench_nodelay(fd);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  c->fd = fd;
  c->state = C_CONNECTING;
  c->t_start = bench_now_ns();
  lg->connecting++;
  return 0;
}

/* Open connections up to `upto` (exclusive), keeping at most lg->window connecting. Returns 0
 * or the error that stopped it (other than a unix -EAGAIN, which just waits for the next call). */
static int open_more(loadgen *lg, long upto) {
  while (lg->next_open < upto && lg->connecting < lg->window) {
    int rc = conn_open(lg, &lg->c[lg->next_open], lg->next_open);
    if (rc == -EAGAIN) return 0;
    if (rc != 0) return rc;
    lg->next_open++;
  }
  return 0;
}

/* ---- Sending and receiving ---- */

static void issue(loadgen *lg, lconn *c, uint64_t now) {
  uint64_t k = c->issued / (uint64_t)lg->cfg.size;
  if (c->t_send != NULL) c->t_send[k % (uint64_t)lg->cfg.depth] = now;
  c->issued += (uint64_t)lg->cfg.size;
}

static void flush(loadgen *lg, lconn *c) {
  for (;;) {
    if (c->sent == c->issued) {
      if (lg->cfg.mode != M_STREAM || !lg->running) return;
      c->issued += (uint64_t)lg->cfg.size; /* the firehose never runs dry */
    }
    uint64_t want = c->issued - c->sent;
    ssize_t n = write(c->fd, pat_at(c, c->sent), want < MAX_SIZE ? want : MAX_SIZE);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) fail(lg, c, "write", errno);
      return;
    }
    c->sent += (uint64_t)n;
  }
}

static void on_opened(loadgen *lg, lconn *c) {
  lg->connecting--;
  lg->opened++;
  c->state = C_OPEN;
  if (lg->cfg.mode == M_BURST || lg->cfg.mode == M_MAXCONN) {
    issue(lg, c, bench_now_ns());
    flush(lg, c);
  }
}

/* The messages in (old, new] bytes are complete. */
static void on_echoed(loadgen *lg, lconn *c, uint64_t old, uint64_t now) {
  uint64_t size = (uint64_t)lg->cfg.size;
  int in_window = now >= lg->t0 && now < lg->t1;
  switch (lg->cfg.mode) {
    case M_PINGPONG:
      for (uint64_t k = old / size; k < c->recvd / size; k++) {
        if (in_window) {
          hist_add(&lg->h, now - c->t_send[k % (uint64_t)lg->cfg.depth]);
          lg->msgs++;
          lg->bytes += size;
        }
        if (lg->running) issue(lg, c, now);
      }
      flush(lg, c);
      break;
    case M_STREAM:
      if (in_window) lg->bytes += c->recvd - old;
      break;
    default: /* burst, maxconn: one message, then done */
      if (c->recvd < size) break;
      if (c->recvd > size) {
        fail(lg, c, "more bytes than sent", 0);
        return;
      }
      hist_add(&lg->h, now - c->t_start);
      c->state = C_DONE;
      lg->done++;
      if (lg->cfg.mode == M_BURST) {
        close(c->fd);
        c->fd = -1;
      }
      break;
  }
}

static void on_readable(loadgen *lg, lconn *c) {
  for (;;) {
    ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
    if (n == 0) {
      fail(lg, c, "closed by the server", 0);
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) fail(lg, c, "read", errno);
      return;
    }
    if (c->recvd + (uint64_t)n > c->sent) {
      fail(lg, c, "echo of bytes never sent", 0);
      return;
    }
    if (memcmp(rbuf, pat_at(c, c->recvd), (size_t)n) != 0) {
      {
        fail(lg, c, "echoed bytes differ from the bytes sent", 0);
        return;
      }
    }
    uint64_t old = c->recvd;
    c->recvd += (uint64_t)n;
    on_echoed(lg, c, old, bench_now_ns());
    if (c->state != C_OPEN) return;
  }
}

static void on_event(loadgen *lg, lconn *c, unsigned events) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 && (events & EPOLLERR)) err = ECONNRESET;
    if (err != 0) {
      lg->connecting--;
      {
        fail(lg, c, "connect", err);
        return;
      }
    }
    on_opened(lg, c);
  }
  if (c->state == C_OPEN && (events & EPOLLOUT)) flush(lg, c);
  if (c->state == C_OPEN && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
    on_readable(lg, c);
}

/* One round of the event loop: take events (waiting up to POLL_MS) and dispatch them. */
static void poll_once(loadgen *lg, int timeout_ms) {
  struct epoll_event evs[MAX_EVENTS];
  int n = epoll_wait(lg->ep, evs, MAX_EVENTS, timeout_ms);
  for (int i = 0; i < n; i++) on_event(lg, evs[i].data.ptr, evs[i].events);
}

static int timed_out(loadgen *lg, uint64_t deadline, const char *what) {
  if (bench_now_ns() < deadline) return 0;
  fprintf(stderr, "loadgen: timed out %s\n", what);
  lg->errors++;
  return 1;
}

/* ---- Setup and teardown ---- */

static int lg_init(loadgen *lg, long nconns) {
  lg->ep = epoll_create1(EPOLL_CLOEXEC);
  lg->c = calloc((size_t)nconns, sizeof(lconn));
  if (lg->cfg.mode == M_PINGPONG) lg->times = calloc((size_t)(nconns * lg->cfg.depth), 8);
  if (lg->ep < 0 || lg->c == NULL || (lg->cfg.mode == M_PINGPONG && lg->times == NULL)) {
    fprintf(stderr, "loadgen: out of memory or fds for %ld connections\n", nconns);
    return -ENOMEM;
  }
  for (long i = 0; i < nconns; i++) {
    lg->c[i].fd = -1;
    lg->c[i].salt = (uint32_t)((uint64_t)i * 7919u % PAT_PERIOD);
    if (lg->times != NULL) lg->c[i].t_send = lg->times + i * lg->cfg.depth;
  }
  hist_reset(&lg->h);
  lg->window = CONNECT_WINDOW;
  return 0;
}

static void lg_close_all(loadgen *lg, long nconns) {
  for (long i = 0; i < nconns; i++) {
    if (lg->c[i].fd >= 0) close(lg->c[i].fd);
    lg->c[i].fd = -1;
  }
}

/* Open every connection (window-limited) and wait until all are open. */
static int open_all(loadgen *lg) {
  uint64_t deadline = bench_now_ns() + (uint64_t)(lg->cfg.timeout * 1e9);
  while (lg->opened + lg->failed < lg->cfg.conns) {
    int rc = open_more(lg, lg->cfg.conns);
    if (rc != 0) {
      fprintf(stderr, "loadgen: opening connection %ld: %s\n", lg->next_open, strerror(-rc));
      return rc;
    }
    poll_once(lg, lg->connecting > 0 ? POLL_MS : 1);
    if (timed_out(lg, deadline, "opening connections")) return -ETIMEDOUT;
  }
  return lg->failed == 0 ? 0 : -ECONNREFUSED;
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

/* ---- Modes ---- */

static int run_timed(loadgen *lg) {
  if (open_all(lg) != 0) return 1;
  uint64_t start = bench_now_ns();
  lg->t0 = start + (uint64_t)(lg->cfg.warmup * 1e9);
  lg->t1 = lg->t0 + (uint64_t)(lg->cfg.duration * 1e9);
  lg->running = 1;
  for (long i = 0; i < lg->cfg.conns; i++) {
    lconn *c = &lg->c[i];
    if (lg->cfg.mode == M_PINGPONG) {
      for (long d = 0; d < lg->cfg.depth; d++) issue(lg, c, start);
    }
    flush(lg, c);
  }
  while (bench_now_ns() < lg->t1 && lg->errors == 0) poll_once(lg, POLL_MS);
  lg->running = 0;
  double secs = lg->cfg.duration;
  if (lg->cfg.mode == M_STREAM) {
    printf("mode=stream conns=%ld size=%ld duration_s=%.3f bytes=%llu mb_s=%.1f errors=%ld\n",
           lg->cfg.conns, lg->cfg.size, secs, (unsigned long long)lg->bytes,
           (double)lg->bytes / secs / 1e6, lg->errors);
  } else {
    printf(
        "mode=pingpong conns=%ld depth=%ld size=%ld duration_s=%.3f reqs=%llu req_s=%.0f "
        "mb_s=%.2f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%ld\n",
        lg->cfg.conns, lg->cfg.depth, lg->cfg.size, secs, (unsigned long long)lg->msgs,
        (double)lg->msgs / secs, (double)lg->bytes / secs / 1e6, us(hist_quantile(&lg->h, 0.5)),
        us(hist_quantile(&lg->h, 0.99)), us(hist_quantile(&lg->h, 0.999)), us(lg->h.max),
        lg->errors);
  }
  return lg->errors == 0 ? 0 : 1;
}

static int run_burst(loadgen *lg) {
  lg->window = lg->cfg.conns; /* all at once: this is what burst measures */
  uint64_t start = bench_now_ns();
  uint64_t deadline = start + (uint64_t)(lg->cfg.timeout * 1e9);
  while (lg->done + lg->failed < lg->cfg.conns) {
    /* Open in slices, taking the events in between, as a real client process would. */
    long upto = lg->next_open + 64 < lg->cfg.conns ? lg->next_open + 64 : lg->cfg.conns;
    int rc = open_more(lg, upto);
    if (rc != 0) {
      fprintf(stderr, "loadgen: opening connection %ld: %s\n", lg->next_open, strerror(-rc));
      return 1;
    }
    poll_once(lg, lg->next_open < lg->cfg.conns ? 0 : POLL_MS);
    if (timed_out(lg, deadline, "waiting for the burst")) break;
  }
  uint64_t total = bench_now_ns() - start;
  printf(
      "mode=burst conns=%ld size=%ld total_ms=%.1f done=%ld p50_us=%.1f p99_us=%.1f "
      "max_us=%.1f errors=%ld\n",
      lg->cfg.conns, lg->cfg.size, (double)total / 1e6, lg->done, us(hist_quantile(&lg->h, 0.5)),
      us(hist_quantile(&lg->h, 0.99)), us(lg->h.max), lg->errors);
  return lg->errors == 0 ? 0 : 1;
}

static void pause_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int run_idle(loadgen *lg) {
  int pid = (int)lg->cfg.server_pid;
  long rss0 = pid > 0 ? bench_rss_kib(pid) : -1, fds0 = pid > 0 ? bench_fd_count(pid) : -1;
  if (open_all(lg) != 0) return 1;
  /* Connected is not accepted: wait until the server holds them all. */
  uint64_t deadline = bench_now_ns() + (uint64_t)(lg->cfg.timeout * 1e9);
  long fds = fds0;
  while (pid > 0 && (fds = bench_fd_count(pid)) < fds0 + lg->cfg.conns) {
    if (timed_out(lg, deadline, "waiting for the server to accept")) break;
    poll_once(lg, 10);
  }
  pause_ms(200); /* let the server finish whatever it does per accepted connection */
  long rss1 = pid > 0 ? bench_rss_kib(pid) : -1;
  double per_conn = (double)(rss1 - rss0) * 1024.0 / (double)lg->cfg.conns;
  printf(
      "mode=idle conns=%ld server_fds_before=%ld server_fds=%ld rss_before_kib=%ld "
      "rss_after_kib=%ld bytes_per_conn=%.0f errors=%ld\n",
      lg->cfg.conns, fds0, fds, rss0, rss1, per_conn, lg->errors);
  lg_close_all(lg, lg->cfg.conns);
  return lg->errors == 0 ? 0 : 1;
}

static const char *open_error_name(int rc) {
  if (rc == -EMFILE || rc == -ENFILE) return "client-fd-limit";
  if (rc == -EADDRNOTAVAIL) return "client-ports";
  return "client-error";
}

/* maxconn, one process: open `quota` connections in batches until a batch is not fully echoed
 * (or cannot be opened). Returns the connections held; *why says what stopped it. */
static long maxconn_child(loadgen *lg, long quota, const char **why) {
  *why = "quota";
  while (lg->next_open < quota) {
    long first = lg->next_open;
    long upto = first + MAXCONN_BATCH < quota ? first + MAXCONN_BATCH : quota;
    long done0 = lg->done, failed0 = lg->failed;
    uint64_t deadline = bench_now_ns() + MAXCONN_STEP_TIMEOUT_NS;
    int rc = 0;
    for (;;) {
      if (rc == 0 && lg->next_open < upto) rc = open_more(lg, upto);
      long settled = lg->done - done0 + lg->failed - failed0;
      if ((rc != 0 || lg->next_open == upto) && settled == lg->next_open - first) break;
      if (bench_now_ns() >= deadline) break;
      poll_once(lg, 1);
    }
    if (rc != 0) {
      *why = open_error_name(rc);
      break;
    }
    /* A connection the server did not accept (backlog, refused, reset) never echoes. */
    if (lg->next_open < upto || lg->done - done0 < upto - first) {
      *why = "server-refused";
      break;
    }
  }
  return lg->done;
}

static int run_maxconn(loadgen *lg) {
  long procs = lg->cfg.procs, quota = (lg->cfg.conns + procs - 1) / procs;
  int up[MAX_PROCS][2], down[MAX_PROCS][2];
  pid_t kids[MAX_PROCS];
  for (long p = 0; p < procs; p++) {
    if (pipe2(up[p], O_CLOEXEC) != 0 || pipe2(down[p], O_CLOEXEC) != 0) return 1;
    kids[p] = fork();
    if (kids[p] < 0) return 1;
    if (kids[p] == 0) {
      close(up[p][0]);
      close(down[p][1]);
      if (lg_init(lg, quota) != 0) _exit(1);
      for (long i = 0; i < quota; i++)
        lg->c[i].salt = (uint32_t)((p * quota + i) * 7919 % PAT_PERIOD);
      const char *why;
      long held = maxconn_child(lg, quota, &why);
      dprintf(up[p][1], "%ld %s\n", held, why);
      close(up[p][1]);
      char b;
      while (read(down[p][0], &b, 1) > 0) { /* hold until the parent has counted */
      }
      lg_close_all(lg, quota);
      _exit(0);
    }
    close(up[p][1]);
    close(down[p][0]);
  }
  long held = 0;
  char whys[256] = "";
  for (long p = 0; p < procs; p++) {
    char line[128] = "";
    ssize_t n = read(up[p][0], line, sizeof(line) - 1);
    long h = 0;
    char why[64] = "child-died";
    if (n > 0) sscanf(line, "%ld %63s", &h, why);
    held += h;
    snprintf(whys + strlen(whys), sizeof(whys) - strlen(whys), "%s%s", p ? "," : "", why);
  }
  long sfds = lg->cfg.server_pid > 0 ? bench_fd_count((int)lg->cfg.server_pid) : -1;
  long rss = lg->cfg.server_pid > 0 ? bench_rss_kib((int)lg->cfg.server_pid) : -1;
  for (long p = 0; p < procs; p++) close(down[p][1]);
  for (long p = 0; p < procs; p++) {
    close(up[p][0]);
    waitpid(kids[p], NULL, 0);
  }
  printf("mode=maxconn procs=%ld held=%ld server_fds=%ld server_rss_kib=%ld stop=%s errors=0\n",
         procs, held, sfds, rss, whys);
  return held > 0 ? 0 : 1;
}

/* ---- Flags ---- */

static int parse_mode(const char *v, enum mode *m) {
  for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
    if (strcmp(v, mode_names[i]) == 0) {
      *m = (enum mode)i;
      return 0;
    }
  }
  fprintf(stderr, "--mode: '%s' is not pingpong, stream, burst, idle or maxconn\n", v);
  return -EINVAL;
}

static int parse_args(config *cfg, int argc, char **argv) {
  struct {
    const char *name;
    long *out;
    long min, max;
  } longs[] = {
      {"--conns", &cfg->conns, 1, MAX_CONNS},
      {"--depth", &cfg->depth, 1, MAX_DEPTH},
      {"--size", &cfg->size, 1, MAX_SIZE},
      {"--cpu", &cfg->cpu, 0, CPU_SETSIZE - 1},
      {"--server-pid", &cfg->server_pid, 1, 1 << 30},
      {"--procs", &cfg->procs, 1, MAX_PROCS},
      {"--src-ips", &cfg->src_ips, 0, 250},
  };
  struct {
    const char *name;
    double *out;
  } secs[] = {
      {"--duration", &cfg->duration}, {"--warmup", &cfg->warmup}, {"--timeout", &cfg->timeout}};
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(&cfg->addr, argc, argv, &i), found = rc != 0;
    if (rc < 0) return rc;
    if (found) continue;
    const char *flag = argv[i], *v = bench_flag_value(argc, argv, &i);
    if (v == NULL) return -EINVAL;
    if (strcmp(flag, "--mode") == 0) {
      if (parse_mode(v, &cfg->mode) != 0) return -EINVAL;
      found = 1;
    }
    for (size_t k = 0; !found && k < sizeof(longs) / sizeof(longs[0]); k++) {
      if (strcmp(flag, longs[k].name) != 0) continue;
      if (bench_parse_long(flag, v, longs[k].min, longs[k].max, longs[k].out) != 0) return -EINVAL;
      found = 1;
    }
    for (size_t k = 0; !found && k < sizeof(secs) / sizeof(secs[0]); k++) {
      if (strcmp(flag, secs[k].name) != 0) continue;
      if (bench_parse_seconds(flag, v, secs[k].out) != 0) return -EINVAL;
      found = 1;
    }
    if (!found) {
      fprintf(stderr, "loadgen: unknown flag %s (see the comment at the top of loadgen.c)\n", flag);
      return -EINVAL;
    }
  }
  if (cfg->addr.unix_path == NULL && cfg->addr.port == 0) {
    fprintf(stderr, "loadgen: give --port P (or --unix PATH)\n");
    return -EINVAL;
  }
  if (cfg->duration <= 0.0) cfg->duration = 0.001;
  return 0;
}

static const char *const flags[] = {
    "--mode M          pingpong, stream, burst, idle or maxconn (default pingpong; see loadgen.c)",
    "--conns N         connections (default 1)",
    "--depth D         pingpong: messages in flight per connection (default 1)",
    "--size S          bytes per message (default 64)",
    "--duration SEC    measured time (default 3)",
    "--warmup SEC      time before measuring (default 1)",
    "--timeout SEC     give up after this long without progress (default 30)",
    "--cpu C           pin this process to CPU C (default: not pinned)",
    "--server-pid PID  idle, maxconn: the server, to read its fds and memory (default: none)",
    "--procs K         maxconn: client processes (default 1)",
    "--src-ips K       spread connections over source addresses 127.0.0.2.. (default 0: one)",
    "--host H          the server's address (default 127.0.0.1)",
    BENCH_USAGE_SERVER_PORT, "--unix PATH       the server's unix socket (default: TCP)", NULL};
static const ex_usage usage = {"--port P | --unix PATH [--mode M] [--conns N] [...]", flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  static loadgen lg;
  lg.cfg = (config){.mode = M_PINGPONG,
                    .conns = 1,
                    .depth = 1,
                    .size = 64,
                    .cpu = -1,
                    .procs = 1,
                    .duration = 3.0,
                    .warmup = 1.0,
                    .timeout = 30.0};
  if (parse_args(&lg.cfg, argc, argv) != 0) ex_usage_exit(&usage, 2);
  signal(SIGPIPE, SIG_IGN);
  if (lg.cfg.cpu >= 0 && bench_pin_cpu((int)lg.cfg.cpu) != 0) return 1;
  pat_init();
  if (lg.cfg.mode == M_MAXCONN) return run_maxconn(&lg);
  if (lg_init(&lg, lg.cfg.conns) != 0) return 1;
  switch (lg.cfg.mode) {
    case M_BURST:
      return run_burst(&lg);
    case M_IDLE:
      return run_idle(&lg);
    default:
      return run_timed(&lg);
  }
}
