/* rpc_echo_server [-a address] [-t workers]: hosts demo.v1.Echo, demo.v1.Calculator and the
 * health service until SIGINT or SIGTERM, then shuts down gracefully (2 s drain).
 * address: "127.0.0.1:7000" (default), "127.0.0.1:0" (any free port) or "unix:/path". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/rpc_calc_service.h"
#include "rpc/rpc.h"

#define DRAIN_MS 2000

static int fail(const char *what, int rc) {
  fprintf(stderr, "rpc_echo_server: %s: %s\n", what, strerror(-rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1:7000";
  rpc_server_options o = {0};
  int opt;
  while ((opt = getopt(argc, argv, "a:t:")) != -1) {
    if (opt == 'a') addr = optarg;
    else if (opt == 't') o.workers = (unsigned)atoi(optarg);
    else {
      fprintf(stderr, "usage: rpc_echo_server [-a address] [-t workers]\n");
      return 2;
    }
  }
  /* Block the stop signals in every thread (the workers inherit the mask); main waits. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  rpc_server *s;
  int rc = rpc_server_create(&s, &o);
  if (rc < 0) return fail("create", rc);
  if ((rc = calc_services_add(s)) < 0) return fail("add services", rc);
  if ((rc = rpc_server_enable_health(s)) < 0) return fail("health", rc);
  if ((rc = rpc_server_listen(s, addr)) < 0) return fail(addr, rc);
  if ((rc = rpc_server_start(s)) < 0) return fail("start", rc);
  if (strncmp(addr, "unix:", 5) == 0) printf("rpc_echo_server: listening on %s\n", addr);
  else printf("rpc_echo_server: listening on port %d\n", rpc_server_port(s));
  fflush(stdout);

  int sig;
  sigwait(&set, &sig);
  printf("rpc_echo_server: signal %d, draining for up to %d ms\n", sig, DRAIN_MS);
  rpc_server_shutdown(s, DRAIN_MS);
  rpc_server_destroy(s);
  return 0;
}
