/* See rpc_serve.h. */
#include "examples/rpc_serve.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/bearer_token.h"

static int fail(const char *prog, const char *what, int rc) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(-rc));
  return 1;
}

static int usage(const char *prog) {
  fprintf(stderr, "usage: %s [-a address] [-t workers 1..%u] [--token-file PATH]\n", prog,
          RPC_MAX_WORKERS);
  return 2;
}

/* --token-file PATH: every call must carry "authorization: Bearer <the token in PATH>". */
static int require_token(const char *prog, rpc_server *s, const char *path, ex_token *token,
                         rpc_bearer_auth *auth) {
  int rc = ex_token_read(token, path);
  if (rc < 0) {
    fprintf(stderr, "%s: --token-file %s: %s\n", prog, path, ex_token_strerror(rc));
    return rc;
  }
  auth->verify = ex_token_verify;
  auth->arg = token;
  rpc_server_interceptor ic;
  rpc_auth_bearer_interceptor(&ic, auth);
  if ((rc = rpc_server_add_interceptor(s, &ic)) < 0) return fail(prog, "add interceptor", rc), rc;
  printf("%s: calls need \"authorization: Bearer <token>\" (the token in %s)\n", prog, path);
  return 0;
}

int ex_rpc_serve(const char *prog, const char *default_addr, int argc, char **argv,
                 ex_rpc_add_fn add, void *arg, int drain_ms) {
  static const struct option longs[] = {{"token-file", required_argument, NULL, 'k'},
                                        {NULL, 0, NULL, 0}};
  const char *addr = default_addr, *token_file = NULL;
  rpc_server_options o = {0};
  int opt;
  while ((opt = getopt_long(argc, argv, "a:t:", longs, NULL)) != -1) {
    char *end = NULL;
    if (opt == 'a' || opt == 'k') {
      *(opt == 'a' ? &addr : &token_file) = optarg;
      continue;
    }
    long workers = opt == 't' ? strtol(optarg, &end, 10) : -1;
    if (end == NULL || *end != '\0' || workers < 1 || workers > (long)RPC_MAX_WORKERS)
      return usage(prog);
    o.workers = (unsigned)workers;
  }
  if (optind != argc) return usage(prog);
  /* Block the stop signals in every thread (the workers inherit the mask); this thread waits. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  rpc_server *s;
  int rc = rpc_server_create(&s, &o);
  if (rc < 0) return fail(prog, "create", rc);
  ex_token token;       /* with auth: both outlive the server (destroyed below) */
  rpc_bearer_auth auth;
  if (token_file != NULL && require_token(prog, s, token_file, &token, &auth) < 0) {
    rpc_server_destroy(s);
    return 1;
  }
  if ((rc = add(s, arg)) < 0 || (rc = rpc_server_enable_health(s)) < 0) {
    rpc_server_destroy(s);
    return fail(prog, "add services", rc);
  }
  if ((rc = rpc_server_listen(s, addr)) < 0 || (rc = rpc_server_start(s)) < 0) {
    rpc_server_destroy(s);
    return fail(prog, addr, rc);
  }
  if (strncmp(addr, "unix:", 5) == 0)
    printf("%s: listening on %s\n", prog, addr);
  else
    printf("%s: listening on port %d\n", prog, rpc_server_port(s));
  fflush(stdout);

  int sig;
  sigwait(&set, &sig);
  printf("%s: signal %d, draining for up to %d ms\n", prog, sig, drain_ms);
  rpc_server_shutdown(s, drain_ms);
  rpc_server_destroy(s);
  return 0;
}
