/* See rpc_serve.h. */
#include "examples/rpc_serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/bearer_token.h"
#include "examples/example_util.h"

static int fail(const char *what, int rc) {
  fprintf(stderr, "%s: %s: %s\n", ex_prog(), what, strerror(-rc));
  return 1;
}

/* --token-file PATH: every call must carry "authorization: Bearer <the token in PATH>". */
static int require_token(rpc_server *s, const char *path, ex_token *token,
                         rpc_bearer_auth *auth) {
  int rc = ex_token_read(token, path);
  if (rc < 0) {
    fprintf(stderr, "%s: --token-file %s: %s\n", ex_prog(), path, ex_token_strerror(rc));
    return rc;
  }
  auth->verify = ex_token_verify;
  auth->arg = token;
  rpc_server_interceptor ic;
  rpc_auth_bearer_interceptor(&ic, auth);
  if ((rc = rpc_server_add_interceptor(s, &ic)) < 0) return fail("add interceptor", rc), rc;
  printf("%s: calls need \"authorization: Bearer <token>\" (the token in %s)\n", ex_prog(), path);
  return 0;
}

int ex_rpc_serve(const char *prog, const char *default_addr, int argc, char **argv,
                 ex_rpc_add_fn add, void *arg, int drain_ms) {
  static const struct option longs[] = {{"token-file", required_argument, NULL, 'k'},
                                        {"help", no_argument, NULL, 'h'},
                                        {NULL, 0, NULL, 0}};
  char addr_line[128], workers_line[96];
  snprintf(addr_line, sizeof addr_line,
           "-a ADDRESS        listen on host:port or unix:/path (default %s)", default_addr);
  snprintf(workers_line, sizeof workers_line,
           "-t WORKERS        worker threads, 1..%u (default %u)", RPC_MAX_WORKERS,
           RPC_DEFAULT_WORKERS);
  const char *const lines[] = {addr_line, workers_line,
                               "--token-file PATH calls need \"authorization: Bearer <token>\", "
                               "the token in PATH (default: no auth)",
                               NULL};
  const ex_usage usage = {"[-a address] [-t workers] [--token-file PATH]", lines};
  ex_init(prog);
  const char *addr = default_addr, *token_file = NULL;
  rpc_server_options o = {0};
  long workers;
  int opt;
  while ((opt = getopt_long(argc, argv, "a:t:h", longs, NULL)) != -1) {
    if (opt == 'a' || opt == 'k')
      *(opt == 'a' ? &addr : &token_file) = optarg;
    else if (opt == 't' && ex_parse_long('t', optarg, 1, RPC_MAX_WORKERS, &workers) == 0)
      o.workers = (unsigned)workers;
    else
      ex_usage_exit(&usage, opt == 'h' ? 0 : 2);
  }
  if (optind != argc) ex_usage_exit(&usage, 2);
  /* Block the stop signals before any thread exists (a service may start one in add()), as
   * rpc_server_run() asks: every thread inherits the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  rpc_server *s;
  int rc = rpc_server_create(&s, &o);
  if (rc < 0) return fail("create", rc);
  ex_token token; /* with auth: both outlive the server (destroyed below) */
  rpc_bearer_auth auth;
  if (token_file != NULL && require_token(s, token_file, &token, &auth) < 0) {
    rpc_server_destroy(s);
    return 1;
  }
  if ((rc = add(s, arg)) < 0 || (rc = rpc_server_enable_health(s)) < 0) {
    rpc_server_destroy(s);
    return fail("add services", rc);
  }
  rpc_server_run_options ro = {.address = addr, .drain_ms = drain_ms, .print = 1, .name = prog};
  rc = rpc_server_run(s, &ro);
  rpc_server_destroy(s);
  return rc < 0 ? fail(addr, rc) : 0;
}
