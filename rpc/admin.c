/* The admin service gaio.admin.v1.Admin (rpc/admin.proto): GetStats answers with the server's
 * counters, rpc_server_get_stats() turned into a ServerStats message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/admin.pb-c.h"
#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "rpc/server_internal.h"

struct admin_service {
  Gaio__Admin__V1__Admin_Service base; /* first: the handler gets a pointer to it */
  rpc_server *srv;
};

/* The message parts of one method, allocated together. */
struct method_msg {
  Gaio__Admin__V1__MethodStats m;
  Gaio__Admin__V1__Histogram h;
  Gaio__Admin__V1__StatusCount sc[RPC_STATUS_CODES];
  Gaio__Admin__V1__StatusCount *scp[RPC_STATUS_CODES];
  uint64_t counts[RPC_HIST_BUCKETS];
};

static void fill_method(struct method_msg *mm, const rpc_method_stats *ms, uint64_t *bounds) {
  gaio__admin__v1__method_stats__init(&mm->m);
  gaio__admin__v1__histogram__init(&mm->h);
  mm->m.method = (char *)ms->method;
  mm->m.started = ms->started;
  mm->m.in_flight = ms->in_flight;
  mm->m.request_bytes = ms->request_bytes;
  mm->m.response_bytes = ms->response_bytes;
  for (unsigned k = 0; k < RPC_STATUS_CODES; k++) {
    if (ms->completed[k] == 0) continue;
    Gaio__Admin__V1__StatusCount *sc = &mm->sc[mm->m.n_completed];
    gaio__admin__v1__status_count__init(sc);
    sc->code = k;
    sc->name = (char *)rpc_status_name((int)k);
    sc->count = ms->completed[k];
    mm->scp[mm->m.n_completed++] = sc;
  }
  mm->m.completed = mm->scp;
  memcpy(mm->counts, ms->latency.counts, sizeof mm->counts);
  mm->h.n_bounds_us = RPC_HIST_BOUNDS;
  mm->h.bounds_us = bounds;
  mm->h.n_counts = RPC_HIST_BUCKETS;
  mm->h.counts = mm->counts;
  mm->h.count = ms->latency.count;
  mm->h.sum_us = ms->latency.sum_us;
  mm->h.max_us = ms->latency.max_us;
  mm->m.latency = &mm->h;
}

/* Named counters: names[i] = value[i] for each of n. */
static void fill_counters(Gaio__Admin__V1__Counter *c, Gaio__Admin__V1__Counter **cp,
                          const uint64_t *values, unsigned n, const char *(*name)(int)) {
  for (unsigned i = 0; i < n; i++) {
    gaio__admin__v1__counter__init(&c[i]);
    c[i].name = (char *)name((int)i);
    c[i].value = values[i];
    cp[i] = &c[i];
  }
}

static void fill_loop(Gaio__Admin__V1__LoopStats *l, const rpc_loop_stats *st) {
  gaio__admin__v1__loop_stats__init(l);
  l->polls = st->polls;
  l->idle_us = st->idle_ns / 1000u;
  l->events = st->events;
  l->completions = st->completions;
  l->reads = st->reads;
  l->writes = st->writes;
  l->read_bytes = st->read_bytes;
  l->write_bytes = st->write_bytes;
}

static void get_stats(Gaio__Admin__V1__Admin_Service *svc, const Gaio__Admin__V1__StatsRequest *in,
                      Gaio__Admin__V1__ServerStats_Closure closure, void *data) {
  (void)in;
  rpc_server *s = ((struct admin_service *)svc)->srv;
  rpc_server_stats st;
  struct method_msg *mm = NULL;
  Gaio__Admin__V1__MethodStats **mp = NULL;
  if (rpc_server_get_stats(s, &st) < 0 ||
      (mm = gaio__calloc(st.nmethods + 1, sizeof *mm)) == NULL ||
      (mp = gaio__calloc(st.nmethods + 1, sizeof *mp)) == NULL) {
    free(mm);
    rpc_server_stats_free(&st);
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  uint64_t bounds[RPC_HIST_BOUNDS];
  for (unsigned i = 0; i < RPC_HIST_BOUNDS; i++) bounds[i] = rpc_histogram_bound(i);
  Gaio__Admin__V1__ServerStats out = GAIO__ADMIN__V1__SERVER_STATS__INIT;
  out.backend = (char *)st.backend;
  out.workers = st.workers;
  out.uptime_us = st.uptime_us;
  out.connections_accepted = st.connections_accepted;
  out.connections_open = st.connections_open;
  Gaio__Admin__V1__Counter closed[RPC_CLOSE_CAUSES], *closedp[RPC_CLOSE_CAUSES];
  fill_counters(closed, closedp, st.connections_closed, RPC_CLOSE_CAUSES, rpc_close_cause_name);
  out.n_connections_closed = RPC_CLOSE_CAUSES;
  out.connections_closed = closedp;
  Gaio__Admin__V1__Counter perr[RPC_PERR_KINDS], *perrp[RPC_PERR_KINDS];
  fill_counters(perr, perrp, st.protocol_errors, RPC_PERR_KINDS, rpc_protocol_error_name);
  out.n_protocol_errors = RPC_PERR_KINDS;
  out.protocol_errors = perrp;
  out.goaways_sent = st.goaways_sent;
  out.calls_refused = st.calls_refused;
  out.calls_unimplemented = st.calls_unimplemented;
  for (size_t i = 0; i < st.nmethods; i++) {
    fill_method(&mm[i], &st.methods[i], bounds);
    mp[i] = &mm[i].m;
  }
  out.n_methods = st.nmethods;
  out.methods = mp;
  Gaio__Admin__V1__ListenerStats ls[RPC_MAX_LISTENERS], *lsp[RPC_MAX_LISTENERS];
  for (unsigned i = 0; i < st.nlisteners; i++) {
    gaio__admin__v1__listener_stats__init(&ls[i]);
    ls[i].address = st.listeners[i].address;
    ls[i].accepted = st.listeners[i].accepted;
    ls[i].accept_errors = st.listeners[i].accept_errors;
    lsp[i] = &ls[i];
  }
  out.n_listeners = st.nlisteners;
  out.listeners = lsp;
  Gaio__Admin__V1__LoopStats loop;
  fill_loop(&loop, &st.loop);
  out.loop = &loop;
  closure(&out, data); /* packs the reply before it returns */
  free(mp);
  free(mm);
  rpc_server_stats_free(&st);
}

int rpc_server_enable_admin(rpc_server *s) {
  if (!s) return -EINVAL;
  if (s->admin) return -EEXIST;
  struct admin_service *a = gaio__calloc(1, sizeof *a);
  if (!a) return -ENOMEM;
  gaio__admin__v1__admin__init(&a->base, NULL);
  a->base.get_stats = get_stats;
  a->srv = s;
  int rc = rpc_server_add_service(s, &a->base.base);
  if (rc < 0) {
    free(a);
    return rc;
  }
  s->admin = a;
  return 0;
}
