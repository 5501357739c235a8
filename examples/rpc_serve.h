/* The skeleton shared by the example RPC server programs (rpc_echo_server, kv_server): flags
 * -a address, -t workers, --token-file PATH and --help, an rpc_server with the health service,
 * run by rpc_server_run() until the first SIGINT or SIGTERM. Not part of the library. */
#ifndef GAIO_EXAMPLES_RPC_SERVE_H
#define GAIO_EXAMPLES_RPC_SERVE_H

#include "rpc/rpc.h"

/* Hosts the program's services on s (before start). Returns 0 or a negative errno. */
typedef int (*ex_rpc_add_fn)(rpc_server *s, void *arg);

/* Run the server program prog until SIGINT or SIGTERM: parse argv (-a address, default
 * default_addr; -t workers; --token-file PATH: a file holding one bearer token, which every call
 * must then present as "authorization: Bearer <token>", checked by rpc_auth_bearer_interceptor()
 * in constant time, the health checks included; -h, --help: the usage on stdout, exit 0), block
 * SIGINT and SIGTERM, create the server, add(s, arg), enable health, then rpc_server_run() it
 * (listen, print "<prog>: listening on HOST:PORT", wait for a signal, drain for up to drain_ms)
 * and destroy it. Errors are printed with what failed. Returns the process exit code (0, 1 on a
 * failure); a bad flag exits 2 with the usage on stderr. Call from main(), before any other
 * thread exists. */
int ex_rpc_serve(const char *prog, const char *default_addr, int argc, char **argv,
                 ex_rpc_add_fn add, void *arg, int drain_ms);

#endif /* GAIO_EXAMPLES_RPC_SERVE_H */
