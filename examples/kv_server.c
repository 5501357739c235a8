/* kv_server [-a address] [-t workers]: the in-memory key-value microservice (kv.v1.KeyValue)
 * plus the health service, until SIGINT or SIGTERM; then a graceful shutdown (2 s drain).
 * address: "127.0.0.1:7100" (default), "host:port" or "unix:/path". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples/kv_service.h"
#include "rpc/rpc.h"

#define DRAIN_MS 2000

static int fail(const char *what, int rc) {
  fprintf(stderr, "kv_server: %s: %s\n", what, strerror(-rc));
  return 1;
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1:7100";
  rpc_server_options o = {0};
  int opt;
  while ((opt = getopt(argc, argv, "a:t:")) != -1) {
    if (opt == 'a') addr = optarg;
    else if (opt == 't') o.workers = (unsigned)atoi(optarg);
    else {
      fprintf(stderr, "usage: kv_server [-a address] [-t workers]\n");
      return 2;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  kv_service *kv = kv_service_create();
  rpc_server *s;
  int rc = kv ? rpc_server_create(&s, &o) : -ENOMEM;
  if (rc < 0) return fail("create", rc);
  if ((rc = rpc_server_add_service(s, kv_service_base(kv))) < 0) return fail("add service", rc);
  if ((rc = rpc_server_enable_health(s)) < 0) return fail("health", rc);
  if ((rc = rpc_server_listen(s, addr)) < 0) return fail(addr, rc);
  if ((rc = rpc_server_start(s)) < 0) return fail("start", rc);
  if (strncmp(addr, "unix:", 5) == 0) printf("kv_server: listening on %s\n", addr);
  else printf("kv_server: listening on port %d\n", rpc_server_port(s));
  fflush(stdout);

  int sig;
  sigwait(&set, &sig);
  rpc_server_shutdown(s, DRAIN_MS);
  printf("kv_server: stopped with %zu keys\n", kv_service_size(kv));
  rpc_server_destroy(s);
  kv_service_free(kv);
  return 0;
}
