/* rpc_echo_server [-a address] [-t workers]: hosts demo.v1.Echo, demo.v1.Calculator and the
 * health service until SIGINT or SIGTERM, then shuts down gracefully (2 s drain).
 * address: "127.0.0.1:7000" (default), "127.0.0.1:0" (any free port) or "unix:/path". */
#include "examples/rpc_calc_service.h"
#include "examples/rpc_serve.h"

#define DRAIN_MS 2000

static int add(rpc_server *s, void *arg) {
  (void)arg;
  return calc_services_add(s);
}

int main(int argc, char **argv) {
  return ex_rpc_serve("rpc_echo_server", "127.0.0.1:7000", argc, argv, add, NULL, DRAIN_MS);
}
