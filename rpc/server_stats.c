/* rpc_server_get_stats(): the workers' counters (server_internal.h), summed into one snapshot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "rpc/server_internal.h"

static void add_loop(rpc_loop_stats *out, const gaio_stats *g) {
  out->polls += g->polls;
  out->idle_ns += g->idle_ns;
  out->events += g->events;
  out->completions += g->completed;
  out->reads += g->reads;
  out->writes += g->writes;
  out->read_bytes += g->bytes_read;
  out->write_bytes += g->bytes_written;
}

static void add_method(rpc_method_stats *out, const rpc__method_counters *mc) {
  uint64_t started = rpc__get(&mc->started), finished = rpc__get(&mc->finished);
  out->started += started;
  out->in_flight += started > finished ? started - finished : 0;
  out->request_bytes += rpc__get(&mc->request_bytes);
  out->response_bytes += rpc__get(&mc->response_bytes);
  for (unsigned k = 0; k < RPC_STATUS_CODES; k++) out->completed[k] += rpc__get(&mc->completed[k]);
  rpc__hist_add_to(&out->latency, &mc->latency);
}

static void add_worker(rpc_server_stats *out, const rpc__srv_counters *ct) {
  uint64_t closed = 0;
  for (unsigned k = 0; k < RPC_CLOSE_CAUSES; k++) {
    uint64_t n = rpc__get(&ct->closed[k]);
    out->connections_closed[k] += n;
    closed += n;
  }
  uint64_t adopted = rpc__get(&ct->adopted);
  out->connections_open += adopted > closed ? adopted - closed : 0;
  for (unsigned k = 0; k < RPC_PERR_KINDS; k++)
    out->protocol_errors[k] += rpc__get(&ct->protocol_errors[k]);
  out->goaways_sent += rpc__get(&ct->goaways);
  out->calls_refused += rpc__get(&ct->refused);
  out->calls_unimplemented += rpc__get(&ct->unimplemented);
  gaio_watcher *w = atomic_load(&((rpc__srv_counters *)ct)->w);
  if (w) {
    gaio_stats g;
    gaio_watcher_stats(w, &g);
    add_loop(&out->loop, &g);
  } else {
    add_loop(&out->loop, &ct->loop);
  }
}

/* Fill out->methods in registration order: service by service, each in .proto order. */
static void fill_methods(const rpc_server *s, rpc_server_stats *out) {
  size_t n = 0;
  for (size_t i = 0; i < s->nservices; i++) {
    const ProtobufCServiceDescriptor *d = s->services[i]->descriptor;
    for (unsigned j = 0; j < d->n_methods; j++) {
      const rpc__srv_method *m = rpc__srv_find_method(s, rpc__method_id_of(d, j));
      if (!m || n == s->nmethods) continue;
      rpc_method_stats *ms = &out->methods[n++];
      ms->method = m->full_name;
      ms->id = m->id;
      size_t idx = (size_t)(m - s->methods);
      for (unsigned w = 0; w < s->opts.workers; w++)
        if (s->counters[w].methods) add_method(ms, &s->counters[w].methods[idx]);
    }
  }
  out->nmethods = n;
}

int rpc_server_get_stats(rpc_server *s, rpc_server_stats *out) {
  if (!s || !out) return -EINVAL;
  memset(out, 0, sizeof *out);
  out->methods = gaio__calloc(s->nmethods ? s->nmethods : 1, sizeof *out->methods);
  if (!out->methods) return -ENOMEM;
  out->backend = s->backend;
  out->workers = s->opts.workers;
  out->uptime_us = s->started_at ? (gaio_now() - s->started_at) / 1000u : 0;
  fill_methods(s, out);
  for (unsigned i = 0; i < s->opts.workers; i++) add_worker(out, &s->counters[i]);
  for (unsigned i = 0; i < s->nlisteners && i < RPC_MAX_LISTENERS; i++) {
    const rpc__srv_listener *l = &s->listeners[i];
    rpc_listener_stats *ls = &out->listeners[out->nlisteners++];
    memcpy(ls->address, l->address, sizeof ls->address);
    ls->accepted = rpc__get(&l->accepted);
    ls->accept_errors = rpc__get(&l->accept_errors);
    out->connections_accepted += ls->accepted;
  }
  return 0;
}

void rpc_server_stats_free(rpc_server_stats *st) {
  if (!st) return;
  free(st->methods);
  memset(st, 0, sizeof *st);
}
