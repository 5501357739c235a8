/* rpc_echo_server [-a address] [-t workers] [--token-file PATH]: hosts demo.v1.Echo,
 * demo.v1.Calculator and the health service until SIGINT or SIGTERM, then shuts down gracefully
 * (2 s drain).
 * address: "127.0.0.1:7000" (default), "127.0.0.1:0" (any free port) or "unix:/path".
 * --token-file: calls need a bearer token, as kv_server's (examples/rpc_serve.h). */

#include "examples/rpc_calc.rpc.h" /* examples_rpc_calc__proto_file */
#include "examples/rpc_calc_service.h"
#include "examples/rpc_serve.h"

#define DRAIN_MS 2000

/* The service is created here, after ex_rpc_serve() has blocked the stop signals, so its timer
 * thread starts with them blocked too (it blocks every signal anyway). */
static int add(rpc_server *s, void *arg) {
  calc_service **cs = arg;
  int rc = calc_service_create(cs, 0);
  if (rc < 0) return rc;
  if ((rc = rpc_server_add_proto_file(s, &examples_rpc_calc__proto_file)) < 0) return rc;
  return calc_service_add(*cs, s);
}

int main(int argc, char **argv) {
  calc_service *cs = NULL;
  int rc = ex_rpc_serve("rpc_echo_server", "127.0.0.1:7000", argc, argv, add, &cs, DRAIN_MS);
  calc_service_destroy(cs); /* after the server: its shutdown waited for the pending sleeps */
  return rc;
}
