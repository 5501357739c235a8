/* The rpc contestant of the RPC benchmarks: an //rpc server hosting gaio.bench.Echo, whose Say
 * handler replies with the request's payload (packed by the closure before the handler returns).
 *
 * rpc_echo_bench [--workers N] [--backend epoll|uring] [--stats on|off] [--host H] [--port P]
 *                [--tls DIR] [--delay-us N]
 * --stats off sets rpc_server_options.stats = -1 (no per-call counters), for bench.sh's
 * counters on/off row. --tls DIR listens on "tls:" (TLS 1.3, no client certificate) with
 * DIR/server.pem and DIR/server.key. --delay-us N makes the server a slow replica for the
 * balancing rows (issue 15): each call takes N microseconds of service, one call at a time in
 * arrival order, like a single-threaded server doing N us of work per call, but waited for on
 * a timer thread instead of burning a CPU (the machine has 2): a call arriving at t is answered
 * at max(t, the previous answer's due time) + N.
 * Prints the bound port on stdout's first line; on SIGINT or SIGTERM shuts down (no drain) and
 * exits 0. One worker by default, for a like-for-like comparison with raw_frame_echo. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/rpc.h"
#include "tests/bench/bench_echo.pb-c.h"
#include "tests/bench/bench_util.h"

#define ADDR_MAX 128 /* bytes of "tls:host:port" */
#define PATH_MAX_LEN 512 /* bytes of DIR/server.pem */
#define DELAY_US_MAX 1000000L  /* --delay-us: at most 1 s of service per call */
#define DELAY_QUEUE_MAX 65536u /* calls waiting for their turn; more: RESOURCE_EXHAUSTED */
#define DELAY_BATCH 64u        /* calls answered per lock hold of the timer thread */
#define NS_PER_US 1000u
#define NS_PER_S 1000000000u

/* A call waiting for its turn on a --delay-us server: its payload is copied (the request is
 * freed when the handler returns). */
typedef struct delayed {
  rpc_call *call;
  ProtobufCBinaryData payload; /* malloc'ed (NULL when empty) */
  uint64_t due;                /* CLOCK_MONOTONIC ns */
} delayed;

/* The --delay-us service line: a FIFO ring answered by one thread at the due times. */
typedef struct delay_line {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC; signalled for a first entry, hurry or stop */
  pthread_t thread;
  uint64_t delay_ns;
  uint64_t last_due; /* the due time of the last call queued */
  int hurry;         /* shutting down: answer every queued call now */
  int stop;
  size_t head, n;
  delayed ring[DELAY_QUEUE_MAX];
} delay_line;

typedef struct bench_service {
  Gaio__Bench__Echo_Service base; /* first: the handler's svc points here */
  delay_line *delay;              /* NULL: answer at once */
} bench_service;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void reply_delayed(delayed *d) {
  Gaio__Bench__EchoMsg out = GAIO__BENCH__ECHO_MSG__INIT;
  out.payload = d->payload;
  rpc_call_reply(d->call, &out.base); /* also for a cancelled call: every call is completed */
  free(d->payload.data);
}

/* Under mu: wait for the head's due time (or a first entry, hurry, stop). */
static void delay_wait(delay_line *dl) {
  if (dl->n == 0) {
    pthread_cond_wait(&dl->cv, &dl->mu);
    return;
  }
  uint64_t at = dl->ring[dl->head].due;
  struct timespec ts = {(time_t)(at / NS_PER_S), (long)(at % NS_PER_S)};
  pthread_cond_timedwait(&dl->cv, &dl->mu, &ts);
}

static void *delay_main(void *arg) {
  delay_line *dl = arg;
  delayed batch[DELAY_BATCH];
  pthread_mutex_lock(&dl->mu);
  while (!dl->stop || dl->n > 0) {
    uint64_t now = mono_ns();
    size_t k = 0;
    while (k < DELAY_BATCH && dl->n > 0 && (dl->hurry || dl->ring[dl->head].due <= now)) {
      batch[k++] = dl->ring[dl->head];
      dl->head = (dl->head + 1) % DELAY_QUEUE_MAX;
      dl->n--;
    }
    if (k == 0) {
      delay_wait(dl);
      continue;
    }
    pthread_mutex_unlock(&dl->mu);
    for (size_t i = 0; i < k; i++) reply_delayed(&batch[i]);
    pthread_mutex_lock(&dl->mu);
  }
  pthread_mutex_unlock(&dl->mu);
  return NULL;
}

/* Queue the call for its turn. Returns 0, -ENOMEM or -EAGAIN (DELAY_QUEUE_MAX waiting). */
static int delay_push(delay_line *dl, rpc_call *call, const ProtobufCBinaryData *payload) {
  delayed d = {call, {payload->len, NULL}, 0};
  if (payload->len > 0 && (d.payload.data = malloc(payload->len)) == NULL) return -ENOMEM;
  if (payload->len > 0) memcpy(d.payload.data, payload->data, payload->len);
  pthread_mutex_lock(&dl->mu);
  if (dl->n == DELAY_QUEUE_MAX) {
    pthread_mutex_unlock(&dl->mu);
    free(d.payload.data);
    return -EAGAIN;
  }
  uint64_t now = mono_ns();
  d.due = (dl->last_due > now ? dl->last_due : now) + dl->delay_ns;
  dl->last_due = d.due;
  dl->ring[(dl->head + dl->n) % DELAY_QUEUE_MAX] = d;
  if (dl->n++ == 0) pthread_cond_signal(&dl->cv);
  pthread_mutex_unlock(&dl->mu);
  return 0;
}

static void echo_say(Gaio__Bench__Echo_Service *svc, const Gaio__Bench__EchoMsg *in,
                     Gaio__Bench__EchoMsg_Closure closure, void *data) {
  delay_line *dl = ((bench_service *)svc)->delay;
  if (dl != NULL) {
    rpc_call *call = rpc_server_call(data);
    int rc = delay_push(dl, call, &in->payload);
    if (rc < 0)
      rpc_call_fail(call, RPC_STATUS_RESOURCE_EXHAUSTED,
                    rc == -EAGAIN ? "too many calls waiting for the delay" : "out of memory");
    return;
  }
  Gaio__Bench__EchoMsg out = GAIO__BENCH__ECHO_MSG__INIT;
  out.payload = in->payload; /* a view of the input: the closure packs it before returning */
  closure(&out, data);
}

static bench_service echo_service = {GAIO__BENCH__ECHO__INIT(echo_), NULL};

/* Start the --delay-us thread. Returns 0 or a negative errno. */
static int delay_start(delay_line *dl, long us) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc == 0) rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0) rc = pthread_cond_init(&dl->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) return -rc;
  pthread_mutex_init(&dl->mu, NULL);
  dl->delay_ns = (uint64_t)us * NS_PER_US;
  if ((rc = pthread_create(&dl->thread, NULL, delay_main, dl)) != 0) return -rc;
  return 0;
}

/* hurry: answer the queued calls now (before a shutdown, which waits for them); stop: end the
 * thread once the queue is empty, and join it. */
static void delay_set(delay_line *dl, int hurry, int stop) {
  pthread_mutex_lock(&dl->mu);
  dl->hurry |= hurry;
  dl->stop |= stop;
  pthread_cond_signal(&dl->cv);
  pthread_mutex_unlock(&dl->mu);
  if (stop) pthread_join(dl->thread, NULL);
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "rpc_echo_bench: %s: %s\n", what, strerror(-rc));
  return 1;
}

static char cert_path[PATH_MAX_LEN], key_path[PATH_MAX_LEN];
static rpc_tls_server_options tls_opts;

static void use_tls(rpc_server_options *o, const char *dir) {
  snprintf(cert_path, sizeof cert_path, "%s/server.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/server.key", dir);
  tls_opts.cert_file = cert_path;
  tls_opts.key_file = key_path;
  o->tls = &tls_opts;
}

static int parse_args(int argc, char **argv, bench_addr *a, rpc_server_options *o,
                      long *delay_us) {
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(a, argc, argv, &i);
    if (rc < 0) return rc;
    if (rc == 1) continue;
    const char *flag = argv[i], *v = NULL;
    long n;
    if ((strcmp(flag, "--workers") == 0 || strcmp(flag, "--backend") == 0 ||
         strcmp(flag, "--tls") == 0 || strcmp(flag, "--stats") == 0 ||
         strcmp(flag, "--delay-us") == 0) &&
        (v = bench_flag_value(argc, argv, &i)) == NULL)
      return -EINVAL;
    if (strcmp(flag, "--workers") == 0) {
      if (bench_parse_long(flag, v, 1, RPC_MAX_WORKERS, &n) != 0) return -EINVAL;
      o->workers = (unsigned)n;
    } else if (strcmp(flag, "--backend") == 0) {
      o->backend = v;
    } else if (strcmp(flag, "--tls") == 0) {
      use_tls(o, v);
    } else if (strcmp(flag, "--delay-us") == 0) {
      if (bench_parse_long(flag, v, 0, DELAY_US_MAX, delay_us) != 0) return -EINVAL;
    } else if (strcmp(flag, "--stats") == 0 && (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
      o->stats = strcmp(v, "on") == 0 ? 0 : -1;
    } else {
      fprintf(stderr, "rpc_echo_bench: unknown flag or value %s\n", flag);
      return -EINVAL;
    }
  }
  if (a->unix_path != NULL) {
    fprintf(stderr, "rpc_echo_bench: TCP only\n");
    return -EINVAL;
  }
  return 0;
}

static const char *const flags[] = {
    "--workers N       server worker threads (default 1)",
    "--backend NAME    epoll or uring (default: gaio's choice; GAIO_BACKEND overrides it)",
    BENCH_USAGE_HOST, BENCH_USAGE_PORT,
    "--stats on|off    per-call counters (default on)",
    "--tls DIR         listen on tls: with DIR/server.pem and DIR/server.key (default: plaintext)",
    "--delay-us N      serve calls one at a time, N us each, on a timer (default 0: at once)",
    NULL};
static const ex_usage usage = {"[--workers N] [--backend epoll|uring] [--stats on|off] [--host H] "
                               "[--port P] [--tls DIR] [--delay-us N]",
                               flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  rpc_server_options o = {.workers = 1};
  long delay_us = 0;
  if (parse_args(argc, argv, &a, &o, &delay_us) != 0) ex_usage_exit(&usage, 2);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit it; main takes the signal */
  char addr[ADDR_MAX];
  snprintf(addr, sizeof addr, "%s%s:%d", o.tls ? "tls:" : "", a.host ? a.host : "127.0.0.1",
           a.port);
  static delay_line dl; /* 2 MiB of ring: not on the stack */
  int rc;
  if (delay_us > 0) {
    if ((rc = delay_start(&dl, delay_us)) < 0) return fail("delay thread", rc);
    echo_service.delay = &dl;
  }
  rpc_server *s;
  if ((rc = rpc_server_create(&s, &o)) < 0) return fail("create", rc);
  if ((rc = rpc_server_add_service(s, &echo_service.base.base)) < 0)
    return fail("add service", rc);
  if ((rc = rpc_server_listen(s, addr)) < 0) return fail(addr, rc);
  if ((rc = rpc_server_start(s)) < 0) return fail("start", rc);
  printf("%d\n", rpc_server_port(s));
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  if (echo_service.delay) delay_set(&dl, 1, 0); /* the shutdown waits for the queued calls */
  rpc_server_shutdown(s, 0);
  if (echo_service.delay) delay_set(&dl, 1, 1);
  rpc_server_destroy(s);
  return 0;
}
