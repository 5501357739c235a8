/* server [address]: hosts first.v1.Greeter (default 127.0.0.1:7300) until SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "examples/first/greeter.h"

int main(int argc, char **argv) {
  const char *address = argc > 1 ? argv[1] : "127.0.0.1:7300";
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread starts: they all inherit it */
  rpc_server *s = NULL;
  int rc = rpc_server_create(&s, NULL);
  if (rc == 0) rc = first__v1__greeter__serve(s, &greeter);
  if (rc == 0) rc = rpc_server_listen(s, address);
  if (rc == 0) rc = rpc_server_start(s);
  if (rc < 0) {
    fprintf(stderr, "server: %s: %s\n", address, strerror(-rc));
    rpc_server_destroy(s);
    return 1;
  }
  printf("server: listening on port %d\n", rpc_server_port(s));
  fflush(stdout);
  int sig;
  sigwait(&stop, &sig);
  rpc_server_shutdown(s, 1000); /* the calls in flight get up to 1 s to finish */
  rpc_server_destroy(s);
  return 0;
}
