/* The server object, shared by server.c (the workers) and server_setup.c (configuration,
 * health). Private to //rpc. */
#ifndef GAIO_RPC_SERVER_INTERNAL_H
#define GAIO_RPC_SERVER_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/un.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"

typedef struct rpc__srv_method {
  uint32_t id;
  ProtobufCService *svc;
  unsigned index;
  const ProtobufCMethodDescriptor *md;
  char *full_name; /* "package.Service/Method" (malloc) */
} rpc__srv_method;

typedef struct rpc__srv_listener {
  int kind; /* RPC__CTX_LISTEN */
  int fd;
  int is_unix;
  int tls;      /* "tls:" address: its connections are TLS */
  int attached; /* owned by worker 0's watcher */
  int closed;
  unsigned queued; /* accepts pending */
  uint64_t paused_until; /* gaio_now() time to accept again after a shortage; 0: not paused */
  int port;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} rpc__srv_listener;

struct worker;
struct health_service;

struct rpc_server {
  rpc_server_options opts;
  rpc__srv_method *methods; /* sorted by id */
  size_t nmethods;
  ProtobufCService **services;
  size_t nservices;
  rpc__srv_listener listeners[RPC_MAX_LISTENERS];
  unsigned nlisteners;
  struct worker *workers;
  unsigned nworkers;
  unsigned next_worker; /* worker 0 only */
  atomic_uint calls;    /* calls in flight, all connections */
  atomic_int serving;
  atomic_int stopping;
  atomic_int listen_error; /* the error that broke a listener first, 0 if none */
  atomic_int run_stop;  /* rpc_server_stop() was called (run.c) */
  atomic_int run_fd;    /* rpc_server_run()'s stop eventfd + 1; 0: none yet (run.c) */
  int started;
  int stopped;
  struct health_service *health;
  rpc_server_interceptor interceptors[RPC_MAX_INTERCEPTORS];
  unsigned ninterceptors;
  struct rpc__tls_ctx *tls; /* from opts.tls (NULL: none); opts.tls is not kept */
};

const rpc__srv_method *rpc__srv_find_method(const rpc_server *s, uint32_t id);
void rpc__srv_closure(const ProtobufCMessage *reply, void *closure_data);
int rpc__srv_start_workers(rpc_server *s);
void rpc__srv_stop_workers(rpc_server *s, int drain_ms);
size_t rpc__srv_worker_size(void);

/* The server call being handled on this thread (inside an interceptor or the handler's
 * invoke), or NULL: how a client call made from a handler continues its trace. */
const rpc_call *rpc__srv_current_call(void);

/* Test hook: the server's TLS refusals so far and the last reason (server_setup.c). */
unsigned long rpc__srv_tls_refusals(rpc_server *s, char *why, size_t why_len);

#endif /* GAIO_RPC_SERVER_INTERNAL_H */
