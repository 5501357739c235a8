/* See rpc_serve.h. */
#include "examples/rpc_serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *prog, const char *what, int rc) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(-rc));
  return 1;
}

int ex_rpc_serve(const char *prog, const char *default_addr, int argc, char **argv,
                 ex_rpc_add_fn add, void *arg, int drain_ms) {
  const char *addr = default_addr;
  rpc_server_options o = {0};
  int opt;
  while ((opt = getopt(argc, argv, "a:t:")) != -1) {
    char *end = NULL;
    if (opt == 'a') {
      addr = optarg;
      continue;
    }
    long workers = opt == 't' ? strtol(optarg, &end, 10) : -1;
    if (end == NULL || *end != '\0' || workers < 1 || workers > (long)RPC_MAX_WORKERS) {
      fprintf(stderr, "usage: %s [-a address] [-t workers 1..%u]\n", prog, RPC_MAX_WORKERS);
      return 2;
    }
    o.workers = (unsigned)workers;
  }
  /* Block the stop signals in every thread (the workers inherit the mask); this thread waits. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  rpc_server *s;
  int rc = rpc_server_create(&s, &o);
  if (rc < 0) return fail(prog, "create", rc);
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
