/* The RPC client channel. One thread per channel runs its gaio loop: connections, calls,
 * deadlines and reconnects all live on that thread. Other threads submit calls and cancels
 * through the channel's inbox, and receive completions through a stub closure (run on the
 * channel thread), a completion queue, or a blocking wait. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rpc/balancer.h"
#include "rpc/internal.h"
#include "rpc/resolver.h"
#include "rpc/retry.h"
#include "rpc/rpc.h"
#include "rpc/transport.h"
#include "rpc/stats.h"

#define RESULTS_PER_WAIT 128 /* gaio results taken per gaio_wait() */
/* After a write fails (the server reset or closed the connection), how long the connection
 * keeps reading for the replies that arrived before the failure: the read side normally ends
 * at once (the queued bytes, then end of stream or the reset); this bounds a peer that keeps
 * it open. */
#define WRITE_FAILED_READ_MS 200

enum {
  EP_IDLE = RPC_ENDPOINT_IDLE,
  EP_CONNECTING = RPC_ENDPOINT_CONNECTING,
  EP_READY = RPC_ENDPOINT_READY,
  EP_BACKOFF = RPC_ENDPOINT_BACKOFF
};
enum { MODE_CLOSURE, MODE_CQ, MODE_SYNC };
enum { ITEM_SUBMIT = 1, ITEM_CANCEL = 2, ITEM_CLOSE = 3, ITEM_NEXT_WIRE = 4 };
enum { TIMER_BACKOFF = 2, TIMER_KEEPALIVE = 3, TIMER_RESOLVE = 4, TIMER_EJECT = 5, TIMER_RETRY = 6 };
/* (a call's deadline timer has an id as ctx) */
enum { QUEUED_WAIT = 1, QUEUED_RETRY = 2 }; /* which list a call is on (ccall.queued) */

typedef struct cconn cconn;
typedef struct ccall ccall;

typedef struct endpoint {
  rpc_channel *ch;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  cconn *conn; /* the connection being made or in use; NULL when none */
  int state;          /* set through ep_state() */
  int failures;
  double delay_ms;
  rpc__timer backoff;
  int tls;       /* connections are TLS ("tls:" endpoint, or the channel's TLS options) */
  char *host;    /* TLS: the host as written (SNI and name check); malloc */
  char name[RPC_ADDRESS_MAX]; /* the address as the target gave it */
  const char *fail_op; /* the step of the last failed attempt ("connect", "socket", ...) */
  int fail_error;      /* and its error */
  char fail_why[RPC__TLS_ERROR_MAX]; /* or the reason as text, when it is not an errno (the
                                        TLS handshake's); "" when none */
  /* Counters: written by the channel thread, read by rpc_channel_get_stats() (rpc/stats.h);
   * last_error under ch->stats_mu. A dns: target's slot is reused: its reset (ep_add) and
   * `removed` are written under ch->stats_mu too, which the reader holds. */
  _Atomic int state_pub;
  rpc__counter connects, connect_failures, backoff_until;
  rpc__counter calls[RPC_STATUS_CODES];
  rpc__hist latency;
  char last_error[RPC_MAX_ERROR_MESSAGE];
  int removed;   /* dropped by DNS (or a slot never used): takes no call, connects no more */
  unsigned weight;   /* SRV weight, >= 1 */
  int unavail;       /* UNAVAILABLE answers in a row */
  int ejected;       /* out of the rotation until a PING is answered (ejection) */
  unsigned ejections; /* ejections in a row (the ejection time doubles) */
  uint32_t probe;    /* the token of the PING that brings it back; 0: none out */
  rpc__timer eject;  /* the end of the ejection */
} endpoint;

struct cconn {
  int kind; /* RPC__CTX_CONN */
  rpc_channel *ch;
  endpoint *ep; /* NULL once replaced (after a GOAWAY) */
  cconn *prev, *next;
  int fd;
  rpc__rbuf rb;
  rpc__idmap calls; /* by wire request id */
  unsigned pending; /* gaio requests not yet completed */
  int reading;
  int ready;
  int draining; /* takes no new call (GOAWAY, or ids used up); closes when its last is done */
  int freed;
  uint64_t next_wire; /* the next call's request id; UINT32_MAX + 1 once the ids are used up */
  uint64_t last_rx;    /* when bytes last arrived (keepalive) */
  uint64_t ping_sent;  /* when the outstanding PING went out; 0: none outstanding */
  uint32_t ping_token;
  rpc__timer keepalive; /* its pending results are counted in `pending` too; also the
                           handshake timeout of a TLS connection */
  rpc__tls *tls;        /* the TLS session; NULL: plain (transport.h) */
  size_t qbytes; /* bytes of frames given to gaio_write() and not yet written */
  int write_error; /* a write failed with it: reading what arrived before, then closing */
  endpoint *origin;     /* the endpoint it was made for, also once replaced: names it */
};

typedef struct sync_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  ccall *call;
} sync_wait;

struct ccall {
  rpc__idnode cnode; /* key = call id, in ch->calls */
  rpc__idnode wnode; /* key = wire id, in conn->calls */
  rpc__item item;
  int timed; /* a deadline timer is set: its ctx is RPC__TIMER_ID(id) */
  ccall *qprev, *qnext; /* waiting queue, or the completion queue's list */
  int queued;          /* QUEUED_*: on the waiting or the retry list */
  int idempotent;      /* its method is named idempotent: retried on UNAVAILABLE */
  unsigned attempts;   /* sent (or tried) this many times */
  uint64_t retry_at;   /* on the retry list: when to try again */
  uint64_t id;
  uint64_t deadline;
  uint32_t method_id;
  const ProtobufCMessageDescriptor *out;
  rpc__wbuf *req;
  cconn *conn;
  int mode;
  ProtobufCClosure closure;
  void *closure_data;
  rpc_cq *cq;
  void *ctx;
  sync_wait *sync;
  int status;
  int completed; /* complete() ran (not counting a retry) */
  char *msg;
  ProtobufCMessage *reply;
  uint8_t *raw;         /* out == NULL (rpc_channel_call_bytes): the reply's bytes (malloc) */
  size_t raw_len;
  int md_flag;          /* RPC_FLAG_METADATA when req carries headers */
  int wait_for_ready;   /* resolved at submit: 1 wait, 0 fail at once when hopeless */
  unsigned ic_ran;      /* interceptors whose before() ran: their after() runs at completion */
  uint64_t submitted;   /* gaio_now() at submit */
  endpoint *ep;         /* the endpoint it was sent to (NULL: never sent), for the counters */
  rpc_metadata trailers; /* the response's trailers: a copy (malloc) owned by the call */
};

/* An item that carries one id: a cancel's call id, or the test hook's next wire id. */
struct id_item {
  rpc__item item;
  uint64_t id;
};

struct stub {
  ProtobufCService base; /* first: the stubs see a pointer to it */
  rpc_channel *ch;
  struct stub *next;
  uint32_t ids[]; /* method ids, by method index */
};

struct rpc_cq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint outstanding; /* submitted into this queue and not yet taken by rpc_cq_wait() */
  ccall *head, *tail;
  ccall *batch; /* the previous batch, freed by the next wait */
};

struct rpc_channel {
  rpc_channel_options opts;
  endpoint *eps;   /* static targets: neps of them; dns: RPC_MAX_ENDPOINTS slots */
  unsigned neps;   /* slots in use (dns: the highest used + 1; some may be removed) */
  rpc__balancer lb;
  rpc__retry retry;
  ccall *rq_head, *rq_tail; /* calls waiting to be retried */
  rpc__timer retry_timer;
  uint64_t retry_timer_at;
  rpc__dns *dns;   /* dns: targets; NULL for static ones */
  const void *dns_tls; /* dns: targets with the channel's TLS options: every endpoint TLS */
  rpc__timer resolve_timer;
  uint64_t resolve_at, resolved_at; /* the resolve timer's time; the last resolution's start */
  int resolving;   /* a resolution is running (stepped by the resolve timer) */
  int resolved_once; /* the first resolution has ended (calls wait for it) */
  struct {
    /* Written by the channel thread only (rpc__count, as the endpoints' counters); read by
     * rpc_channel_get_stats() from any thread. */
    rpc__counter resolutions, resolve_failures, retries, retries_refused, ejections, endpoints;
  } stats;
  char dns_error[160]; /* why the last resolution failed: "DNS: ..."; "" when it did not */
  gaio_watcher *w;
  pthread_t th;
  int started;
  rpc__inbox inbox;
  rpc__idmap calls;
  ccall *wq_head, *wq_tail; /* calls waiting for a connection */
  cconn *conns;
  rpc__item close_item;
  int closing;
  atomic_uint_fast64_t next_id;
  atomic_uint pending_calls; /* accepted by submit and not yet completed */
  uint64_t rng;
  pthread_mutex_t stub_mu;
  struct stub *stubs;
  uint8_t *md_block;   /* the channel's headers, encoded entries (no prefix) */
  size_t md_len;
  unsigned md_count;
  rpc_client_interceptor ics[RPC_MAX_INTERCEPTORS];
  unsigned nics;
  rpc__tls_ctx *tls;    /* the settings of TLS endpoints; NULL when there is none */
  rpc__logger log;
  pthread_mutex_t stats_mu; /* the endpoints' last_error, `removed`, slot resets, neps */
  rpc__counter unsent[RPC_STATUS_CODES];
  const endpoint *last_failed; /* the endpoint that failed last (channel thread) */
};

/* Headers being built for one call (rpc_headers_add): encoded entries, no prefix. */
struct rpc_headers {
  uint8_t *buf;
  size_t len, cap;
  unsigned count;
  uint8_t local[512]; /* most calls' headers fit here: no allocation */
};

static _Thread_local int tls_status;
static _Thread_local const char *tls_msg;
static _Thread_local const rpc_metadata *tls_trailers;

static void conn_fail(cconn *c, const char *why);
static void conn_end(cconn *c, const char *why);
static void conn_fail_errno(cconn *c, const char *op, int error);
static void ep_connect(endpoint *ep);

/* ---- Endpoint state, its counters and log lines ----------------------------------------- */

/* Move ep to state st; a change is published for rpc_channel_get_stats() and logged once. The
 * move to BACKOFF is logged by ep_backoff(), with its reason. */
static void ep_state(endpoint *ep, int st) {
  if (ep->state == st) return;
  ep->state = st;
  atomic_store_explicit(&ep->state_pub, st, memory_order_relaxed);
  const rpc__logger *lg = &ep->ch->log;
  if (st == EP_READY) rpc__log(lg, RPC_LOG_INFO, "%s: ready", ep->name);
  else if (st == EP_CONNECTING) rpc__log(lg, RPC_LOG_DEBUG, "%s: connecting", ep->name);
  else if (st == EP_IDLE) rpc__log(lg, RPC_LOG_INFO, "%s: idle", ep->name);
}

/* The text of ep's last failure (channel thread), kept for the stats readers too. */
static void ep_set_error(endpoint *ep, const char *text) {
  rpc_channel *ch = ep->ch;
  pthread_mutex_lock(&ch->stats_mu);
  snprintf(ep->last_error, sizeof ep->last_error, "%s", text);
  pthread_mutex_unlock(&ch->stats_mu);
  ch->last_failed = ep;
}

/* Why calls fail when no endpoint can take them: the last failure, which names its endpoint,
 * or a generic text before any failure. Channel thread. */
static const char *unreachable_why(const rpc_channel *ch) {
  /* With no endpoint (dns: targets), a failed resolution is the reason. */
  if (ch->dns_error[0] && (!ch->last_failed || rpc__get(&ch->stats.endpoints) == 0))
    return ch->dns_error;
  return ch->last_failed && ch->last_failed->last_error[0] ? ch->last_failed->last_error
                                                           : "no endpoint is reachable";
}

/* ---- Completion -------------------------------------------------------------------------- */

static void call_free(ccall *call) {
  free(call->req);
  free(call->msg);
  free((void *)call->trailers.data);
  free(call->raw);
  if (call->reply) protobuf_c_message_free_unpacked(call->reply, NULL);
  free(call);
}

static void wq_unlink(rpc_channel *ch, ccall *call) {
  if (!call->queued) return;
  ccall **head = call->queued == QUEUED_RETRY ? &ch->rq_head : &ch->wq_head;
  ccall **tail = call->queued == QUEUED_RETRY ? &ch->rq_tail : &ch->wq_tail;
  if (call->qprev) call->qprev->qnext = call->qnext;
  else *head = call->qnext;
  if (call->qnext) call->qnext->qprev = call->qprev;
  else *tail = call->qprev;
  call->qprev = call->qnext = NULL;
  call->queued = 0;
}

static void wq_push(rpc_channel *ch, ccall *call) {
  call->qnext = NULL;
  call->qprev = ch->wq_tail;
  if (ch->wq_tail) ch->wq_tail->qnext = call;
  else ch->wq_head = call;
  ch->wq_tail = call;
  call->queued = QUEUED_WAIT;
}

static int retry_later(rpc_channel *ch, ccall *call);

static void deliver(ccall *call) {
  if (call->mode == MODE_CLOSURE) {
    tls_status = call->status;
    tls_msg = call->msg ? call->msg : "";
    tls_trailers = &call->trailers;
    call->closure(call->status == RPC_STATUS_OK ? call->reply : NULL, call->closure_data);
    tls_status = 0;
    tls_msg = NULL;
    tls_trailers = NULL;
    call_free(call);
  } else if (call->mode == MODE_CQ) {
    rpc_cq *cq = call->cq;
    pthread_mutex_lock(&cq->mu);
    call->qnext = NULL;
    if (cq->tail) cq->tail->qnext = call;
    else cq->head = call;
    cq->tail = call;
    pthread_cond_signal(&cq->cv);
    pthread_mutex_unlock(&cq->mu);
  } else {
    sync_wait *sw = call->sync;
    pthread_mutex_lock(&sw->mu);
    sw->call = call;
    sw->done = 1;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
  }
}

/* The one completion of a call: take it out of every structure, then deliver it. A reply is
 * passed with status OK only. Channel thread. */
static void complete(rpc_channel *ch, ccall *call, int status, const char *msg, size_t len,
                     ProtobufCMessage *reply) {
  if (status == RPC_STATUS_UNAVAILABLE && retry_later(ch, call)) return;
  assert(!call->completed); /* exactly once */
  call->completed = 1;
  if (call->timed) {
    /* Cancelled, its result is ignored; fired already, its result finds no call by id. */
    gaio_timer_cancel(ch->w, RPC__TIMER_ID(call->id));
    call->timed = 0;
  }
  rpc__idmap_del(&ch->calls, call->id);
  if (call->conn) {
    rpc__idmap_del(&call->conn->calls, call->wnode.key);
    call->conn = NULL;
  }
  wq_unlink(ch, call);
  free(call->req);
  call->req = NULL;
  unsigned was = atomic_fetch_sub(&ch->pending_calls, 1);
  assert(was > 0);
  (void)was;
  call->status = status;
  call->msg = rpc__msgdup(msg, msg ? len : 0);
  call->reply = reply;
  unsigned st = (unsigned)status < RPC_STATUS_CODES ? (unsigned)status : RPC_STATUS_UNKNOWN;
  if (call->ep) {
    rpc__count(&call->ep->calls[st], 1);
    rpc__hist_record(&call->ep->latency, (gaio_now() - call->submitted) / 1000u);
  } else {
    rpc__count(&ch->unsent[st], 1);
  }
  if (call->ic_ran) {
    rpc_client_call info = {call->method_id, call->id, NULL};
    uint64_t took = gaio_now() - call->submitted;
    for (unsigned i = call->ic_ran; i-- > 0;)
      if (ch->ics[i].after) ch->ics[i].after(ch->ics[i].arg, &info, status, took);
  }
  deliver(call);
}

static void complete_str(rpc_channel *ch, ccall *call, int status, const char *msg) {
  complete(ch, call, status, msg, strlen(msg), NULL);
}

/* ---- Connections ------------------------------------------------------------------------- */

static void conn_maybe_free(cconn *c) {
  if (!c->freed || c->pending > 0) return;
  rpc_channel *ch = c->ch;
  if (c->prev) c->prev->next = c->next;
  else ch->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  rpc__rbuf_free(&c->rb);
  rpc__idmap_free(&c->calls);
  rpc__tls_free(c->tls);
  free(c);
}

/* Write b as it is (b may be NULL: out of memory). After a failed write nothing more is
 * written: b is dropped. */
static void send_frame_raw(cconn *c, rpc__wbuf *b) {
  if (!b) return;
  if (c->write_error) {
    free(b);
    return;
  }
  b->conn = c;
  if (gaio_write(c->ch->w, c->fd, b->data, b->len, b) < 0) {
    free(b);
    conn_fail(c, "write failed");
    return;
  }
  c->pending++;
  c->qbytes += b->len;
}

/* Write a buffer of frames (over TLS, its records). */
static void send_frame(cconn *c, rpc__wbuf *b) {
  if (b && c->tls && rpc__tls_seal(c->tls, &b) < 0) {
    conn_fail(c, rpc__tls_error(c->tls)[0] ? rpc__tls_error(c->tls) : "out of memory");
    return;
  }
  send_frame_raw(c, b);
}

static void send_cancel(cconn *c, uint32_t wire) {
  if (c->freed) return;
  rpc_frame f = {0};
  f.type = RPC_TYPE_CANCEL;
  f.request_id = wire;
  send_frame(c, rpc__wbuf_frame(&f, NULL, 0));
}

static int ep_ready(const endpoint *ep) {
  return !ep->removed && ep->state == EP_READY && ep->conn && !ep->conn->draining &&
         !ep->conn->freed && ep->conn->qbytes < RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN;
}

static int lb_usable(const void *arg, unsigned i) {
  const endpoint *ep = &((const rpc_channel *)arg)->eps[i];
  return ep_ready(ep) && !ep->ejected;
}
static int lb_usable_ejected(const void *arg, unsigned i) { /* when all are ejected */
  return ep_ready(&((const rpc_channel *)arg)->eps[i]);
}
static unsigned lb_load(const void *arg, unsigned i) {
  return (unsigned)((const rpc_channel *)arg)->eps[i].conn->calls.n;
}
static unsigned lb_weight(const void *arg, unsigned i) {
  return ((const rpc_channel *)arg)->eps[i].weight;
}

/* The balancer's choice among the ready endpoints that are not ejected; if every ready one is
 * ejected, among those (better a suspect endpoint than none). */
static cconn *pick_conn(rpc_channel *ch) {
  rpc__lb_view v = {ch->neps, lb_usable, lb_load, lb_weight, ch};
  int i = rpc__balancer_pick(&ch->lb, &v);
  if (i < 0) {
    v.usable = lb_usable_ejected;
    i = rpc__balancer_pick(&ch->lb, &v);
  }
  return i < 0 ? NULL : ch->eps[i].conn;
}

static int any_connecting(const rpc_channel *ch) {
  if (ch->dns && !ch->resolved_once) return 1; /* the first list is on its way */
  for (unsigned i = 0; i < ch->neps; i++)
    if (!ch->eps[i].removed &&
        (ch->eps[i].state == EP_CONNECTING || ch->eps[i].state == EP_READY))
      return 1;
  return 0;
}

/* c takes no new call (after a GOAWAY, or once its ids are used up): it finishes the calls in
 * flight and closes after the last one, while its endpoint opens a new connection. */
static void conn_retire(cconn *c) {
  c->draining = 1;
  endpoint *ep = c->ep;
  c->ep = NULL;
  if (ep && ep->conn == c) {
    ep->conn = NULL;
    ep_state(ep, EP_IDLE);
    ep->failures = 0;
    ep_connect(ep);
  }
}

/* A draining connection with no call left has nothing more to do. */
static int conn_drained(const cconn *c) { return c->draining && c->calls.n == 0; }

/* The next request id of c. Ids on a connection increase from 1 and are never reused or 0
 * (WIRE.md section 3), so the connection that gives 0xffffffff takes no call after it. */
static uint32_t take_wire_id(cconn *c) {
  assert(!c->draining && c->next_wire >= 1 && c->next_wire <= UINT32_MAX);
  uint32_t wire = (uint32_t)c->next_wire++;
  if (wire == UINT32_MAX) conn_retire(c);
  return wire;
}

static void send_call(cconn *c, ccall *call) {
  uint32_t wire = take_wire_id(c);
  call->wnode.key = wire;
  if (rpc__idmap_put(&c->calls, &call->wnode) < 0) {
    complete_str(c->ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    if (conn_drained(c)) conn_end(c, "connection drained"); /* it took its last id */
    return;
  }
  call->conn = c;
  call->ep = c->origin;
  rpc_frame f = {0};
  f.type = RPC_TYPE_REQUEST;
  f.flags = (uint8_t)call->md_flag;
  f.request_id = wire;
  f.method_id = call->method_id;
  if (call->deadline) {
    uint64_t now = gaio_now();
    /* Rounded up, so that a deadline not yet passed is never sent as 0 (WIRE.md section 9). */
    uint64_t us = call->deadline > now ? (call->deadline - now + 999u) / 1000u : 1;
    /* Longer than the field holds: send none, the client's own timer still applies. */
    f.timeout_us = us == 0 ? 1 : us > UINT32_MAX ? 0 : (uint32_t)us;
  }
  rpc__wbuf *b = call->req;
  if (call->idempotent) { /* keep the request for a retry: send a copy */
    b = rpc__wbuf_new(call->req->len - RPC_FRAME_HEADER_SIZE);
    if (b) memcpy(b->data, call->req->data, call->req->len);
  } else {
    call->req = NULL;
  }
  if (!b) {
    complete_str(c->ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  f.body_len = (uint32_t)(b->len - RPC_FRAME_HEADER_SIZE);
  rpc_frame_encode(&f, b->data);
  send_frame(c, b);
}

/* Fail the waiting calls when no endpoint can take them soon (unless wait_for_ready). */
static void fail_waiting_if_hopeless(rpc_channel *ch) {
  if (any_connecting(ch)) return;
  for (ccall *call = ch->wq_head, *next; call; call = next) {
    next = call->qnext;
    if (!call->wait_for_ready) complete_str(ch, call, RPC_STATUS_UNAVAILABLE, unreachable_why(ch));
  }
}

/* A call goes to a ready connection with room in its write queue; else it waits in the
 * channel's queue (FIFO: behind the calls already waiting) for a connection or for room. */
static void dispatch(rpc_channel *ch, ccall *call) {
  cconn *c = ch->wq_head ? NULL : pick_conn(ch);
  if (!c)
    for (unsigned i = 0; i < ch->neps && !ch->closing; i++)
      if (ch->eps[i].state == EP_IDLE && !ch->eps[i].conn && !ch->eps[i].removed)
        ep_connect(&ch->eps[i]);
  if (c) {
    send_call(c, call);
  } else if (call->wait_for_ready || any_connecting(ch)) {
    wq_push(ch, call);
  } else {
    complete_str(ch, call, RPC_STATUS_UNAVAILABLE, unreachable_why(ch));
  }
}

static void flush_waiting(rpc_channel *ch) {
  while (ch->wq_head) {
    cconn *c = pick_conn(ch);
    if (!c) return;
    ccall *call = ch->wq_head;
    wq_unlink(ch, call);
    send_call(c, call);
  }
}

static uint64_t rnd(rpc_channel *ch) {
  /* xorshift64: enough to spread reconnects of many clients apart. */
  ch->rng ^= ch->rng << 13;
  ch->rng ^= ch->rng >> 7;
  ch->rng ^= ch->rng << 17;
  return ch->rng;
}

static void resolve_soon(rpc_channel *ch);

/* The attempt of ep failed (its step and error in fail_op, fail_error): wait before the next,
 * and say so: "127.0.0.1:7000: connect: Connection refused; retrying in 0.8 s". */
static void ep_backoff(endpoint *ep) {
  rpc_channel *ch = ep->ch;
  resolve_soon(ch);
  ep->conn = NULL;
  ep_state(ep, EP_BACKOFF);
  rpc__count(&ep->connect_failures, 1);
  if (ep->failures++ == 0) ep->delay_ms = ch->opts.backoff_initial_ms;
  else ep->delay_ms *= RPC_BACKOFF_MULTIPLIER;
  if (ep->delay_ms > ch->opts.backoff_max_ms) ep->delay_ms = ch->opts.backoff_max_ms;
  double r = (double)(rnd(ch) >> 11) / (double)(1ull << 53); /* [0, 1) */
  double d = ep->delay_ms * (1.0 + RPC_BACKOFF_JITTER * (2.0 * r - 1.0));
  /* Without a timer (no gaio request to spare) the endpoint is idle: the next call that finds
   * no connection ready connects it (dispatch). */
  uint64_t at = gaio_now() + (uint64_t)(d * 1e6);
  char text[RPC_MAX_ERROR_MESSAGE];
  int armed = rpc__timer_arm(ch->w, &ep->backoff, at) == 0;
  char cause[RPC__TLS_ERROR_MAX + 64];
  if (ep->fail_why[0])
    snprintf(cause, sizeof cause, "%s", ep->fail_why);
  else
    snprintf(cause, sizeof cause, "%s: %s", ep->fail_op ? ep->fail_op : "connect",
             gaio_strerror(ep->fail_error));
  if (armed)
    snprintf(text, sizeof text, "%s: %s; retrying in %.1f s", ep->name, cause, d / 1000.0);
  else
    snprintf(text, sizeof text, "%s: %s; retrying at the next call", ep->name, cause);
  atomic_store_explicit(&ep->backoff_until, armed ? at : 0, memory_order_relaxed);
  ep_set_error(ep, text);
  rpc__log(&ch->log, RPC_LOG_WARN, "%s", text);
  if (!armed) ep_state(ep, EP_IDLE);
  fail_waiting_if_hopeless(ch);
}

/* The endpoint lost its connection: reconnect at once if it had been working, else back off. */
static void ep_lost(endpoint *ep, int was_ready) {
  ep->conn = NULL;
  resolve_soon(ep->ch);
  if (was_ready && !ep->ch->closing) {
    ep->failures = 0;
    ep_connect(ep);
  } else if (!ep->ch->closing) {
    ep_backoff(ep);
  }
}

/* Close the connection: its calls complete UNAVAILABLE, its endpoint reconnects. */
static void conn_fail(cconn *c, const char *why_) {
  if (c->freed) return;
  rpc_channel *ch = c->ch;
  c->freed = 1;
  char why[RPC_MAX_ERROR_MESSAGE];
  snprintf(why, sizeof why, "%s: %s", c->origin ? c->origin->name : "?", why_);
  if (c->ready && !ch->closing) rpc__log(&ch->log, RPC_LOG_WARN, "%s; connection closed", why);
  if (!c->ready && c->ep) snprintf(c->ep->fail_why, sizeof c->ep->fail_why, "%s", why_);
  rpc__timer_disarm(ch->w, &c->keepalive);
  rpc__idnode *n;
  while ((n = rpc__idmap_pop(&c->calls)) != NULL) {
    ccall *call = rpc__container_of(n, ccall, wnode);
    call->conn = NULL;
    complete_str(ch, call, RPC_STATUS_UNAVAILABLE, why);
  }
  gaio_free(ch->w, c->fd);
  endpoint *ep = c->ep;
  c->ep = NULL;
  if (ep && ep->conn == c) ep_lost(ep, c->ready);
  conn_maybe_free(c);
}

/* The channel's graceful end of c (drained after a GOAWAY or its last id, its endpoint
 * removed, the channel closed): over TLS, close_notify first, so that the server reads a clean
 * end of the stream. gaio_free() cancels the writes still queued, so the alert is sent here
 * directly, without waiting, and only after every byte queued before it was written (qbytes
 * 0): a socket that does not take it now (the server reads nothing) closes without it. */
static void conn_end(cconn *c, const char *why) {
  rpc__wbuf *b = NULL;
  if (!c->freed && c->tls && c->qbytes == 0 && rpc__tls_close_notify(c->tls) == 0 &&
      rpc__tls_seal(c->tls, &b) == 0 && b)
    (void)send(c->fd, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
  free(b);
  conn_fail(c, why);
}

static void conn_read(cconn *c);

/* Arm c's keepalive timer (also its TLS handshake deadline, and the bound after a failed
 * write) for when; its result holds c until it arrives. Returns 0 or rpc__timer_arm()'s error. */
static int conn_timer_arm(cconn *c, uint64_t when) {
  int rc = rpc__timer_arm(c->ch->w, &c->keepalive, when);
  if (rc == 0) c->pending++;
  return rc;
}

/* A write failed with error: the server reset or closed the connection. Replies it sent before
 * may still be unread: in the socket (the kernel returns the bytes received before a reset,
 * then the error) or in a read result not handled yet. So, unless no call waits on it, the
 * connection takes no new call and writes nothing more (its endpoint connects anew, as for a
 * lost connection), and it reads on until end of stream or an error, delivering every whole
 * RESPONSE; then the calls left fail UNAVAILABLE with the write's error (conn_fail_errno). The
 * keepalive timer bounds that to WRITE_FAILED_READ_MS. */
static void conn_write_failed(cconn *c, int error) {
  if (c->freed || c->write_error) return;
  if (!c->ready || c->calls.n == 0 ||
      conn_timer_arm(c, gaio_now() + WRITE_FAILED_READ_MS * 1000000ull) < 0) {
    conn_fail_errno(c, "write", error);
    return;
  }
  c->write_error = error;
  c->draining = 1;
  endpoint *ep = c->ep;
  c->ep = NULL;
  if (ep && ep->conn == c) ep_lost(ep, 1);
  conn_read(c); /* normally one is pending already */
}

static void conn_read(cconn *c) {
  if (c->reading || c->freed) return;
  size_t len = c->rb.cap - c->rb.len;
  uint8_t *p = c->tls ? rpc__tls_rbuf(c->tls, &len) : c->rb.data + c->rb.len;
  int rc = gaio_read(c->ch->w, c->fd, p, len, c);
  if (rc < 0) {
    conn_fail(c, "read failed");
    return;
  }
  c->reading = 1;
  c->pending++;
}

static void ep_connect(endpoint *ep) {
  rpc_channel *ch = ep->ch;
  int fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ep->fail_why[0] = '\0';
  ep->fail_op = "socket";
  ep->fail_error = fd < 0 ? -errno : -ENOMEM;
  cconn *c = fd >= 0 ? gaio__calloc(1, sizeof *c) : NULL;
  if (!c || rpc__rbuf_init(&c->rb) < 0) goto fail;
  if (ep->addr.ss_family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  c->kind = RPC__CTX_CONN;
  c->ch = ch;
  c->ep = ep;
  c->fd = fd;
  c->next_wire = 1;
  rpc__timer_init(&c->keepalive, TIMER_KEEPALIVE);
  if (ep->tls && (ep->fail_error = rpc__tls_new(&c->tls, ch->tls, ep->host)) < 0) {
    ep->fail_op = "TLS session";
    goto fail;
  }
  ep->fail_op = "socket";
  if ((ep->fail_error = gaio_attach(ch->w, fd)) < 0) goto fail;
  fd = -1; /* the watcher's now */
  c->next = ch->conns;
  if (ch->conns) ch->conns->prev = c;
  ch->conns = c;
  uint64_t deadline = gaio_now() + (uint64_t)ch->opts.connect_timeout_ms * 1000000u;
  ep->conn = c;
  c->origin = ep;
  ep_state(ep, EP_CONNECTING);
  int rc = gaio_connect(ch->w, c->fd, (struct sockaddr *)&ep->addr, ep->addr_len, c, deadline);
  if (rc < 0) {
    ep->fail_op = "connect";
    ep->fail_error = rc;
    c->freed = 1;
    gaio_free(ch->w, c->fd);
    conn_maybe_free(c);
    ep_backoff(ep);
    return;
  }
  c->pending++;
  return;
fail:
  if (c) {
    rpc__rbuf_free(&c->rb);
    rpc__tls_free(c->tls);
    free(c);
  }
  if (fd >= 0) close(fd);
  ep_backoff(ep);
}

/* Failing a connection frees it once nothing is pending; a function that may fail it and
 * still use it afterwards holds it for its duration. Each completion's own pending count is
 * such a hold until its handler ends. */
static void conn_release(cconn *c) {
  c->pending--;
  conn_maybe_free(c);
}

/* Keepalive is a promise to notice a dead server: a connection that cannot set its timer
 * fails rather than go on without. Returns 0 or -1 (c failed). */
static int keepalive_arm(cconn *c, uint64_t from) {
  uint64_t ka = (uint64_t)c->ch->opts.keepalive_ms * 1000000u;
  int rc = conn_timer_arm(c, from + ka);
  if (rc == 0) return 0;
  char why[96];
  snprintf(why, sizeof why, "keepalive timer: %s", gaio_strerror(rc));
  conn_fail(c, why);
  return -1;
}

/* The connection can take calls (connected; over TLS, the handshake done). Returns 0, or -1
 * when c failed. */
static int conn_up(cconn *c) {
  c->ready = 1;
  c->last_rx = gaio_now();
  if (c->ch->opts.keepalive_ms > 0) {
    if (keepalive_arm(c, c->last_rx) < 0) return -1;
  } else {
    rpc__timer_disarm(c->ch->w, &c->keepalive); /* the TLS handshake timeout */
  }
  endpoint *ep = c->ep;
  if (ep) {
    rpc__count(&ep->connects, 1);
    atomic_store_explicit(&ep->backoff_until, 0, memory_order_relaxed);
    ep_state(ep, EP_READY);
    ep->failures = 0;
  }
  flush_waiting(c->ch);
  return c->freed ? -1 : 0;
}

/* Write what the TLS session has to send (its handshake messages, alerts, key updates). */
static void tls_flush(cconn *c) {
  rpc__wbuf *b = NULL;
  if (!c->freed && rpc__tls_seal(c->tls, &b) == 0 && b) send_frame_raw(c, b);
}

/* TLS: the ClientHello goes out; the handshake must end within connect_timeout_ms (the
 * keepalive timer keeps that deadline until then). */
static void tls_connected(cconn *c) {
  uint64_t ms = (uint64_t)c->ch->opts.connect_timeout_ms;
  if (conn_timer_arm(c, gaio_now() + ms * 1000000u) < 0) {
    conn_fail(c, "no timer for the TLS handshake");
    return;
  }
  tls_flush(c);
  conn_read(c);
}

static void connect_done(cconn *c, const gaio_result *r) {
  if (c->freed) return;
  if (r->error != 0) {
    conn_fail_errno(c, "connect", r->error);
    return;
  }
  if (c->tls) {
    tls_connected(c);
    return;
  }
  if (conn_up(c) == 0) conn_read(c);
}

static void on_connect(cconn *c, const gaio_result *r) {
  connect_done(c, r);
  conn_release(c);
}

/* ---- Frames from the server -------------------------------------------------------------- */

/* Every id below next_wire was given out once (ids only increase), except the ones the test
 * hook rpc__channel_set_next_wire_id() skipped. */
static int issued(const cconn *c, uint32_t id) { return id != 0 && id < c->next_wire; }

/* The trailers at the start of a RESPONSE body, copied into the call. Returns 0 (body and len
 * then point past them) or the status to complete the call with (message in *why). */
static int take_trailers(rpc_channel *ch, ccall *call, const uint8_t **body, size_t *len,
                         const char **why) {
  rpc_metadata md;
  long used = rpc_metadata_parse(*body, *len, ch->opts.max_metadata_bytes,
                                 ch->opts.max_metadata_entries, &md);
  if (used < 0) {
    *why = used == -EPROTO ? "malformed metadata" : "metadata larger than the channel's limit";
    return used == -EPROTO ? RPC_STATUS_INTERNAL : RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  *body += used;
  *len -= (size_t)used;
  if (md.len == 0) return 0;
  uint8_t *copy = gaio__malloc(md.len);
  if (!copy) {
    *why = "out of memory";
    return RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  memcpy(copy, md.data, md.len);
  call->trailers = (rpc_metadata){copy, md.len, md.count};
  return 0;
}

static void ep_answered(endpoint *ep, int status);

static void on_response(cconn *c, const rpc_frame *f, int oversize) {
  rpc_channel *ch = c->ch;
  if (c->ep) ep_answered(c->ep, oversize ? RPC_STATUS_OK : f->status);
  ccall *call = rpc__container_of(rpc__idmap_del(&c->calls, f->request_id), ccall, wnode);
  call->conn = NULL;
  const uint8_t *body = f->body;
  size_t len = f->body_len;
  const char *why = NULL;
  int st = 0;
  if (oversize) {
    complete_str(ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "reply larger than the channel's limit");
  } else if ((f->flags & RPC_FLAG_METADATA) && (st = take_trailers(ch, call, &body, &len, &why))) {
    complete_str(ch, call, st, why);
  } else if (f->status != RPC_STATUS_OK) {
    complete(ch, call, f->status, (const char *)body, len, NULL);
  } else if (!call->out) { /* the caller unpacks: the bytes as they came */
    if ((call->raw = gaio__malloc(len ? len : 1)) == NULL) {
      complete_str(ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    if (len) memcpy(call->raw, body, len);
    call->raw_len = len;
    complete(ch, call, RPC_STATUS_OK, "", 0, NULL);
  } else {
    ProtobufCMessage *m = protobuf_c_message_unpack(call->out, NULL, len, body);
    if (m) complete(ch, call, RPC_STATUS_OK, "", 0, m);
    else complete_str(ch, call, RPC_STATUS_INTERNAL, "reply does not unpack");
  }
}

/* WIRE.md section 11. Ids compare as plain numbers: they only increase on a connection. A
 * second GOAWAY (from a broken server) acts with the smaller id, since the calls above the
 * first one are gone already. */
static void on_goaway(cconn *c, uint32_t last) {
  rpc_channel *ch = c->ch;
  conn_retire(c);
  /* Calls above the last id were not processed: they fail UNAVAILABLE (safe to retry). */
  ccall *list = NULL;
  for (size_t i = 0; i < c->calls.nb; i++)
    for (rpc__idnode *n = c->calls.b[i]; n; n = n->next)
      if ((uint32_t)n->key > last) {
        ccall *call = rpc__container_of(n, ccall, wnode);
        call->qnext = list;
        list = call;
      }
  while (list) {
    ccall *call = list;
    list = call->qnext;
    complete_str(ch, call, RPC_STATUS_UNAVAILABLE, "server is going away");
  }
}

static void ep_probed(endpoint *ep);

/* rpc__frame_fn for a client connection. */
static int on_frame(void *owner, const rpc_frame *f, int oversize) {
  cconn *c = owner;
  if (c->freed) return -ECANCELED;
  switch (f->type) {
    case RPC_TYPE_RESPONSE:
      if (rpc__idmap_get(&c->calls, f->request_id)) {
        on_response(c, f, oversize);
        return 0;
      }
      /* Not in flight: a call that timed out or was cancelled is ignored; an id never sent
       * is a broken server. */
      return issued(c, f->request_id) ? 0 : -EPROTO;
    case RPC_TYPE_PONG:
      if (c->ep && c->ep->probe && f->request_id == c->ep->probe) ep_probed(c->ep);
      return oversize ? -EPROTO : 0;
    case RPC_TYPE_GOAWAY:
      /* An oversize reason is skipped by rpc__rbuf_consume(); the GOAWAY itself still counts
       * (WIRE.md section 8), and its reason is for logs only. */
      on_goaway(c, f->request_id);
      return 0;
    default:
      return -EPROTO;
  }
}

/* Fail c for a socket error, naming the operation and the errno ("read: Connection reset by
 * peer"), so that the caller's message says what broke: after a failed write, that write. */
static void conn_fail_errno(cconn *c, const char *op, int error) {
  if (c->write_error) {
    op = "write";
    error = c->write_error;
  }
  if (error == GAIO_EOF && c->tls && !c->ready) {
    conn_fail(c, "connection closed by the server during the TLS handshake");
    return;
  }
  if (error == GAIO_EOF) {
    conn_fail(c, "connection closed by the server");
    return;
  }
  char why[128];
  snprintf(why, sizeof why, "%s: %s", op, gaio_strerror(error));
  conn_fail(c, why);
}

/* TLS: n ciphertext bytes arrived: move the handshake on, then hand the plaintext to the
 * frame codec. Returns as rpc__rbuf_consume(), -ECANCELED once c failed. */
static int tls_consume(cconn *c, size_t n) {
  int rc = rpc__tls_feed(c->tls, n);
  if (rc < 0) {
    conn_fail(c, rpc__tls_error(c->tls));
    return -ECANCELED;
  }
  tls_flush(c);
  if (c->freed || (rc == 1 && conn_up(c) < 0)) return -ECANCELED;
  for (;;) {
    long got = rpc__tls_recv(c->tls, c->rb.data + c->rb.len, c->rb.cap - c->rb.len);
    if (got == 0) break;
    if (got < 0) {
      conn_fail(c, got == GAIO_EOF ? "connection closed by the server" : rpc__tls_error(c->tls));
      return -ECANCELED;
    }
    rc = rpc__rbuf_consume(&c->rb, (size_t)got, c->ch->opts.max_body, on_frame, c);
    if (rc < 0) return rc;
  }
  tls_flush(c);
  return c->freed ? -ECANCELED : 0;
}

static void read_done(cconn *c, const gaio_result *r) {
  if (c->freed) return;
  if (r->error != 0) {
    conn_fail_errno(c, "read", r->error);
    return;
  }
  c->last_rx = gaio_now();
  int rc = c->tls ? tls_consume(c, r->size)
                  : rpc__rbuf_consume(&c->rb, r->size, c->ch->opts.max_body, on_frame, c);
  if (rc == -ECANCELED) return;
  if (rc < 0) {
    conn_fail(c, rc == -EPROTO ? "protocol error from the server" : "out of memory");
    return;
  }
  if (conn_drained(c)) {
    conn_end(c, "connection drained");
    return;
  }
  conn_read(c);
}

static void on_read(cconn *c, const gaio_result *r) {
  c->reading = 0;
  read_done(c, r);
  conn_release(c);
}

static void on_write(rpc__wbuf *b, const gaio_result *r) {
  cconn *c = b->conn;
  assert(c->qbytes >= b->len);
  c->qbytes -= b->len;
  free(b);
  if (!c->freed && r->error != 0) conn_write_failed(c, r->error);
  else if (!c->freed && c->ch->wq_head && c->qbytes < RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN)
    flush_waiting(c->ch); /* room again for the calls that wait for it */
  conn_release(c);
}

/* ---- The loop ---------------------------------------------------------------------------- */

static void on_submit(rpc_channel *ch, ccall *call) {
  call->cnode.key = call->id;
  if (rpc__idmap_put(&ch->calls, &call->cnode) < 0) {
    /* Not in the map, the call could be neither cancelled nor found again: end it now. */
    complete_str(ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  if (call->deadline) {
    if (call->deadline <= gaio_now()) {
      complete_str(ch, call, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
      return;
    }
    int rc = gaio_timer(ch->w, RPC__TIMER_ID(call->id), call->deadline);
    if (rc < 0) {
      complete_str(ch, call, RPC_STATUS_RESOURCE_EXHAUSTED, "no timer for the deadline");
      return;
    }
    call->timed = 1;
  }
  rpc__retry_deposit(&ch->retry);
  dispatch(ch, call);
}

/* A call was abandoned (deadline, cancel): tell the server, complete the call, and close the
 * connection if it had a GOAWAY and this was its last call. */
static void abandon(rpc_channel *ch, ccall *call, int status, const char *why) {
  cconn *c = call->conn;
  uint32_t wire = (uint32_t)call->wnode.key;
  /* Complete first: a failing CANCEL write fails the connection and every call still on it. */
  complete_str(ch, call, status, why);
  if (!c) return;
  c->pending++;
  send_cancel(c, wire);
  if (!c->freed && conn_drained(c)) conn_end(c, "connection drained");
  conn_release(c);
}

static void on_cancel(rpc_channel *ch, uint64_t id) {
  rpc__idnode *n = rpc__idmap_get(&ch->calls, id);
  if (n) abandon(ch, rpc__container_of(n, ccall, cnode), RPC_STATUS_CANCELLED, "cancelled");
}

/* Test hook: the connections that take calls jump forward to id (new ones still start at 1). */
static void on_next_wire(rpc_channel *ch, uint32_t id) {
  for (cconn *c = ch->conns; c; c = c->next)
    if (!c->freed && !c->draining && id > c->next_wire) c->next_wire = id;
}

static void on_items(rpc_channel *ch, rpc__item *it) {
  while (it) {
    rpc__item *next = it->next;
    if (it->kind == ITEM_SUBMIT) {
      ccall *call = rpc__container_of(it, ccall, item);
      if (ch->closing) complete_str(ch, call, RPC_STATUS_CANCELLED, "channel closed");
      else on_submit(ch, call);
    } else if (it->kind == ITEM_CANCEL) {
      struct id_item *ii = (struct id_item *)it;
      if (!ch->closing) on_cancel(ch, ii->id);
      free(ii);
    } else if (it->kind == ITEM_NEXT_WIRE) {
      struct id_item *ii = (struct id_item *)it;
      if (!ch->closing) on_next_wire(ch, (uint32_t)ii->id);
      free(ii);
    } else if (it->kind == ITEM_CLOSE) {
      ch->closing = 1;
    }
    it = next;
  }
}

static void on_timer(rpc_channel *ch, const gaio_result *r);

static void on_result(rpc_channel *ch, const gaio_result *r) {
  if (r->op == GAIO_OP_TIMER) {
    on_timer(ch, r);
    return;
  }
  switch (*(const int *)r->ctx) {
    case RPC__CTX_CONN:
      if (r->op == GAIO_OP_CONNECT) on_connect(r->ctx, r);
      else on_read(r->ctx, r);
      break;
    case RPC__CTX_WRITE:
      on_write(r->ctx, r);
      break;
    case RPC__CTX_INBOX:
      if (r->error == 0) on_items(ch, rpc__inbox_take(&ch->inbox, 0));
      break;
    default:
      assert(!"a result with an unknown ctx kind");
  }
}

/* Keepalive (WIRE.md section 10): after keepalive_ms without a byte received, send a PING;
 * if nothing at all arrives within keepalive_ms after it, the connection is dead. */
static void on_keepalive(cconn *c, uint64_t now) {
  rpc_channel *ch = c->ch;
  uint64_t ka = (uint64_t)ch->opts.keepalive_ms * 1000000u;
  if (c->write_error) { /* the read side did not end in time after a failed write */
    conn_fail_errno(c, "write", c->write_error);
    return;
  }
  if (!c->ready) {
    conn_fail(c, "TLS handshake timed out");
    return;
  }
  if (c->ping_sent && c->last_rx < c->ping_sent) {
    conn_fail(c, "keepalive timeout");
    return;
  }
  c->ping_sent = 0;
  if (now - c->last_rx < ka) {
    keepalive_arm(c, c->last_rx);
    return;
  }
  rpc_frame f = {0};
  f.type = RPC_TYPE_PING;
  f.request_id = ++c->ping_token;
  c->ping_sent = now;
  if (keepalive_arm(c, now) == 0) send_frame(c, rpc__wbuf_frame(&f, NULL, 0));
}

static void on_timer2(rpc_channel *ch, rpc__timer *t, const gaio_result *r);

static void on_timer(rpc_channel *ch, const gaio_result *r) {
  if (rpc__timer_is_id(r->ctx)) { /* a call's deadline, if the call is still there */
    rpc__idnode *n = r->error ? NULL : rpc__idmap_get(&ch->calls, rpc__timer_id(r->ctx));
    if (!n) return;
    ccall *call = rpc__container_of(n, ccall, cnode);
    call->timed = 0; /* it fired: nothing to cancel */
    abandon(ch, call, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    return;
  }
  rpc__timer *t = r->ctx;
  if (t->kind == TIMER_KEEPALIVE) {
    cconn *c = rpc__container_of(t, cconn, keepalive);
    if (rpc__timer_fired(t, r) && !c->freed) on_keepalive(c, gaio_now());
    conn_release(c); /* the timer's hold */
  } else if (t->kind == TIMER_BACKOFF) {
    endpoint *ep = rpc__container_of(t, endpoint, backoff);
    if (rpc__timer_fired(t, r) && !ch->closing && !ep->removed) ep_connect(ep);
  } else {
    on_timer2(ch, t, r);
  }
}

/* Every call still open completes CANCELLED, every connection closes, every gaio result is
 * collected; then the thread ends. */
static void close_all(rpc_channel *ch) {
  on_items(ch, rpc__inbox_take(&ch->inbox, 1));
  rpc__idnode *n;
  while ((n = rpc__idmap_pop(&ch->calls)) != NULL)
    complete_str(ch, rpc__container_of(n, ccall, cnode), RPC_STATUS_CANCELLED, "channel closed");
  for (cconn *c = ch->conns, *next; c; c = next) {
    next = c->next;
    conn_end(c, "channel closed");
  }
  gaio_watcher_close(ch->w);
  gaio_result res[RESULTS_PER_WAIT];
  int k;
  while ((k = gaio_wait(ch->w, res, RESULTS_PER_WAIT, -1)) > 0)
    for (int i = 0; i < k; i++) on_result(ch, &res[i]);
}

static void resolve_tick(rpc_channel *ch);

static void *chan_main(void *arg) {
  rpc_channel *ch = arg;
  gaio_result res[RESULTS_PER_WAIT];
  for (unsigned i = 0; i < ch->neps; i++) ep_connect(&ch->eps[i]);
  if (ch->dns) resolve_tick(ch);
  while (!ch->closing) {
    int n = gaio_wait(ch->w, res, RESULTS_PER_WAIT, -1);
    if (n < 0) break;
    for (int i = 0; i < n; i++) on_result(ch, &res[i]);
  }
  ch->closing = 1;
  close_all(ch);
  return NULL;
}

/* ---- Discovery: the endpoint set of dns: targets ------------------------------------------ */

static int same_addr(const endpoint *ep, const rpc__resolved *a) {
  return ep->addr_len == a->addr_len && memcmp(&ep->addr, &a->addr, a->addr_len) == 0;
}

/* ep leaves the set: it takes no new call; its connection finishes the calls in flight and
 * closes after the last (conn_drained), or at once when it has none. */
static void ep_remove(endpoint *ep) {
  rpc_channel *ch = ep->ch;
  pthread_mutex_lock(&ch->stats_mu); /* rpc_channel_get_stats() leaves removed slots out */
  ep->removed = 1;
  pthread_mutex_unlock(&ch->stats_mu);
  ep->ejected = 0;
  ep->probe = 0;
  rpc__timer_disarm(ch->w, &ep->backoff);
  rpc__timer_disarm(ch->w, &ep->eject);
  cconn *c = ep->conn;
  ep->conn = NULL;
  ep->state = EP_IDLE;
  if (c) {
    c->ep = NULL;
    c->draining = 1;
    if (conn_drained(c)) conn_end(c, "endpoint removed by DNS");
  }
}

/* A free slot: never used, or removed with no timer result still to come. */
static endpoint *ep_slot(rpc_channel *ch) {
  for (unsigned i = 0; i < ch->neps; i++) {
    endpoint *ep = &ch->eps[i];
    if (ep->removed && !ep->conn && ep->backoff.pending == 0 && ep->eject.pending == 0) return ep;
  }
  if (ch->neps == RPC_MAX_ENDPOINTS) return NULL;
  pthread_mutex_lock(&ch->stats_mu);
  endpoint *ep = &ch->eps[ch->neps++];
  ep->removed = 1; /* until ep_add has set it up */
  pthread_mutex_unlock(&ch->stats_mu);
  return ep;
}

static void ep_add(rpc_channel *ch, const rpc__resolved *a) {
  endpoint *ep = ep_slot(ch);
  /* A resolution has at most RPC__DNS_MAX_ADDRS (= RPC_MAX_ENDPOINTS) addresses, and apply_list
   * adds only those not in the set: a slot is always there. */
  assert(ep != NULL);
  if (!ep) return;
  pthread_mutex_lock(&ch->stats_mu); /* a reader of the stats sees the old slot or the new one */
  char *host = ep->host;
  memset(ep, 0, sizeof *ep);
  ep->host = host; /* kept from an earlier use of the slot: the same name */
  ep->ch = ch;
  memcpy(&ep->addr, &a->addr, a->addr_len);
  ep->addr_len = a->addr_len;
  rpc__addr_text(&ep->addr, ep->addr_len, ep->name, sizeof ep->name);
  ep->weight = a->weight;
  rpc__timer_init(&ep->backoff, TIMER_BACKOFF);
  rpc__timer_init(&ep->eject, TIMER_EJECT);
  if (ch->dns_tls) {
    if (!ep->host) ep->host = rpc__msgdup(rpc__dns_name(ch->dns), strlen(rpc__dns_name(ch->dns)));
    ep->tls = 1;
  }
  /* No memory for the name: not a TLS endpoint without it. */
  ep->removed = ch->dns_tls && !ep->host;
  pthread_mutex_unlock(&ch->stats_mu);
  if (!ep->removed) ep_connect(ep);
}

/* A resolution gave list: connect the new addresses, drain the ones gone. */
static void apply_list(rpc_channel *ch, const rpc__resolved *list, unsigned n) {
  for (unsigned i = 0; i < ch->neps; i++) {
    endpoint *ep = &ch->eps[i];
    unsigned k = 0;
    while (k < n && !same_addr(ep, &list[k])) k++;
    if (ep->removed) continue;
    if (k == n) ep_remove(ep);
    else ep->weight = list[k].weight;
  }
  unsigned live = 0;
  for (unsigned k = 0; k < n; k++) {
    unsigned i = 0;
    while (i < ch->neps && (ch->eps[i].removed || !same_addr(&ch->eps[i], &list[k]))) i++;
    if (i == ch->neps) ep_add(ch, &list[k]);
  }
  for (unsigned i = 0; i < ch->neps; i++) live += !ch->eps[i].removed;
  atomic_store_explicit(&ch->stats.endpoints, live, memory_order_relaxed);
  flush_waiting(ch);
}

/* When the next resolution starts: the interval, shortened by the records' TTL (to no less
 * than RPC_DNS_MIN_TTL_MS). */
static uint64_t next_resolution(const rpc_channel *ch, uint32_t ttl_s, uint64_t now) {
  uint64_t ms = (uint64_t)ch->opts.resolve_interval_ms;
  if (ttl_s != UINT32_MAX) {
    uint64_t ttl_ms = (uint64_t)ttl_s * 1000u;
    if (ttl_ms < RPC_DNS_MIN_TTL_MS) ttl_ms = RPC_DNS_MIN_TTL_MS;
    if (ttl_ms < ms) ms = ttl_ms;
  }
  return now + ms * 1000000u;
}

static void resolve_arm(rpc_channel *ch, uint64_t at) {
  if (rpc__timer_arm(ch->w, &ch->resolve_timer, at) < 0) {
    /* No gaio request to spare: the next endpoint failure asks again (resolve_soon). */
    snprintf(ch->dns_error, sizeof ch->dns_error, "DNS: no timer for the next resolution");
    return;
  }
  ch->resolve_at = at;
}

/* A resolution ended: apply its list, or keep the last good one. */
static void resolution_done(rpc_channel *ch, uint64_t now) {
  const rpc__resolved *list;
  uint32_t ttl;
  const char *err;
  unsigned n = rpc__dns_result(ch->dns, &list, &ttl, &err);
  ch->resolving = 0;
  ch->resolved_once = 1;
  rpc__count(&ch->stats.resolutions, 1);
  if (n > 0) {
    ch->dns_error[0] = '\0';
    apply_list(ch, list, n);
  } else {
    /* The last list stays; the error is kept for calls that find no endpoint. */
    rpc__count(&ch->stats.resolve_failures, 1);
    snprintf(ch->dns_error, sizeof ch->dns_error, "DNS: %s", err);
    rpc__log(&ch->log, RPC_LOG_WARN, "%s: %s; keeping the last list of endpoints",
             rpc__dns_name(ch->dns), ch->dns_error);
    fail_waiting_if_hopeless(ch);
  }
  resolve_arm(ch, next_resolution(ch, ttl, now));
}

/* The resolve timer: start a resolution, or step the running one (resolver.h). */
static void resolve_tick(rpc_channel *ch) {
  uint64_t now = gaio_now();
  if (!ch->resolving) {
    ch->resolving = 1;
    ch->resolved_at = now;
    rpc__dns_start(ch->dns);
  }
  if (rpc__dns_step(ch->dns)) resolve_arm(ch, now + RPC__DNS_STEP_MS * 1000000u);
  else resolution_done(ch, now);
}

/* An endpoint failed: resolve again now, or RPC_DNS_MIN_RERESOLVE_MS after the last start. */
static void resolve_soon(rpc_channel *ch) {
  if (!ch->dns || ch->resolving || ch->closing) return;
  uint64_t now = gaio_now();
  uint64_t at = ch->resolved_at + (uint64_t)RPC_DNS_MIN_RERESOLVE_MS * 1000000u;
  if (at < now) at = now;
  if (ch->resolve_timer.armed && ch->resolve_at <= at) return;
  resolve_arm(ch, at);
}

static int dns_target(rpc_channel *ch, const char *target) {
  ch->eps = gaio__calloc(RPC_MAX_ENDPOINTS, sizeof *ch->eps);
  if (!ch->eps) return -ENOMEM;
  rpc__timer_init(&ch->resolve_timer, TIMER_RESOLVE);
  return rpc__dns_new(&ch->dns, target + strlen(RPC__DNS_SCHEME), ch->opts.resolver);
}

/* ---- Health: outlier ejection -------------------------------------------------------------- */

/* Answers of ep: eject_failures UNAVAILABLE in a row take it out of the rotation. */
static void ep_answered(endpoint *ep, int status) {
  rpc_channel *ch = ep->ch;
  if (status != RPC_STATUS_UNAVAILABLE) {
    ep->unavail = 0;
    if (!ep->ejected) ep->ejections = 0;
    return;
  }
  if (ch->opts.eject_failures < 0 || ep->ejected || ++ep->unavail < ch->opts.eject_failures)
    return;
  uint64_t ms = (uint64_t)ch->opts.eject_ms;
  for (unsigned i = 0; i < ep->ejections && ms < RPC_MAX_EJECT_MS; i++) ms *= 2;
  if (ms > RPC_MAX_EJECT_MS) ms = RPC_MAX_EJECT_MS;
  if (rpc__timer_arm(ch->w, &ep->eject, gaio_now() + ms * 1000000u) < 0) return; /* stays in */
  ep->ejected = 1;
  ep->unavail = 0;
  ep->ejections++;
  rpc__count(&ch->stats.ejections, 1);
}

/* The ejection time is over: PING the endpoint; its PONG brings it back (ep_probed). Without a
 * ready connection, it comes back at once: connecting again is its probe. Re-armed, so that an
 * unanswered PING is sent again. */
static void ep_eject_over(endpoint *ep) {
  rpc_channel *ch = ep->ch;
  cconn *c = ep->conn;
  if (ep->removed || !ep->ejected) return;
  if (ep->state != EP_READY || !c || c->freed || c->draining) {
    ep->ejected = 0;
    ep->probe = 0;
    return;
  }
  rpc_frame f = {0};
  f.type = RPC_TYPE_PING;
  f.request_id = ep->probe = ++c->ping_token;
  if (rpc__timer_arm(ch->w, &ep->eject, gaio_now() + (uint64_t)ch->opts.eject_ms * 1000000u) < 0) {
    ep->ejected = 0; /* no timer to try again: back in rather than out for good */
    ep->probe = 0;
  }
  send_frame(c, rpc__wbuf_frame(&f, NULL, 0));
}

static void ep_probed(endpoint *ep) {
  ep->ejected = 0;
  ep->probe = 0;
  rpc__timer_disarm(ep->ch->w, &ep->eject);
  flush_waiting(ep->ch);
}

/* ---- Retries ----------------------------------------------------------------------------- */

static void retry_arm(rpc_channel *ch, uint64_t at) {
  if (ch->retry_timer.armed && ch->retry_timer_at <= at) return;
  if (rpc__timer_arm(ch->w, &ch->retry_timer, at) == 0) ch->retry_timer_at = at;
}

/* An idempotent call failed UNAVAILABLE: retry it after a backoff if its deadline, its
 * attempts and the budget allow. Returns 1 (it is on the retry list) or 0 (complete it). */
static int retry_later(rpc_channel *ch, ccall *call) {
  if (!call->idempotent || ch->closing || call->attempts >= ch->retry.max_attempts) return 0;
  uint64_t now = gaio_now();
  uint64_t at = now + rpc__retry_delay_ns(call->attempts, rnd(ch));
  if (call->deadline && at >= call->deadline) return 0;
  if (!rpc__retry_withdraw(&ch->retry, now)) {
    rpc__count(&ch->stats.retries_refused, 1);
    return 0;
  }
  rpc__count(&ch->stats.retries, 1);
  if (call->conn) {
    rpc__idmap_del(&call->conn->calls, call->wnode.key);
    call->conn = NULL;
  }
  wq_unlink(ch, call);
  call->attempts++;
  call->retry_at = at;
  call->qnext = NULL;
  call->qprev = ch->rq_tail;
  if (ch->rq_tail) ch->rq_tail->qnext = call;
  else ch->rq_head = call;
  ch->rq_tail = call;
  call->queued = QUEUED_RETRY;
  retry_arm(ch, at);
  if (!ch->retry_timer.armed) { /* no timer: try at once rather than never */
    wq_unlink(ch, call);
    dispatch(ch, call);
  }
  return 1;
}

/* The retry timer: the calls due go out again; the timer is set for the next one. */
static void retry_due(rpc_channel *ch) {
  uint64_t now = gaio_now(), next = 0;
  for (ccall *call = ch->rq_head, *nx; call; call = nx) {
    nx = call->qnext;
    if (call->retry_at > now) {
      if (!next || call->retry_at < next) next = call->retry_at;
      continue;
    }
    wq_unlink(ch, call);
    dispatch(ch, call);
  }
  for (ccall *call = ch->rq_head; call; call = call->qnext) /* dispatch may have added some */
    if (!next || call->retry_at < next) next = call->retry_at;
  if (next) retry_arm(ch, next);
}

/* The timers of discovery, ejection and retries. */
static void on_timer2(rpc_channel *ch, rpc__timer *t, const gaio_result *r) {
  int fired = rpc__timer_fired(t, r) && !ch->closing;
  if (t->kind == TIMER_RESOLVE) {
    if (fired) resolve_tick(ch);
  } else if (t->kind == TIMER_EJECT) {
    if (fired) ep_eject_over(rpc__container_of(t, endpoint, eject));
  } else {
    assert(t->kind == TIMER_RETRY);
    if (fired) retry_due(ch);
  }
}

/* The balancer and the retry policy from the options. */
static int channel_policies(rpc_channel *ch) {
  const rpc_channel_options *o = &ch->opts;
  rpc__timer_init(&ch->retry_timer, TIMER_RETRY);
  int rc = rpc__balancer_init(&ch->lb, o->balancer, ch->rng);
  if (rc == 0)
    rc = rpc__retry_init(&ch->retry, o->idempotent_methods, o->idempotent_count,
                         o->retry_max_attempts, gaio_now());
  ch->opts.idempotent_methods = NULL; /* copied as ids */
  return rc;
}

/* ---- Public API: channel ----------------------------------------------------------------- */

/* A TLS endpoint: keep its host ("name" of "name:port", "::1" of "[::1]:port"). */
static int endpoint_host(endpoint *ep, const char *s, size_t len) {
  size_t hl = len;
  while (hl > 0 && s[hl - 1] != ':') hl--;
  if (hl == 0) return -EINVAL;
  hl--; /* the colon */
  if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
    s++;
    hl -= 2;
  }
  ep->tls = 1;
  ep->host = rpc__msgdup(s, hl);
  return ep->host ? 0 : -ENOMEM;
}

static int dns_target(rpc_channel *ch, const char *target);

static int parse_target(rpc_channel *ch, const char *target) {
  if (strncmp(target, RPC__DNS_SCHEME, strlen(RPC__DNS_SCHEME)) == 0) return dns_target(ch, target);
  unsigned n = 1;
  for (const char *p = target; *p; p++) n += *p == ',';
  if (n > RPC_MAX_ENDPOINTS) return -EINVAL;
  ch->eps = gaio__calloc(n, sizeof *ch->eps);
  if (!ch->eps) return -ENOMEM;
  const char *p = target;
  for (unsigned i = 0; i < n; i++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    endpoint *ep = &ch->eps[i];
    ep->tls = len > 4 && memcmp(p, "tls:", 4) == 0;
    if (ep->tls) {
      p += 4;
      len -= 4;
    }
    if (rpc__parse_addr(p, len, &ep->addr, &ep->addr_len) < 0) return -EINVAL;
    snprintf(ep->name, sizeof ep->name, "%.*s", (int)len, p);
    if (ep->addr.ss_family == AF_UNIX) {
      if (ep->tls) return -EINVAL; /* a unix socket stays plain */
    } else if (ep->tls || ch->opts.tls) {
      int rc = endpoint_host(ep, p, len);
      if (rc < 0) return rc;
    }
    ep->ch = ch;
    ep->weight = 1;
    rpc__timer_init(&ep->backoff, TIMER_BACKOFF);
    rpc__timer_init(&ep->eject, TIMER_EJECT);
    ch->neps++;
    p = e ? e + 1 : p + len;
  }
  atomic_store_explicit(&ch->stats.endpoints, ch->neps, memory_order_relaxed);
  return 0;
}

static int check_options(rpc_channel_options *o) {
  if (o->max_body == 0) o->max_body = RPC_DEFAULT_MAX_BODY;
  if (o->connect_timeout_ms == 0) o->connect_timeout_ms = RPC_DEFAULT_CONNECT_TIMEOUT_MS;
  if (o->backoff_initial_ms == 0) o->backoff_initial_ms = RPC_DEFAULT_BACKOFF_INITIAL_MS;
  if (o->backoff_max_ms == 0) o->backoff_max_ms = RPC_DEFAULT_BACKOFF_MAX_MS;
  if (o->max_pending_calls == 0) o->max_pending_calls = RPC_DEFAULT_MAX_PENDING_CALLS;
  if (o->max_metadata_bytes == 0) o->max_metadata_bytes = RPC_DEFAULT_MAX_METADATA_BYTES;
  if (o->max_metadata_entries == 0) o->max_metadata_entries = RPC_DEFAULT_MAX_METADATA_ENTRIES;
  if (o->metadata_count > RPC_MAX_CHANNEL_METADATA || o->interceptor_count > RPC_MAX_INTERCEPTORS ||
      (o->metadata_count && !o->metadata) || (o->interceptor_count && !o->interceptors))
    return -EINVAL;
  if (o->resolve_interval_ms == 0) o->resolve_interval_ms = RPC_DEFAULT_RESOLVE_INTERVAL_MS;
  if (o->eject_failures == 0) o->eject_failures = RPC_DEFAULT_EJECT_FAILURES;
  if (o->eject_ms == 0) o->eject_ms = RPC_DEFAULT_EJECT_MS;
  if (o->resolve_interval_ms < 0 || o->eject_ms < 0 || o->eject_ms > RPC_MAX_EJECT_MS)
    return -EINVAL;
  if (o->max_body > RPC_MAX_BODY_HARD || o->default_timeout_ms < 0 || o->connect_timeout_ms < 0 ||
      o->keepalive_ms < 0 || o->log_level < 0 || o->log_level > RPC_LOG_DEBUG ||
      o->backoff_initial_ms < 0 || o->backoff_max_ms < o->backoff_initial_ms)
    return -EINVAL;
  return 0;
}

/* The channel's headers, encoded once (every call copies the block), and its interceptors. The
 * options' pointers are not kept. Returns 0, -EINVAL (a bad header), -ENOMEM. */
static int copy_call_defaults(rpc_channel *ch) {
  const rpc_channel_options *o = &ch->opts;
  for (size_t i = 0; i < o->interceptor_count; i++) ch->ics[ch->nics++] = o->interceptors[i];
  ch->opts.interceptors = NULL;
  size_t n = o->metadata_count;
  const rpc_md *e = o->metadata;
  ch->opts.metadata = NULL;
  if (n == 0) return 0;
  size_t size = rpc_metadata_size(e, n);
  if (size == 0) return -EINVAL;
  if ((ch->md_block = gaio__malloc(size)) == NULL) return -ENOMEM;
  long w = rpc_metadata_encode(e, n, ch->md_block, size);
  assert(w == (long)size);
  (void)w;
  ch->md_len = size - RPC_METADATA_PREFIX;
  memmove(ch->md_block, ch->md_block + RPC_METADATA_PREFIX, ch->md_len); /* entries only */
  ch->md_count = (unsigned)n;
  return 0;
}

/* The TLS settings, when an endpoint is TLS (the options are not kept). */
static int tls_settings(rpc_channel *ch) {
  const rpc_tls_client_options *o = ch->opts.tls;
  ch->opts.tls = NULL;
  if (ch->dns && o) ch->dns_tls = o; /* a flag from here on: the options are not kept */
  if (ch->dns && o) return rpc__tls_client_ctx(&ch->tls, o);
  for (unsigned i = 0; i < ch->neps; i++)
    if (ch->eps[i].tls) return rpc__tls_client_ctx(&ch->tls, o);
  return 0;
}

static void chan_free(rpc_channel *ch) {
  struct stub *st = ch->stubs;
  while (st) {
    struct stub *next = st->next;
    free(st);
    st = next;
  }
  rpc__inbox_destroy(&ch->inbox); /* first: it waits for posters still using the watcher */
  if (ch->w) gaio_watcher_destroy(ch->w);
  free(ch->md_block);
  rpc__idmap_free(&ch->calls);
  pthread_mutex_destroy(&ch->stub_mu);
  for (unsigned i = 0; ch->eps && i < ch->neps; i++) free(ch->eps[i].host);
  pthread_mutex_destroy(&ch->stats_mu);
  free(ch->eps);
  rpc__dns_free(ch->dns);
  rpc__tls_ctx_free(ch->tls);
  free(ch);
}

static int channel_policies(rpc_channel *ch);

int rpc_channel_create(rpc_channel **out, const char *target, const rpc_channel_options *opts) {
  *out = NULL;
  if (!target) return -EINVAL;
  rpc_channel *ch = gaio__calloc(1, sizeof *ch);
  if (!ch) return -ENOMEM;
  if (opts) ch->opts = *opts;
  pthread_mutex_init(&ch->stub_mu, NULL);
  pthread_mutex_init(&ch->stats_mu, NULL);
  atomic_init(&ch->next_id, 1);
  ch->close_item.kind = ITEM_CLOSE;
  ch->rng = gaio_now() ^ (uint64_t)(uintptr_t)ch ^ 0x9E3779B97F4A7C15ull;
  int rc = check_options(&ch->opts);
  rpc__logger_init(&ch->log, ch->opts.log, ch->opts.log_arg, ch->opts.log_level);
  if (rc == 0) rc = channel_policies(ch);
  if (rc == 0) rc = copy_call_defaults(ch);
  if (rc == 0) rc = parse_target(ch, target);
  if (rc == 0) rc = tls_settings(ch);
  gaio_options go = {0};
  go.backend = ch->opts.backend;
  go.one_thread = 1; /* only chan_main() enters the loop, until -ESHUTDOWN */
  /* A connection takes calls while under RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN, so its queue
   * holds at most that, one request of the largest size, and a CANCEL per call and a PING: never
   * the -ENOBUFS of a full gaio write queue, which would fail the connection. */
  go.max_write_pending = RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN + RPC_FRAME_HEADER_SIZE +
                         ch->opts.max_body +
                         (size_t)RPC_FRAME_HEADER_SIZE * ((size_t)ch->opts.max_pending_calls + 1);
  if (rc == 0) rc = gaio_watcher_create(&ch->w, &go);
  rpc__inbox_init(&ch->inbox, ch->w); /* without a watcher, it is only destroyed */
  if (rc == 0) rc = -pthread_create(&ch->th, NULL, chan_main, ch);
  if (rc < 0) {
    chan_free(ch);
    return rc;
  }
  ch->started = 1;
  *out = ch;
  return 0;
}

int rpc_channel_destroy(rpc_channel *ch) {
  if (!ch) return 0;
  if (pthread_equal(pthread_self(), ch->th)) return -EDEADLK; /* joining itself would hang */
  rpc__inbox_post(&ch->inbox, &ch->close_item);
  pthread_join(ch->th, NULL);
  chan_free(ch);
  return 0;
}

/* ---- Headers ------------------------------------------------------------------------------ */

static void headers_init(rpc_headers *h) {
  h->buf = h->local;
  h->len = 0;
  h->cap = sizeof h->local;
  h->count = 0;
}

static void headers_free(rpc_headers *h) {
  if (h->buf != h->local) free(h->buf);
}

/* Room for n more bytes. Returns 0 or -ENOMEM. */
static int headers_room(rpc_headers *h, size_t n) {
  if (h->cap - h->len >= n) return 0;
  size_t cap = h->cap * 2;
  while (cap - h->len < n) cap *= 2;
  uint8_t *p = h->buf == h->local ? gaio__malloc(cap) : gaio__realloc(h->buf, cap);
  if (!p) return -ENOMEM;
  if (h->buf == h->local) memcpy(p, h->local, h->len);
  h->buf = p;
  h->cap = cap;
  return 0;
}

/* Append already encoded entries (the channel's block). */
static int headers_append(rpc_headers *h, const uint8_t *entries, size_t len, unsigned count) {
  if (h->len + len > RPC_DEFAULT_MAX_METADATA_BYTES ||
      h->count + count > RPC_DEFAULT_MAX_METADATA_ENTRIES)
    return -EMSGSIZE;
  if (headers_room(h, len) < 0) return -ENOMEM;
  if (len > 0) memcpy(h->buf + h->len, entries, len); /* entries is NULL without channel headers */
  h->len += len;
  h->count += count;
  return 0;
}

int rpc_headers_add(rpc_headers *h, const char *key, const void *value, size_t len) {
  if (!h) return -EINVAL;
  rpc_md e = {key, key ? strlen(key) : 0, value, len};
  size_t size = rpc_metadata_size(&e, 1);
  if (size == 0) return -EINVAL;
  size -= RPC_METADATA_PREFIX;
  if (h->len + size > RPC_DEFAULT_MAX_METADATA_BYTES || h->count == RPC_DEFAULT_MAX_METADATA_ENTRIES)
    return -EMSGSIZE;
  if (headers_room(h, size) < 0) return -ENOMEM;
  long n = rpc_metadata_encode_entry(&e, h->buf + h->len, h->cap - h->len);
  assert(n == (long)size);
  h->len += (size_t)n;
  h->count++;
  return 0;
}

/* The call's headers: the channel's, the call's own, then what each interceptor adds. Returns
 * 0 or a negative errno (an interceptor's refusal among them). */
static int build_headers(rpc_channel *ch, ccall *call, const rpc_call_options *o, rpc_headers *h) {
  int rc = headers_append(h, ch->md_block, ch->md_len, ch->md_count);
  for (size_t i = 0; rc == 0 && i < o->metadata_count; i++) {
    const rpc_md *e = &o->metadata[i];
    char key[RPC_METADATA_MAX_KEY + 1];
    if (!e->key || e->key_len == 0 || e->key_len > RPC_METADATA_MAX_KEY) return -EINVAL;
    memcpy(key, e->key, e->key_len); /* rpc_md keys need no NUL */
    key[e->key_len] = 0;
    rc = strlen(key) == e->key_len ? rpc_headers_add(h, key, e->value, e->value_len) : -EINVAL;
  }
  rpc_client_call info = {call->method_id, call->id, o};
  for (unsigned i = 0; rc == 0 && i < ch->nics; i++) {
    call->ic_ran = i + 1;
    if (ch->ics[i].before) rc = ch->ics[i].before(ch->ics[i].arg, &info, h);
    if (rc > 0) rc = -EINVAL; /* not a negative errno: a broken interceptor */
    if (rc < 0) call->ic_ran = i; /* a refusal gets no after() */
  }
  return rc;
}

/* A call's request: a message to pack (msg), or bytes packed already (msg NULL). */
typedef struct req_body {
  const ProtobufCMessage *msg;
  const void *bytes;
  size_t len;
} req_body;

/* The REQUEST body: the headers' block (if any), then the request. */
static int pack_request(ccall *call, const rpc_headers *h, const req_body *req, size_t max_body) {
  size_t len = req->len;
  size_t md = h->count ? RPC_METADATA_PREFIX + h->len : 0;
  if (len > max_body || md > max_body - len) return -EMSGSIZE;
  call->req = rpc__wbuf_new(md + len);
  if (!call->req) return -ENOMEM;
  uint8_t *p = call->req->data + RPC_FRAME_HEADER_SIZE;
  if (md) {
    uint32_t n = (uint32_t)h->len;
    p[0] = (uint8_t)n;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 24);
    memcpy(p + RPC_METADATA_PREFIX, h->buf, h->len);
    call->md_flag = RPC_FLAG_METADATA;
  }
  if (req->msg) protobuf_c_message_pack(req->msg, p + md);
  else if (len) memcpy(p + md, req->bytes, len);
  return 0;
}

/* A new call from proto and the options, with its request packed. Returns 0 or a negative
 * errno (nothing to undo but the pending count, which the caller owns). */
static int make_call(rpc_channel *ch, const rpc_method *m, req_body *req,
                     const rpc_call_options *o, ccall *call) {
  call->item.kind = ITEM_SUBMIT;
  call->id = atomic_fetch_add(&ch->next_id, 1);
  call->method_id = m->id;
  call->idempotent = rpc__retry_idempotent(&ch->retry, m->id) && ch->retry.max_attempts > 1;
  call->attempts = 1;
  call->out = m->output;
  call->submitted = gaio_now();
  int ms = o->timeout_ms == 0 ? ch->opts.default_timeout_ms : o->timeout_ms;
  call->deadline = ms > 0 ? call->submitted + (uint64_t)ms * 1000000u : 0;
  call->wait_for_ready = o->wait_for_ready > 0 ? 1 : o->wait_for_ready < 0 ? 0 : ch->opts.wait_for_ready;
  if (req->msg) req->len = protobuf_c_message_get_packed_size(req->msg);
  rpc_headers h;
  headers_init(&h);
  int rc = 0;
  /* No headers and no interceptors: no allocation and no extra pass. */
  if (ch->md_count || o->metadata_count || ch->nics) rc = build_headers(ch, call, o, &h);
  if (rc == 0) rc = pack_request(call, &h, req, ch->opts.max_body);
  headers_free(&h);
  return rc;
}

/* Pack the request and post the call. A message request needs m->output, to unpack the reply
 * with; a bytes request with m->output NULL gets the reply's bytes (call->raw). Any thread. */
static int submit(rpc_channel *ch, const rpc_method *m, req_body req,
                  const rpc_call_options *opts, ccall *proto, uint64_t *call_id) {
  static const rpc_call_options none;
  const rpc_call_options *o = opts ? opts : &none;
  if (!ch || !m || (o->metadata_count && !o->metadata)) return -EINVAL;
  if (req.msg ? !m->output || (m->input && req.msg->descriptor != m->input)
              : !req.bytes && req.len)
    return -EINVAL;
  if (atomic_fetch_add(&ch->pending_calls, 1) >= ch->opts.max_pending_calls) {
    atomic_fetch_sub(&ch->pending_calls, 1);
    return -ENOBUFS;
  }
  ccall *call = gaio__malloc(sizeof *call);
  int rc = call ? 0 : -ENOMEM;
  if (call) {
    *call = *proto;
    rc = make_call(ch, m, &req, o, call);
  }
  uint64_t id = call ? call->id : 0;
  if (rc == 0 && rpc__inbox_post(&ch->inbox, &call->item) < 0) rc = -ESHUTDOWN;
  if (rc < 0) {
    if (call) free(call->req);
    free(call);
    atomic_fetch_sub(&ch->pending_calls, 1);
    return rc;
  }
  if (call_id) *call_id = id; /* the call may be complete and freed already: use the copy */
  return 0;
}

int rpc_channel_submit(rpc_channel *ch, const rpc_method *m, const ProtobufCMessage *req,
                       int timeout_ms, rpc_cq *cq, void *ctx, uint64_t *call_id) {
  rpc_call_options o = {0};
  o.timeout_ms = timeout_ms;
  return rpc_channel_submit_opts(ch, m, req, &o, cq, ctx, call_id);
}

int rpc_channel_submit_opts(rpc_channel *ch, const rpc_method *m, const ProtobufCMessage *req,
                            const rpc_call_options *opts, rpc_cq *cq, void *ctx,
                            uint64_t *call_id) {
  if (!cq) return -EINVAL;
  if (atomic_fetch_add(&cq->outstanding, 1) >= RPC_CQ_MAX_OUTSTANDING) {
    atomic_fetch_sub(&cq->outstanding, 1);
    return -ENOBUFS;
  }
  ccall proto = {0};
  proto.mode = MODE_CQ;
  proto.cq = cq;
  proto.ctx = ctx;
  if (!req) return -EINVAL;
  int rc = submit(ch, m, (req_body){req, NULL, 0}, opts, &proto, call_id);
  if (rc < 0) atomic_fetch_sub(&cq->outstanding, 1);
  return rc;
}

static int post_id(rpc_channel *ch, int kind, uint64_t id) {
  struct id_item *ii = gaio__malloc(sizeof *ii);
  if (!ii) return -ENOMEM;
  ii->item.kind = kind;
  ii->id = id;
  if (rpc__inbox_post(&ch->inbox, &ii->item) < 0) {
    free(ii);
    return -ESHUTDOWN;
  }
  return 0;
}

int rpc_channel_cancel(rpc_channel *ch, uint64_t call_id) {
  return post_id(ch, ITEM_CANCEL, call_id);
}

int rpc__channel_set_next_wire_id(rpc_channel *ch, uint32_t id) {
  if (!ch || id == 0) return -EINVAL;
  return post_id(ch, ITEM_NEXT_WIRE, id);
}

int rpc_channel_call(rpc_channel *ch, const rpc_method *m, const ProtobufCMessage *req,
                     int timeout_ms, ProtobufCMessage **reply, char *msg, size_t msg_len) {
  rpc_call_options o = {0};
  o.timeout_ms = timeout_ms;
  return rpc_channel_call_opts(ch, m, req, &o, reply, msg, msg_len, NULL);
}

void rpc_metadata_free(rpc_metadata *md) {
  if (!md) return;
  free((void *)md->data);
  *md = (rpc_metadata){NULL, 0, 0};
}

/* Submit a call and wait for it. Returns its status with the call in *done (the caller takes
 * what it needs and frees it with call_free()), or the negative errno of submit (*done NULL).
 * The message and trailers are handed over as rpc_channel_call_opts() documents. */
static int call_sync(rpc_channel *ch, const rpc_method *m, req_body req,
                     const rpc_call_options *opts, char *msg, size_t msg_len,
                     rpc_metadata *trailers, ccall **done) {
  *done = NULL;
  if (trailers) *trailers = (rpc_metadata){NULL, 0, 0};
  if (ch && pthread_equal(pthread_self(), ch->th)) return -EDEADLK;
  sync_wait sw;
  memset(&sw, 0, sizeof sw);
  pthread_mutex_init(&sw.mu, NULL);
  pthread_cond_init(&sw.cv, NULL);
  ccall proto = {0};
  proto.mode = MODE_SYNC;
  proto.sync = &sw;
  int rc = submit(ch, m, req, opts, &proto, NULL);
  if (rc == 0) {
    pthread_mutex_lock(&sw.mu);
    while (!sw.done) pthread_cond_wait(&sw.cv, &sw.mu);
    pthread_mutex_unlock(&sw.mu);
    ccall *call = sw.call;
    rc = call->status;
    if (msg && msg_len) {
      const char *s = call->msg ? call->msg : "";
      size_t n = strlen(s);
      if (n >= msg_len) n = msg_len - 1;
      memcpy(msg, s, n);
      msg[n] = 0;
    }
    if (trailers) { /* the copy becomes the caller's */
      *trailers = call->trailers;
      call->trailers = (rpc_metadata){NULL, 0, 0};
    }
    *done = call;
  }
  pthread_cond_destroy(&sw.cv);
  pthread_mutex_destroy(&sw.mu);
  return rc;
}

int rpc_channel_call_opts(rpc_channel *ch, const rpc_method *m, const ProtobufCMessage *req,
                          const rpc_call_options *opts, ProtobufCMessage **reply, char *msg,
                          size_t msg_len, rpc_metadata *trailers) {
  if (trailers) *trailers = (rpc_metadata){NULL, 0, 0};
  if (!reply) return -EINVAL;
  *reply = NULL;
  if (!req) return -EINVAL;
  ccall *call;
  int rc = call_sync(ch, m, (req_body){req, NULL, 0}, opts, msg, msg_len, trailers, &call);
  if (rc == RPC_STATUS_OK) {
    *reply = call->reply;
    call->reply = NULL;
  }
  if (call) call_free(call);
  return rc;
}

int rpc_channel_call_bytes(rpc_channel *ch, const char *full_method, const void *req,
                           size_t req_len, const rpc_call_options *opts, uint8_t **reply,
                           size_t *reply_len, char *msg, size_t msg_len, rpc_metadata *trailers) {
  if (trailers) *trailers = (rpc_metadata){NULL, 0, 0};
  if (!reply || !reply_len) return -EINVAL;
  *reply = NULL;
  *reply_len = 0;
  if (!full_method || !strchr(full_method, '/')) return -EINVAL;
  rpc_method m;
  rpc_method_init(&m, full_method, NULL, NULL);
  ccall *call;
  int rc = call_sync(ch, &m, (req_body){NULL, req, req_len}, opts, msg, msg_len, trailers, &call);
  if (rc == RPC_STATUS_OK) {
    *reply = call->raw;
    *reply_len = call->raw_len;
    call->raw = NULL;
  }
  if (call) call_free(call);
  return rc;
}

/* ---- Stubs ------------------------------------------------------------------------------- */

/* The options of the next stub call on this thread (rpc_stub_options): a deep copy. */
static _Thread_local struct {
  int set;
  rpc_call_options o;
  rpc_md md[RPC_DEFAULT_MAX_METADATA_ENTRIES];
  uint8_t *mem; /* the keys and values, one malloc */
} tls_opts;

static void stub_options_clear(void) {
  free(tls_opts.mem);
  memset(&tls_opts, 0, sizeof tls_opts);
}

void rpc_stub_options(const rpc_call_options *opts) {
  stub_options_clear();
  if (!opts) return;
  size_t n = opts->metadata_count < RPC_DEFAULT_MAX_METADATA_ENTRIES
                 ? opts->metadata_count : RPC_DEFAULT_MAX_METADATA_ENTRIES;
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += opts->metadata[i].key_len + opts->metadata[i].value_len;
  if (bytes && (tls_opts.mem = gaio__malloc(bytes)) == NULL) {
    tls_opts.set = -1; /* the next stub call fails RESOURCE_EXHAUSTED rather than go without */
    return;
  }
  uint8_t *p = tls_opts.mem;
  for (size_t i = 0; i < n; i++) {
    const rpc_md *e = &opts->metadata[i];
    tls_opts.md[i] = *e;
    tls_opts.md[i].key = memcpy(p, e->key, e->key_len);
    p += e->key_len;
    tls_opts.md[i].value = e->value_len ? memcpy(p, e->value, e->value_len) : NULL;
    p += e->value_len;
  }
  tls_opts.o = *opts;
  tls_opts.o.metadata = tls_opts.md;
  tls_opts.o.metadata_count = n;
  tls_opts.set = 1;
}

static void stub_invoke(ProtobufCService *svc, unsigned index, const ProtobufCMessage *input,
                        ProtobufCClosure closure, void *closure_data) {
  struct stub *st = (struct stub *)svc;
  int rc = -EINVAL;
  if (index < svc->descriptor->n_methods) {
    rpc_method m = {st->ids[index], svc->descriptor->methods[index].input,
                    svc->descriptor->methods[index].output};
    ccall proto = {0};
    proto.mode = MODE_CLOSURE;
    proto.closure = closure;
    proto.closure_data = closure_data;
    const rpc_call_options *o = tls_opts.set ? &tls_opts.o : NULL;
    rc = tls_opts.set < 0 ? -ENOMEM
         : !input         ? -EINVAL
                          : submit(st->ch, &m, (req_body){input, NULL, 0}, o, &proto, NULL);
  }
  stub_options_clear(); /* they were for this call */
  if (rc < 0) {
    /* Not submitted: the closure still runs exactly once, here. */
    tls_status = rc == -ESHUTDOWN ? RPC_STATUS_UNAVAILABLE
                 : rc == -EMSGSIZE ? RPC_STATUS_RESOURCE_EXHAUSTED
                 : rc == -ENOMEM   ? RPC_STATUS_RESOURCE_EXHAUSTED
                 : rc == -ENOBUFS  ? RPC_STATUS_RESOURCE_EXHAUSTED
                                   : RPC_STATUS_INVALID_ARGUMENT;
    tls_msg = "call not submitted";
    closure(NULL, closure_data);
    tls_status = 0;
    tls_msg = NULL;
  }
}

static void stub_destroy(ProtobufCService *svc) { (void)svc; /* the channel frees it */ }

ProtobufCService *rpc_channel_service(rpc_channel *ch, const ProtobufCServiceDescriptor *desc) {
  if (!ch || !desc) return NULL;
  struct stub *st = gaio__calloc(1, sizeof *st + desc->n_methods * sizeof(uint32_t));
  if (!st) return NULL;
  st->base.descriptor = desc;
  st->base.invoke = stub_invoke;
  st->base.destroy = stub_destroy;
  st->ch = ch;
  for (unsigned i = 0; i < desc->n_methods; i++)
    st->ids[i] = desc->methods[i].name ? rpc__method_id_of(desc, i) : 0;
  pthread_mutex_lock(&ch->stub_mu);
  st->next = ch->stubs;
  ch->stubs = st;
  pthread_mutex_unlock(&ch->stub_mu);
  return &st->base;
}

const rpc_metadata *rpc_last_trailers(void) {
  static const rpc_metadata none;
  return tls_trailers ? tls_trailers : &none;
}

int rpc_last_status(const char **message) {
  if (message) *message = tls_msg ? tls_msg : "";
  return tls_status;
}

/* ---- Completion queues ------------------------------------------------------------------- */

int rpc_cq_create(rpc_cq **out) {
  *out = NULL;
  rpc_cq *cq = gaio__calloc(1, sizeof *cq);
  if (!cq) return -ENOMEM;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&cq->mu, NULL);
  pthread_cond_init(&cq->cv, &ca);
  pthread_condattr_destroy(&ca);
  *out = cq;
  return 0;
}

static void free_list(ccall *c) {
  while (c) {
    ccall *next = c->qnext;
    call_free(c);
    c = next;
  }
}

void rpc_cq_destroy(rpc_cq *cq) {
  if (!cq) return;
  free_list(cq->batch);
  free_list(cq->head);
  pthread_cond_destroy(&cq->cv);
  pthread_mutex_destroy(&cq->mu);
  free(cq);
}

int rpc_cq_wait(rpc_cq *cq, rpc_completion *out, int max, int timeout_ms) {
  if (!cq || !out || max <= 0) return -EINVAL;
  free_list(cq->batch);
  cq->batch = NULL;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  if (timeout_ms > 0) {
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&cq->mu);
  while (!cq->head && timeout_ms != 0) {
    if (timeout_ms < 0) pthread_cond_wait(&cq->cv, &cq->mu);
    else if (pthread_cond_timedwait(&cq->cv, &cq->mu, &until) == ETIMEDOUT) break;
  }
  int n = 0;
  ccall *taken = cq->head, *last = NULL;
  while (cq->head && n < max) {
    last = cq->head;
    cq->head = last->qnext;
    n++;
  }
  if (!cq->head) cq->tail = NULL;
  if (last) last->qnext = NULL;
  pthread_mutex_unlock(&cq->mu);
  atomic_fetch_sub(&cq->outstanding, (unsigned)n);
  cq->batch = n ? taken : NULL;
  ccall *c = taken;
  for (int i = 0; i < n; i++, c = c->qnext) {
    out[i].ctx = c->ctx;
    out[i].call_id = c->id;
    out[i].status = c->status;
    out[i].message = c->msg ? c->msg : "";
    out[i].reply = c->reply;
    out[i].trailers = c->trailers; /* freed with the batch */
    c->reply = NULL;
  }
  return n;
}

/* ---- Counters ---------------------------------------------------------------------------- */

int rpc_channel_get_stats(rpc_channel *ch, rpc_channel_stats *out) {
  if (!ch || !out) return -EINVAL;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&ch->stats_mu);
  unsigned slots = ch->neps;
  pthread_mutex_unlock(&ch->stats_mu);
  out->endpoints = gaio__calloc(slots ? slots : 1, sizeof *out->endpoints);
  if (!out->endpoints) return -ENOMEM;
  uint64_t now = gaio_now();
  pthread_mutex_lock(&ch->stats_mu);
  /* A dns: target's slots may have grown since: those are left to the next read. */
  for (unsigned i = 0; i < ch->neps && i < slots; i++) {
    const endpoint *ep = &ch->eps[i];
    if (ep->removed) continue;
    rpc_endpoint_stats *es = &out->endpoints[out->nendpoints++];
    memcpy(es->address, ep->name, sizeof es->address);
    es->state = atomic_load_explicit(&((endpoint *)ep)->state_pub, memory_order_relaxed);
    es->connects = rpc__get(&ep->connects);
    es->connect_failures = rpc__get(&ep->connect_failures);
    uint64_t until = rpc__get(&ep->backoff_until);
    if (es->state == RPC_ENDPOINT_BACKOFF && until > now)
      es->backoff_remaining_ms = (until - now + 999999u) / 1000000u;
    for (unsigned k = 0; k < RPC_STATUS_CODES; k++) es->calls[k] = rpc__get(&ep->calls[k]);
    rpc__hist_add_to(&es->latency, &ep->latency);
    memcpy(es->last_error, ep->last_error, sizeof es->last_error);
  }
  pthread_mutex_unlock(&ch->stats_mu);
  for (unsigned k = 0; k < RPC_STATUS_CODES; k++) out->unsent[k] = rpc__get(&ch->unsent[k]);
  out->resolutions = rpc__get(&ch->stats.resolutions);
  out->resolve_failures = rpc__get(&ch->stats.resolve_failures);
  out->retries = rpc__get(&ch->stats.retries);
  out->retries_refused = rpc__get(&ch->stats.retries_refused);
  out->ejections = rpc__get(&ch->stats.ejections);
  return 0;
}

void rpc_channel_stats_free(rpc_channel_stats *st) {
  if (!st) return;
  free(st->endpoints);
  memset(st, 0, sizeof *st);
}
