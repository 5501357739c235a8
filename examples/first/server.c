/* server [address]: hosts first.v1.Greeter (default 127.0.0.1:7300) until SIGINT or SIGTERM. */
#include <stdio.h>
#include <string.h>

#include "examples/first/greeter.h"

int main(int argc, char **argv) {
  rpc_server_run_options ro = {.address = argc > 1 ? argv[1] : "127.0.0.1:7300",
                               .drain_ms = 1000, .print = 1, .name = "server"};
  rpc_server *s = NULL;
  int rc = rpc_server_create(&s, NULL);
  if (rc == 0) rc = first__v1__greeter__serve(s, &greeter);
  if (rc == 0) rc = rpc_server_run(s, &ro); /* listen, start, wait for a signal, drain 1 s */
  if (rc < 0) fprintf(stderr, "server: %s: %s\n", ro.address, strerror(-rc));
  rpc_server_destroy(s);
  return rc < 0;
}
