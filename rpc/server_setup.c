/* Server configuration and lifecycle: services, the method table, listeners, the health
 * service, start and shutdown. The workers are in server.c. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/health.pb-c.h"
#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "rpc/server_internal.h"
#include "rpc/transport.h"

#define LISTEN_BACKLOG 1024 /* listen(2) backlog of every listener */

int rpc_server_create(rpc_server **out, const rpc_server_options *opts) {
  *out = NULL;
  rpc_server_options o = {0};
  if (opts) o = *opts;
  if (o.workers == 0) o.workers = RPC_DEFAULT_WORKERS;
  if (o.max_body == 0) o.max_body = RPC_DEFAULT_MAX_BODY;
  if (o.max_calls_per_conn == 0) o.max_calls_per_conn = RPC_DEFAULT_MAX_CALLS_PER_CONN;
  if (o.max_calls == 0) o.max_calls = RPC_DEFAULT_MAX_CALLS;
  if (o.idle_timeout_ms == 0) o.idle_timeout_ms = RPC_DEFAULT_IDLE_TIMEOUT_MS;
  if (o.max_write_bytes_per_conn == 0) o.max_write_bytes_per_conn = RPC_DEFAULT_MAX_WRITE_BYTES_PER_CONN;
  if (o.close_linger_ms == 0) o.close_linger_ms = RPC_DEFAULT_CLOSE_LINGER_MS;
  if (o.workers > RPC_MAX_WORKERS || o.max_body > RPC_MAX_BODY_HARD || o.close_linger_ms < 0)
    return -EINVAL;
  if (o.allocator && (!o.allocator->alloc || !o.allocator->free)) return -EINVAL;
  if (o.max_metadata_bytes == 0) o.max_metadata_bytes = RPC_DEFAULT_MAX_METADATA_BYTES;
  if (o.max_metadata_entries == 0) o.max_metadata_entries = RPC_DEFAULT_MAX_METADATA_ENTRIES;
  rpc__tls_ctx *tls = NULL;
  if (o.tls) {
    int rc = rpc__tls_server_ctx(&tls, o.tls);
    if (rc < 0) return rc;
    o.tls = NULL;
  }
  rpc_server *s = gaio__calloc(1, sizeof *s);
  if (s) s->workers = gaio__calloc(o.workers, rpc__srv_worker_size());
  if (!s || !s->workers) {
    free(s);
    rpc__tls_ctx_free(tls);
    return -ENOMEM;
  }
  s->opts = o;
  s->tls = tls;
  atomic_init(&s->calls, 0);
  atomic_init(&s->serving, 1);
  atomic_init(&s->stopping, 0);
  atomic_init(&s->listen_error, 0);
  *out = s;
  return 0;
}

const rpc__srv_method *rpc__srv_find_method(const rpc_server *s, uint32_t id) {
  size_t lo = 0, hi = s->nmethods;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->methods[mid].id == id) return &s->methods[mid];
    if (s->methods[mid].id < id) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

/* A generated service dispatches through protobuf_c_service_invoke_internal, which calls the
 * handler table right after the base struct without checking for NULL (protobuf-c.c, "handler
 * == NULL is a situation that needs handling"): refuse such a service up front. */
static int check_handlers(const ProtobufCService *svc) {
  if (svc->invoke != protobuf_c_service_invoke_internal) return 0;
  typedef void (*generic_fn)(void);
  const generic_fn *h = (const generic_fn *)(const void *)(svc + 1);
  for (unsigned i = 0; i < svc->descriptor->n_methods; i++)
    if (!h[i]) return -EINVAL;
  return 0;
}

static int cmp_method(const void *a, const void *b) {
  uint32_t x = ((const rpc__srv_method *)a)->id, y = ((const rpc__srv_method *)b)->id;
  return x < y ? -1 : x > y;
}

/* The full names of svc's methods in m (those not named yet). Returns 0, or -ENOMEM with every
 * name made here freed again. */
static int name_methods(rpc__srv_method *m, size_t n, ProtobufCService *svc) {
  const char *sname = svc->descriptor->name;
  for (size_t i = 0; i < n; i++) {
    if (m[i].svc != svc) continue;
    size_t len = strlen(sname) + 1 + strlen(m[i].md->name) + 1;
    if ((m[i].full_name = gaio__malloc(len)) == NULL) {
      for (size_t j = 0; j < i; j++)
        if (m[j].svc == svc) free(m[j].full_name);
      return -ENOMEM;
    }
    snprintf(m[i].full_name, len, "%s/%s", sname, m[i].md->name);
  }
  return 0;
}

int rpc_server_add_service(rpc_server *s, ProtobufCService *svc) {
  if (!s || !svc || !svc->descriptor || !svc->invoke) return -EINVAL;
  const ProtobufCServiceDescriptor *d = svc->descriptor;
  if (d->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC || !d->name) return -EINVAL;
  if (s->started) return -EBUSY;
  int rc = check_handlers(svc);
  if (rc < 0) return rc;
  size_t n = s->nmethods + d->n_methods;
  rpc__srv_method *m = gaio__malloc((n ? n : 1) * sizeof *m);
  ProtobufCService **sv = gaio__realloc(s->services, (s->nservices + 1) * sizeof *sv);
  if (!m || !sv) {
    free(m);
    if (sv) s->services = sv;
    return -ENOMEM;
  }
  s->services = sv;
  if (s->nmethods) memcpy(m, s->methods, s->nmethods * sizeof *m);
  for (unsigned i = 0; i < d->n_methods; i++) {
    if (!d->methods[i].name) {
      free(m);
      return -EINVAL; /* optimize_for = CODE_SIZE: no names, so no method ids */
    }
    rpc__srv_method *e = &m[s->nmethods + i];
    e->id = rpc__method_id_of(d, i);
    e->svc = svc;
    e->index = i;
    e->md = &d->methods[i];
    e->full_name = NULL;
  }
  qsort(m, n, sizeof *m, cmp_method);
  for (size_t i = 1; i < n; i++) {
    if (m[i].id == m[i - 1].id) {
      free(m);
      return -EEXIST;
    }
  }
  if (name_methods(m, n, svc) < 0) {
    free(m);
    return -ENOMEM;
  }
  free(s->methods);
  s->methods = m;
  s->nmethods = n;
  s->services[s->nservices++] = svc;
  return 0;
}

/* ---- Health ------------------------------------------------------------------------------ */

struct health_service {
  Gaio__Health__V1__Health_Service base; /* first: the handler gets a pointer to it */
  rpc_server *srv;
};

static int hosts(const rpc_server *s, const char *name) {
  for (size_t i = 0; i < s->nservices; i++)
    if (strcmp(s->services[i]->descriptor->name, name) == 0) return 1;
  return 0;
}

static void health_check(Gaio__Health__V1__Health_Service *svc,
                         const Gaio__Health__V1__HealthCheckRequest *in,
                         Gaio__Health__V1__HealthCheckResponse_Closure closure, void *data) {
  rpc_server *s = ((struct health_service *)svc)->srv;
  if (in->service && in->service[0] && !hosts(s, in->service)) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_NOT_FOUND, "unknown service");
    return;
  }
  Gaio__Health__V1__HealthCheckResponse out = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  int up = atomic_load(&s->serving) && !atomic_load(&s->stopping);
  out.status = up ? GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                  : GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
  closure(&out, data);
}

int rpc_server_enable_health(rpc_server *s) {
  if (!s) return -EINVAL;
  if (s->health) return -EEXIST;
  struct health_service *h = gaio__calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  gaio__health__v1__health__init(&h->base, NULL);
  h->base.check = health_check;
  h->srv = s;
  int rc = rpc_server_add_service(s, &h->base.base);
  if (rc < 0) {
    free(h);
    return rc;
  }
  s->health = h;
  return 0;
}

void rpc_server_set_serving(rpc_server *s, int serving) { atomic_store(&s->serving, !!serving); }

/* ---- Listeners --------------------------------------------------------------------------- */

static int open_listener(rpc__srv_listener *l, const struct sockaddr_storage *ss, socklen_t sl) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    unlink(un->sun_path); /* a stale socket file from an earlier run */
    memcpy(l->path, un->sun_path, sizeof l->path);
    l->is_unix = 1;
  } else {
    /* SO_REUSEADDR: a restarted server binds its port again at once (TIME_WAIT). */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (bind(fd, (const struct sockaddr *)ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
    int e = -errno;
    close(fd);
    if (l->is_unix) l->path[0] = 0;
    return e;
  }
  l->fd = fd;
  if (!l->is_unix) {
    struct sockaddr_storage b;
    socklen_t bl = sizeof b;
    getsockname(fd, (struct sockaddr *)&b, &bl);
    l->port = ntohs(b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port
                                            : ((struct sockaddr_in *)&b)->sin_port);
  }
  return 0;
}

int rpc_server_listen(rpc_server *s, const char *address) {
  if (!s || !address) return -EINVAL;
  if (s->started) return -EBUSY;
  if (s->nlisteners >= RPC_MAX_LISTENERS) return -ENOSPC;
  struct sockaddr_storage ss;
  socklen_t sl;
  int tls = strncmp(address, "tls:", 4) == 0;
  if (tls) address += 4;
  if ((tls && !s->tls) || rpc__parse_addr(address, strlen(address), &ss, &sl) < 0 ||
      (tls && ss.ss_family == AF_UNIX))
    return -EINVAL;
  rpc__srv_listener *l = &s->listeners[s->nlisteners];
  memset(l, 0, sizeof *l);
  l->tls = tls;
  l->kind = RPC__CTX_LISTEN;
  int rc = open_listener(l, &ss, sl);
  if (rc < 0) return rc;
  s->nlisteners++;
  return 0;
}

int rpc_server_port(const rpc_server *s) {
  for (unsigned i = 0; i < s->nlisteners; i++)
    if (!s->listeners[i].is_unix) return s->listeners[i].port;
  return -ENOENT;
}

/* ---- Lifecycle --------------------------------------------------------------------------- */

int rpc_server_start(rpc_server *s) {
  if (!s) return -EINVAL;
  if (s->started) return -EBUSY;
  if (s->nlisteners == 0 || s->nmethods == 0) return -EINVAL;
  s->started = 1;
  int rc = rpc__srv_start_workers(s);
  if (rc < 0) {
    rpc__srv_stop_workers(s, 0);
    s->stopped = 1;
  }
  return rc;
}

int rpc_server_shutdown(rpc_server *s, int drain_ms) {
  if (!s || !s->started) return -EINVAL;
  if (s->stopped) return 0;
  s->stopped = 1;
  atomic_store(&s->stopping, 1);
  rpc__srv_stop_workers(s, drain_ms);
  return 0;
}

void rpc_server_destroy(rpc_server *s) {
  if (!s) return;
  if (s->started) rpc_server_shutdown(s, 0);
  for (unsigned i = 0; i < s->nlisteners; i++) close(s->listeners[i].fd); /* never started */
  for (unsigned i = 0; i < RPC_MAX_LISTENERS; i++)
    if (s->listeners[i].is_unix && s->listeners[i].path[0]) unlink(s->listeners[i].path);
  if (atomic_load(&s->run_fd) > 0) close(atomic_load(&s->run_fd) - 1); /* rpc_server_run() */
  free(s->health);
  for (size_t i = 0; i < s->nmethods; i++) free(s->methods[i].full_name);
  free(s->methods);
  free(s->services);
  free(s->workers);
  rpc__tls_ctx_free(s->tls);
  free(s);
}

int rpc_server_listen_error(const rpc_server *s) {
  return s ? atomic_load(&((rpc_server *)s)->listen_error) : -EINVAL;
}

int rpc_server_add_interceptor(rpc_server *s, const rpc_server_interceptor *ic) {
  if (!s || !ic) return -EINVAL;
  if (s->started) return -EBUSY;
  if (s->ninterceptors == RPC_MAX_INTERCEPTORS) return -ENOSPC;
  s->interceptors[s->ninterceptors++] = *ic;
  return 0;
}

/* Test hook (declared by the tests; this is private to //rpc): the TLS refusals of the server
 * and the last reason, what its log would say. 0 without TLS. */
unsigned long rpc__srv_tls_refusals(rpc_server *s, char *why, size_t why_len) {
  return s->tls ? rpc__tls_ctx_refusals(s->tls, why, why_len) : 0;
}
