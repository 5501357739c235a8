/* The rpc contestant of the RPC benchmarks: an //rpc server hosting gaio.bench.Echo, whose Say
 * handler replies with the request's payload (packed by the closure before the handler returns).
 *
 * rpc_echo_bench [--workers N] [--backend epoll|uring] [--host H] [--port P] [--tls DIR]
 * --tls DIR listens on "tls:" (TLS 1.3, no client certificate) with DIR/server.pem and
 * DIR/server.key. Prints the bound port on stdout's first line; on SIGINT or SIGTERM shuts down (no drain) and
 * exits 0. One worker by default, for a like-for-like comparison with raw_frame_echo. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "tests/bench/bench_echo.pb-c.h"
#include "tests/bench/bench_util.h"

#define ADDR_MAX 128 /* bytes of "tls:host:port" */
#define PATH_MAX_LEN 512 /* bytes of DIR/server.pem */

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

static char cert_path[PATH_MAX_LEN], key_path[PATH_MAX_LEN];
static rpc_tls_server_options tls_opts;

static void use_tls(rpc_server_options *o, const char *dir) {
  snprintf(cert_path, sizeof cert_path, "%s/server.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/server.key", dir);
  tls_opts.cert_file = cert_path;
  tls_opts.key_file = key_path;
  o->tls = &tls_opts;
}

static int parse_args(int argc, char **argv, bench_addr *a, rpc_server_options *o) {
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(a, argc, argv, &i);
    if (rc < 0) return rc;
    if (rc == 1) continue;
    const char *flag = argv[i], *v = NULL;
    long n;
    if ((strcmp(flag, "--workers") == 0 || strcmp(flag, "--backend") == 0 ||
         strcmp(flag, "--tls") == 0) &&
        (v = bench_flag_value(argc, argv, &i)) == NULL)
      return -EINVAL;
    if (strcmp(flag, "--workers") == 0) {
      if (bench_parse_long(flag, v, 1, RPC_MAX_WORKERS, &n) != 0) return -EINVAL;
      o->workers = (unsigned)n;
    } else if (strcmp(flag, "--backend") == 0) {
      o->backend = v;
    } else if (strcmp(flag, "--tls") == 0) {
      use_tls(o, v);
    } else {
      fprintf(stderr, "rpc_echo_bench: unknown flag %s\n", flag);
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
    "--tls DIR         listen on tls: with DIR/server.pem and DIR/server.key (default: plaintext)",
    NULL};
static const ex_usage usage = {"[--workers N] [--backend epoll|uring] [--host H] [--port P] [--tls DIR]",
                               flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  bench_addr a = {0};
  rpc_server_options o = {.workers = 1};
  if (parse_args(argc, argv, &a, &o) != 0) ex_usage_exit(&usage, 2);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* the workers inherit it; main takes the signal */
  char addr[ADDR_MAX];
  snprintf(addr, sizeof addr, "%s%s:%d", o.tls ? "tls:" : "", a.host ? a.host : "127.0.0.1",
           a.port);
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
