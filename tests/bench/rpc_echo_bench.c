/* The rpc contestant of the RPC benchmarks: an //rpc server hosting gaio.bench.Echo, whose Say
 * handler replies with the request's payload (packed by the closure before the handler returns).
 *
 * rpc_echo_bench [--workers N] [--backend epoll|uring] [--stats on|off] [--host H] [--port P]
 * --stats off sets rpc_server_options.stats = -1 (no per-call counters), for bench.sh's
 * counters on/off row.
 * Prints the bound port on stdout's first line; on SIGINT or SIGTERM shuts down (no drain) and
 * exits 0. One worker by default, for a like-for-like comparison with raw_frame_echo. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "tests/bench/bench_echo.pb-c.h"
#include "tests/bench/bench_util.h"

#define ADDR_MAX 128 /* bytes of "host:port" */

static void echo_say(Gaio__Bench__Echo_Service *svc, const Gaio__Bench__EchoMsg *in,
                     Gaio__Bench__EchoMsg_Closure closure, void *data) {
  (void)svc;
  Gaio__Bench__EchoMsg out = GAIO__BENCH__ECHO_MSG__INIT;
  out.payload = in->payload; /* a view of the input: the closure packs it before returning */
  closure(&out, data);
}

static Gaio__Bench__Echo_Service echo_service = GAIO__BENCH__ECHO__INIT(echo_);

static int fail(const char *what, int rc) {
  fprintf(stderr, "rpc_echo_bench: %s: %s\n", what, strerror(-rc));
  return 1;
}

static int parse_args(int argc, char **argv, bench_addr *a, rpc_server_options *o) {
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(a, argc, argv, &i);
    if (rc < 0) return rc;
    if (rc == 1) continue;
    const char *flag = argv[i], *v = NULL;
    long n;
    if ((strcmp(flag, "--workers") == 0 || strcmp(flag, "--backend") == 0 ||
         strcmp(flag, "--stats") == 0) &&
        (v = bench_flag_value(argc, argv, &i)) == NULL)
      return -EINVAL;
    if (strcmp(flag, "--workers") == 0) {
      if (bench_parse_long(flag, v, 1, RPC_MAX_WORKERS, &n) != 0) return -EINVAL;
      o->workers = (unsigned)n;
    } else if (strcmp(flag, "--backend") == 0) {
      o->backend = v;
    } else if (strcmp(flag, "--stats") == 0 && (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)) {
      o->stats = strcmp(v, "on") == 0 ? 0 : -1;
    } else {
      fprintf(stderr, "usage: rpc_echo_bench [--workers N] [--backend epoll|uring] "
                      "[--stats on|off] [--host H] [--port P]\n");
      return -EINVAL;
    }
  }
  if (a->unix_path != NULL) {
    fprintf(stderr, "rpc_echo_bench: TCP only\n");
    return -EINVAL;
  }
  return 0;
}

int main(int argc, char **argv) {
  bench_addr a = {0};
  rpc_server_options o = {.workers = 1};
  if (parse_args(argc, argv, &a, &o) != 0) return 2;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit it; main takes the signal */
  char addr[ADDR_MAX];
  snprintf(addr, sizeof addr, "%s:%d", a.host ? a.host : "127.0.0.1", a.port);
  rpc_server *s;
  int rc = rpc_server_create(&s, &o);
  if (rc < 0) return fail("create", rc);
  if ((rc = rpc_server_add_service(s, &echo_service.base)) < 0) return fail("add service", rc);
  if ((rc = rpc_server_listen(s, addr)) < 0) return fail(addr, rc);
  if ((rc = rpc_server_start(s)) < 0) return fail("start", rc);
  printf("%d\n", rpc_server_port(s));
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  rpc_server_shutdown(s, 0);
  rpc_server_destroy(s);
  return 0;
}
