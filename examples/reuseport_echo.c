/* reuseport_echo: an echo server with one watcher per thread and no shared state.
 *
 *   reuseport_echo [-p port] [-a address] [-t threads] [-b backend]
 *                  (defaults: 0, 127.0.0.1, 2, gaio's choice of backend)
 *
 * Every worker thread has its own watcher, whose loop it runs, and its own listening socket on
 * the same port (SO_REUSEPORT: the kernel spreads incoming connections over them), attached to
 * that watcher and accepted on through gaio, in the worker's loop. Watchers are independent, so
 * the workers share nothing but the port. The first worker
 * binds the port asked for (0: any), the others bind the port it got. At exit it prints how many
 * connections each worker served. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "examples/echo_service.h"
#include "examples/example_util.h"

#define MAX_THREADS 64

typedef struct worker {
  echo_service echo;
  pthread_t thread;
  int rc; /* echo_service_run's */
} worker;

typedef struct pool {
  worker *workers;
  int n; /* workers started */
} pool;

static void *worker_main(void *arg) {
  worker *wk = arg;
  wk->rc = echo_service_run(&wk->echo);
  return NULL;
}

/* From the signal thread (or main, if start-up fails): close every watcher; each worker's loop
 * then drains its results (its accepts end with -ESHUTDOWN) and returns. */
static void stop(void *arg) {
  pool *p = arg;
  for (int i = 0; i < p->n; i++) gaio_watcher_close(p->workers[i].echo.w);
}

/* Bring up a worker: listener, watcher with accepts queued on the listener, loop thread. *port
 * is the port to bind, and is set to the port bound. Returns 0 or a negative errno, with
 * nothing left running. */
static int worker_start(worker *wk, const char *addr, int *port, const char *backend) {
  int lfd = ex_listen(addr, *port, EX_REUSEPORT);
  if (lfd < 0) return lfd;
  int rc = ex_local_port(lfd);
  if (rc < 0) {
    close(lfd);
    return ex_err("getsockname", rc);
  }
  *port = rc;
  if ((rc = echo_service_init(&wk->echo, backend)) != 0) {
    close(lfd);
    return rc;
  }
  /* The watcher owns lfd from here on (on error it is closed already). */
  if ((rc = echo_service_listen(&wk->echo, lfd)) != 0) {
    echo_service_destroy(&wk->echo);
    return rc;
  }
  if ((rc = pthread_create(&wk->thread, NULL, worker_main, wk)) != 0) {
    echo_service_destroy(&wk->echo); /* closes lfd; the queued accepts are dropped unrun */
    return ex_err("pthread_create(worker)", -rc);
  }
  return 0;
}

#define STR_(x) #x
#define STR(x) STR_(x)
static const char *const flags[] = {
    EX_USAGE_PORT, EX_USAGE_ADDRESS,
    "-t THREADS        threads, each with a watcher and a listener, 1.." STR(MAX_THREADS)
    " (default 2)",
    EX_USAGE_BACKEND, NULL};
static const ex_usage usage = {"[-p port] [-a address] [-t threads] [-b uring|epoll]", flags};

int main(int argc, char **argv) {
  ex_init(argv[0]);
  const char *addr = "127.0.0.1", *backend = NULL;
  long port = 0, nthreads = 2;
  int opt;
  while ((opt = getopt_long(argc, argv, "p:a:t:b:h", ex_help_option, NULL)) != -1) {
    if (opt == 'p' && ex_parse_long('p', optarg, 0, 65535, &port) == 0) continue;
    if (opt == 't' && ex_parse_long('t', optarg, 1, MAX_THREADS, &nthreads) == 0) continue;
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
  pool p = {.workers = calloc((size_t)nthreads, sizeof(worker)), .n = 0};
  if (p.workers == NULL) {
    ex_err("calloc", -ENOMEM);
    return 1;
  }

  /* If a worker fails to start, or the signal thread does, stop those already running. */
  int bound = (int)port, failed = 0;
  for (int i = 0; i < nthreads && !failed; i++) {
    failed = worker_start(&p.workers[i], addr, &bound, backend) != 0;
    if (!failed) p.n++;
  }
  if (!failed) failed = ex_signals_start(&sig, stop, &p) != 0;
  if (failed) {
    stop(&p);
  } else {
    printf("%s: %d threads listening on %s port %d, backend %s; stop with Ctrl-C\n", ex_prog(),
           p.n, addr, bound, gaio_backend_name(p.workers[0].echo.w));
    fflush(stdout);
  }

  int rc = failed;
  for (int i = 0; i < p.n; i++) pthread_join(p.workers[i].thread, NULL);
  ex_signals_join(&sig);
  for (int i = 0; i < p.n; i++) {
    worker *wk = &p.workers[i];
    printf("%s: thread %d: %llu connections, %llu errors, %llu failed accepts\n", ex_prog(), i,
           (unsigned long long)wk->echo.listener.accepted,
           (unsigned long long)atomic_load(&wk->echo.errors),
           (unsigned long long)wk->echo.listener.errors);
    char label[32];
    snprintf(label, sizeof(label), "  thread %d", i);
    ex_print_stats(label, wk->echo.w);
    echo_service_destroy(&wk->echo);
    rc |= wk->rc != 0;
  }
  free(p.workers);
  return rc;
}
