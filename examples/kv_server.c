/* kv_server [-a address] [-t workers] [--token-file PATH]: the in-memory key-value microservice
 * (kv.v1.KeyValue) plus the health service, until SIGINT or SIGTERM; then a graceful shutdown
 * (2 s drain). address: "127.0.0.1:7100" (default), "host:port" or "unix:/path". With
 * --token-file, PATH holds one token (a trailing newline is not part of it) and every call must
 * carry "authorization: Bearer <token>" (kv_client --token-file PATH sends it): without it the
 * call fails UNAUTHENTICATED, with another token PERMISSION_DENIED (rpc_serve.c). */
#include <stdio.h>

#include "examples/kv.rpc.h" /* examples_kv__proto_file */
#include "examples/kv_service.h"
#include "examples/rpc_serve.h"

#define DRAIN_MS 2000

/* The service, and kv.proto's descriptor for the reflection service (gaiorpc needs no --proto). */
static int add(rpc_server *s, void *kv) {
  int rc = rpc_server_add_proto_file(s, &examples_kv__proto_file);
  return rc < 0 ? rc : rpc_server_add_service(s, kv_service_base(kv));
}

int main(int argc, char **argv) {
  kv_service *kv = kv_service_create();
  if (kv == NULL) {
    fprintf(stderr, "kv_server: out of memory\n");
    return 1;
  }
  int rc = ex_rpc_serve("kv_server", "127.0.0.1:7100", argc, argv, add, kv, DRAIN_MS);
  if (rc == 0) printf("kv_server: stopped with %zu keys\n", kv_service_size(kv));
  kv_service_free(kv);
  return rc;
}
