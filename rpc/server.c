/* The RPC server: worker threads with one gaio watcher each. Worker 0 also owns the listeners
 * and hands accepted connections to the workers round-robin through their inboxes. Every
 * connection, and every call state change, is handled on its worker's thread; handlers that
 * reply from another thread post the call back to that worker's inbox. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"
#include "rpc/server_internal.h"
#include "rpc/transport.h"

#define ACCEPTS_QUEUED 4         /* accepts kept pending per listener */
#define RESULTS_PER_WAIT 128     /* gaio results taken per gaio_wait() */
#define OUT_INITIAL 4096         /* first size of a connection's output buffer */
#define OUT_COALESCE_MAX 4096    /* replies up to this size are copied into the output buffer;
                                    larger ones are written from their own buffer */
#define OUT_KEEP_MAX (64u << 10) /* a written output buffer up to this size is kept for reuse */
#define CONN_MAX_WRITES 64       /* gaio writes of one connection at a time: beyond, even large
                                    replies are copied into the output buffer. A connection thus
                                    holds at most CONN_MAX_WRITES + 4 gaio requests (with its
                                    read, two output buffers and half-close), so a worker's
                                    max_requests (2^20) outlasts the fd table, and no connection
                                    can use up the requests of the others */
#define ACCEPT_RETRY_MS 100      /* pause of a listener after a failed accept (EMFILE, ...) */
#define CALL_ARENA 256           /* bytes in each call for its unpacked input; beyond: spill */
#define CALL_SPILL_KEEP_MAX (32u << 10) /* a call's spill buffer (for inputs beyond CALL_ARENA,
                                    such as large bytes fields) up to this size is kept with the
                                    call for reuse: a worker's cache then holds at most
                                    CALL_CACHE_MAX of them (8 MiB), and only after that many
                                    such calls were in flight at once; larger pieces: malloc */
#define CALL_CACHE_MAX 256       /* finished call structs a worker keeps for the next calls */

/* ---- Call state ----------------------------------------------------------------------------
 * A call's `state` moves INVOKING -> WAITING (invoke returned without a reply) or to REPLIED
 * (the closure ran). Whoever moves it second finishes the call: the worker after invoke when
 * the closure ran inside it, or the closure (by posting the call to the worker) when it ran
 * later. The `done` flag turns a second closure call into a no-op. */
enum { CALL_INVOKING = 0, CALL_WAITING = 1, CALL_REPLIED = 2 };

/* Inbox item kinds of a worker. */
enum { ITEM_CALL = 1, ITEM_CONN = 2, ITEM_SHUTDOWN = 3 };
/* Timer kinds. */
enum { TIMER_IDLE = 2, TIMER_DRAIN = 3 };

typedef struct conn conn;
typedef struct worker worker;

#define LAT_BATCH 256u /* call latencies kept for one clock read at the end of a batch */

struct rpc_call {
  rpc__idnode node; /* key = request_id, in conn->calls while in flight (not yet answered) */
  rpc_call *lprev, *lnext; /* in conn->live until finished or orphaned */
  int in_map;
  rpc__item item;   /* posted to the worker when the reply comes from another thread */
  const ProtobufCAllocator *ext; /* the server's allocator beyond the arena (NULL: malloc) */
  int alloc_failed; /* an allocation for the input failed: unpacking it was out of memory */
  rpc__idnode dnode; /* key = the call's serial in wk->deadlines while its deadline timer is set:
                        the timer's ctx is RPC__TIMER_ID(serial), found there when it fires */
  worker *wk;
  conn *cn;         /* NULL once the connection is gone */
  uint32_t request_id;
  uint64_t deadline; /* 0: none */
  const rpc__srv_method *method;
  ProtobufCMessage *input;
  atomic_int state;
  atomic_int cancelled;
  atomic_flag done;
  int answered; /* worker only: a response (or its suppression) was decided */
  int early_status; /* worker only: what answered it early (deadline, CANCEL, connection gone) */
  size_t early_bytes; /* worker only: body bytes of that early RESPONSE */
  uint64_t arrived;   /* gaio_now() when the read that brought the REQUEST ended */
  size_t req_bytes;   /* body bytes of the REQUEST */
  unsigned ic_ran;    /* interceptors whose before() ran: their after() runs at the end */
  rpc_metadata md;    /* the request's headers, a copy in md_mem (NULL when none) */
  uint8_t *md_mem;
  /* Written by the completing thread before state becomes REPLIED. */
  int status;
  char *msg;
  rpc__wbuf *reply; /* a whole RESPONSE frame but for the request id */
  uint8_t *tr;      /* trailers: encoded entries (no prefix), tr_len bytes, tr_count of them */
  size_t tr_len, tr_cap;
  unsigned tr_count;
  size_t packed;    /* the reply went straight into the output buffer (pack_direct): 1 + its
                       body bytes; 0 otherwise */
  /* The input is unpacked into arena while it fits (most requests: no malloc, no free), then
   * into spill (kept with the call up to CALL_SPILL_KEEP_MAX, so that large inputs need no
   * malloc either once the cache is warm), the rest with malloc; alloc says which. Fields from
   * here on survive reuse. */
  ProtobufCAllocator alloc;
  size_t arena_used;
  uint8_t *spill;
  size_t spill_used, spill_cap;
  _Alignas(max_align_t) unsigned char arena[CALL_ARENA];
};

struct conn {
  int kind;      /* RPC__CTX_CONN: the ctx of the connection's read */
  int shut_kind; /* RPC__CTX_SHUT: the ctx of its half-close */
  worker *wk;
  conn *prev, *next;
  conn *dirty_next; /* in wk->dirty while `dirty` */
  int fd;
  rpc__rbuf rb;
  rpc__idmap calls; /* calls in flight in the WIRE.md sense: not yet answered */
  rpc_call *live;   /* every call of this connection whose handler has not completed */
  unsigned ncalls;  /* length of live: what the limits count */
  unsigned pending; /* what keeps the struct alive: gaio requests not yet completed (the read,
                       the writes, the half-close), the dirty list and holds */
  unsigned writes;  /* gaio writes not yet completed */
  rpc__wbuf *out;   /* small frames not yet handed to gaio, coalesced into one write */
  unsigned out_busy;/* output buffers handed to gaio, not yet completed */
  size_t qbytes;    /* bytes queued for the peer: in `out` and in writes not yet completed */
  int reading;      /* a read is pending */
  int eof;          /* no more reading: the peer closed its side, or a read failed */
  int paused;       /* not parsing nor reading: qbytes reached max_write_bytes_per_conn */
  int dirty;        /* `out` waits for the end of the batch */
  int goaway;       /* GOAWAY sent: no new calls */
  int closing;      /* finishing: nothing more is sent; half-closed, reading until the FIN */
  int shut_done;    /* the half-close completed */
  int freed;        /* gaio_free() called */
  uint32_t last_id; /* highest request id accepted: the GOAWAY's id */
  int cause;        /* why it ends (enum rpc_close_cause), -1 until known: counted and logged
                       once, when the struct is freed */
  rpc_peer peer;    /* for rpc_call_peer() */
  rpc__tls *tls;    /* the TLS session; NULL: plain (transport.h) */
  size_t tls_counted; /* bytes of the session's queued records counted in qbytes */
  uint64_t last_active;
  rpc__timer idle;  /* the idle timeout; once closing, the linger */
};

struct conn_item {
  rpc__item item;
  int fd;
  int tls;
};

struct worker {
  rpc_server *srv;
  unsigned index;
  gaio_watcher *w;
  pthread_t th;
  int started;
  rpc__inbox inbox;
  rpc__idmap deadlines; /* calls with a deadline timer set, by serial */
  uint64_t serial;      /* the last serial given to a call's deadline */
  rpc__item shutdown_item;
  rpc__timer drain;
  conn *conns;       /* live connections (not yet freed) */
  conn *dirty;       /* connections whose output is written at the end of the batch */
  unsigned nconns;
  unsigned ncalls;   /* calls not yet finished, orphans included */
  unsigned accepts;  /* accepts pending on the listeners (worker 0) */
  uint64_t accept_resume_at; /* the earliest end of a listener's pause (worker 0); 0: none */
  rpc_call *cache;   /* finished calls kept for reuse (linked by lnext); worker thread only */
  unsigned ncached;
  int stopping;
  int drained;       /* the drain deadline passed */
  uint64_t drain_at;
  rpc__srv_counters *ct; /* this worker's counters (s->counters[index]) */
  int perr_kind;         /* the protocol error on_frame found in this parse; -1: none */
  /* Latencies of the calls finished in this batch, recorded with one clock read at its end
   * (lat_flush), just before their replies are written (flush_dirty). */
  struct {
    rpc__method_counters *mc;
    uint64_t arrived;
  } lat[LAT_BATCH];
  unsigned nlat;
};

/* ---- Output --------------------------------------------------------------------------------
 * Small frames (status answers, PONGs, GOAWAY, small replies) are appended to the connection's
 * output buffer and written with one gaio_write at the end of the batch, while no earlier
 * output buffer of the connection is still being written: one write per connection per batch,
 * and a peer that does not read gets its frames coalesced instead of one write each. Large
 * replies are written from their own buffer; over TLS they are encrypted at once into the
 * session's buffer of records, which leaves with the output buffer's records in the one write
 * of the batch. `qbytes` counts what is queued either way (over TLS, the ciphertext); at
 * max_write_bytes_per_conn the connection stops being read (conn_pause) until half of it is
 * written, so that a peer that does not read costs a bounded amount of memory and requests. */

static void conn_close(conn *c);
static void read_end(conn *c, int error);
static void conn_maybe_free(conn *c);
static void conn_resume(conn *c);
static void call_finish(rpc_call *call);

/* Closing a connection frees it once nothing is pending; a function that may close it and
 * still use it afterwards holds it for its duration. */
static void conn_hold(conn *c) { c->pending++; }

static void conn_release(conn *c) {
  assert(c->pending > 0);
  c->pending--;
  conn_maybe_free(c);
}

/* The reason c ends, if none is known yet: the first one wins (a protocol error's GOAWAY, then
 * the peer's FIN, is a protocol error). */
static void conn_cause(conn *c, int cause) {
  if (c->cause < 0) c->cause = cause;
}

/* The peer's address as text, for log lines. */
static const char *peer_text(const conn *c, char *buf, size_t n) {
  rpc__addr_text(&c->peer.addr, c->peer.addr_len, buf, n);
  return buf;
}

/* The counters of method m in this worker, or NULL with stats off. */
static rpc__method_counters *method_counters(worker *wk, const rpc__srv_method *m) {
  return wk->ct->methods ? &wk->ct->methods[m - wk->srv->methods] : NULL;
}

/* Record the latencies kept since the last flush, as of now (one clock read). */
static void lat_flush(worker *wk) {
  if (wk->nlat == 0) return;
  uint64_t now = gaio_now();
  for (unsigned i = 0; i < wk->nlat; i++)
    rpc__hist_record(&wk->lat[i].mc->latency, (now - wk->lat[i].arrived) / 1000u);
  wk->nlat = 0;
}

static void lat_keep(worker *wk, rpc__method_counters *mc, uint64_t arrived) {
  if (wk->nlat == LAT_BATCH) lat_flush(wk);
  wk->lat[wk->nlat].mc = mc;
  wk->lat[wk->nlat++].arrived = arrived;
}

static void conn_mark_dirty(conn *c) {
  if (c->dirty) return;
  c->dirty = 1;
  conn_hold(c); /* the dirty list holds c */
  c->dirty_next = c->wk->dirty;
  c->wk->dirty = c;
}

/* Room for n more bytes at the end of c's output buffer, or NULL (-ENOMEM). */
static uint8_t *out_room(conn *c, size_t n) {
  rpc__wbuf *b = c->out;
  size_t len = b ? b->len : 0, cap = b ? b->cap : 0;
  if (cap - len < n) {
    /* Doubling up to OUT_KEEP_MAX, then steps of it: the buffer of a peer that does not read
     * stays close to max_write_bytes_per_conn instead of twice that. */
    size_t ncap = cap ? cap : OUT_INITIAL;
    while (ncap - len < n) ncap += ncap < OUT_KEEP_MAX ? ncap : OUT_KEEP_MAX;
    rpc__wbuf *nb = gaio__realloc(b, sizeof *nb + ncap);
    if (!nb) return NULL;
    if (!b) {
      nb->kind = RPC__CTX_WRITE;
      nb->coalesced = 1;
      nb->conn = c;
      nb->len = 0;
    }
    nb->cap = ncap;
    c->out = b = nb;
  }
  conn_mark_dirty(c);
  return b->data + b->len;
}

/* Hand b to gaio as one write. Returns 0, or -1 after closing c (b is freed). */
static int write_raw(conn *c, rpc__wbuf *b) {
  b->conn = c;
  if (gaio_write(c->wk->w, c->fd, b->data, b->len, b) < 0) {
    free(b);
    conn_close(c);
    return -1;
  }
  c->pending++;
  c->writes++;
  return 0;
}

/* TLS: the records the session queued since the last count (replies, handshake messages),
 * counted in qbytes: what is queued is the ciphertext. */
static void tls_count(conn *c) {
  size_t q = rpc__tls_queued(c->tls);
  c->qbytes += q - c->tls_counted;
  c->tls_counted = q;
}

/* TLS: the frames of the output buffer into records (the buffer stays, empty, for the next
 * frames). Returns 0, or < 0 when the session failed or is out of memory. */
static int tls_push_out(conn *c) {
  if (!c->out || c->out->len == 0) return 0;
  int rc = rpc__tls_push(c->tls, c->out->data, c->out->len);
  c->qbytes -= c->out->len;
  c->out->len = 0;
  tls_count(c);
  return rc;
}

/* TLS: the records of the replies pushed so far and of the output buffer, in one write. */
static void tls_out_flush(conn *c) {
  rpc__wbuf *b = NULL;
  if (tls_push_out(c) < 0 || rpc__tls_seal(c->tls, &b) < 0) {
    conn_close(c);
    return;
  }
  c->qbytes = c->qbytes - c->tls_counted + (b ? b->len : 0); /* b: what was counted, and more */
  c->tls_counted = 0;
  if (!b) return;
  b->coalesced = 1;
  if (write_raw(c, b) == 0) c->out_busy++;
}

static void out_flush(conn *c) {
  rpc__wbuf *b = c->out;
  if (c->freed) return;
  if (c->tls) {
    tls_out_flush(c);
    return;
  }
  if (!b || b->len == 0) return;
  c->out = NULL;
  if (write_raw(c, b) == 0) c->out_busy++;
}

/* TLS: a large reply (b, consumed) is encrypted now, after the frames of the output buffer
 * (the order they were sent in), into records written at the end of the batch. */
static void tls_push(conn *c, rpc__wbuf *b) {
  int rc = tls_push_out(c);
  if (rc == 0) rc = rpc__tls_push(c->tls, b->data, b->len);
  free(b);
  if (rc < 0) {
    conn_close(c);
    return;
  }
  tls_count(c);
  conn_mark_dirty(c);
}

/* One frame into the output buffer. Nothing is sent once the connection is closing. Out of
 * memory closes the connection: its calls then fail UNAVAILABLE on the client instead of
 * waiting for an answer that was lost. */
static void send_frame(conn *c, const rpc_frame *f, const void *body, size_t len) {
  if (c->freed || c->closing) return;
  uint8_t *p = out_room(c, RPC_FRAME_HEADER_SIZE + len);
  if (!p) {
    conn_close(c);
    return;
  }
  rpc_frame h = *f;
  h.body_len = (uint32_t)len;
  rpc_frame_encode(&h, p);
  if (len) memcpy(p + RPC_FRAME_HEADER_SIZE, body, len);
  c->out->len += RPC_FRAME_HEADER_SIZE + len;
  c->qbytes += RPC_FRAME_HEADER_SIZE + len;
}

static void send_status(conn *c, uint32_t request_id, int status, const char *msg) {
  rpc_frame f = {0};
  f.type = RPC_TYPE_RESPONSE;
  f.status = (uint8_t)status;
  f.request_id = request_id;
  size_t len = msg ? strlen(msg) : 0;
  if (len > RPC_MAX_ERROR_MESSAGE) len = RPC_MAX_ERROR_MESSAGE;
  send_frame(c, &f, msg, len);
}

/* A successful RESPONSE whose body was packed into b by the closure (b is consumed). */
static void send_reply(conn *c, uint32_t request_id, rpc__wbuf *b) {
  rpc_frame f = {0};
  f.type = RPC_TYPE_RESPONSE;
  f.request_id = request_id;
  size_t body_len = b->len - RPC_FRAME_HEADER_SIZE;
  if (b->len <= OUT_COALESCE_MAX || c->writes >= CONN_MAX_WRITES || c->freed || c->closing) {
    send_frame(c, &f, b->data + RPC_FRAME_HEADER_SIZE, body_len);
    free(b);
    return;
  }
  f.body_len = (uint32_t)body_len;
  rpc_frame_encode(&f, b->data);
  if (c->tls) {
    tls_push(c, b);
    return;
  }
  c->qbytes += b->len;
  write_raw(c, b);
}

static void send_goaway(conn *c, const char *reason) {
  if (c->goaway) return;
  c->goaway = 1;
  if (!c->freed && !c->closing) rpc__count(&c->wk->ct->goaways, 1);
  rpc_frame f = {0};
  f.type = RPC_TYPE_GOAWAY;
  f.request_id = c->last_id;
  send_frame(c, &f, reason, reason ? strlen(reason) : 0);
}

/* End of a batch: write the output of every connection that has some and is not still
 * writing an earlier buffer (its completion marks it dirty again). */
static void flush_dirty(worker *wk) {
  while (wk->dirty) {
    conn *c = wk->dirty;
    wk->dirty = c->dirty_next;
    c->dirty = 0;
    if (c->out_busy == 0) out_flush(c);
    conn_release(c);
  }
}

/* ---- Connections ------------------------------------------------------------------------- */

static void conn_unlink(conn *c) {
  worker *wk = c->wk;
  if (c->prev) c->prev->next = c->next;
  else wk->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* ---- Call deadlines: one gaio timer per call with a deadline, its ctx the call's serial, so
 * that a timer that fires after the call is gone finds nothing. */

static int call_deadline_set(worker *wk, rpc_call *call) {
  call->dnode.key = ++wk->serial;
  if (rpc__idmap_put(&wk->deadlines, &call->dnode) == 0) {
    if (gaio_timer(wk->w, RPC__TIMER_ID(call->dnode.key), call->deadline) == 0) return 0;
    rpc__idmap_del(&wk->deadlines, call->dnode.key);
  }
  call->dnode.key = 0;
  return -ENOMEM;
}

static void call_deadline_clear(worker *wk, rpc_call *call) {
  if (!call->dnode.key) return;
  rpc__idmap_del(&wk->deadlines, call->dnode.key);
  /* Cancelled, its result (-ECANCELED) is ignored; fired already (-ENOENT), its result finds
   * no call. */
  gaio_timer_cancel(wk->w, RPC__TIMER_ID(call->dnode.key));
  call->dnode.key = 0;
}

/* The call is answered (DEADLINE_EXCEEDED sent, or CANCEL received, or the connection is
 * going): it is no longer in flight, so its id may be used again (WIRE.md section 9), but the
 * handler still runs and the call still counts against the limits. */
static void call_answered(conn *c, rpc_call *call, int status) {
  if (!call->answered) call->early_status = status;
  call->answered = 1;
  atomic_store(&call->cancelled, 1);
  if (call->in_map) {
    rpc__idmap_del(&c->calls, call->request_id);
    call->in_map = 0;
  }
}

static void live_del(conn *c, rpc_call *call) {
  assert(call->lprev ? call->lprev->lnext == call : c->live == call);
  assert(!call->lnext || call->lnext->lprev == call);
  if (call->lprev) call->lprev->lnext = call->lnext;
  else c->live = call->lnext;
  if (call->lnext) call->lnext->lprev = call->lprev;
  call->lprev = call->lnext = NULL;
}

/* Orphan every call: the handler still completes it, but nothing is sent. */
static void conn_orphan_calls(conn *c) {
  while (c->live) {
    rpc_call *call = c->live;
    live_del(c, call);
    call_answered(c, call, RPC_STATUS_UNAVAILABLE);
    call->cn = NULL;
    call_deadline_clear(c->wk, call);
    atomic_fetch_sub(&c->wk->srv->calls, 1);
  }
  c->ncalls = 0;
}

/* Close now: pending reads and writes complete with -ECANCELED, then the struct is freed. */
static void conn_close(conn *c) {
  if (c->freed) return;
  c->freed = 1;
  c->eof = 1;
  conn_orphan_calls(c);
  rpc__timer_disarm(c->wk->w, &c->idle);
  /* A closed watcher (-ESHUTDOWN) closes the fd itself. */
  gaio_free(c->wk->w, c->fd);
  conn_maybe_free(c);
}

static void conn_maybe_free(conn *c) {
  if (!c->freed || c->pending > 0) return;
  assert(!c->dirty && c->writes == 0 && !c->reading);
  int cause = c->cause < 0 ? RPC_CLOSE_ERROR : c->cause;
  rpc__count(&c->wk->ct->closed[cause], 1);
  const rpc__logger *lg = &c->wk->srv->log;
  if (rpc__log_on(lg, RPC_LOG_INFO)) {
    char peer[RPC_ADDRESS_MAX];
    rpc__log(lg, RPC_LOG_INFO, "peer %s: connection closed (%s)", peer_text(c, peer, sizeof peer),
             rpc_close_cause_name(cause));
  }
  conn_unlink(c);
  c->wk->nconns--;
  rpc__rbuf_free(&c->rb);
  rpc__idmap_free(&c->calls);
  rpc__tls_free(c->tls);
  free(c->out);
  free(c);
}

static void conn_read(conn *c) {
  if (c->eof || c->reading || c->freed || c->paused) return;
  assert(c->rb.len < c->rb.cap); /* the buffer grows to hold a whole frame */
  size_t len = c->rb.cap - c->rb.len;
  uint8_t *p = c->tls ? rpc__tls_rbuf(c->tls, &len) : c->rb.data + c->rb.len;
  int rc = gaio_read(c->wk->w, c->fd, p, len, c);
  if (rc < 0) {
    conn_close(c);
    return;
  }
  c->reading = 1;
  c->pending++;
}

/* The graceful end of a connection (WIRE.md section 11): nothing more will be sent on it. What
 * is queued goes out, then the write side is shut down (the peer reads everything, then EOF),
 * and the connection is read, its bytes discarded, until the peer's FIN: closing a socket
 * with unread bytes makes the kernel send RST, which destroys the replies still on their way.
 * A peer that never closes is closed after close_linger_ms. Over TLS, close_notify follows
 * the last frames, also after a protocol error's GOAWAY (the TLS stream itself is whole); a
 * failed session sends its alert instead, and the peer's close_notify is not waited for. */
static void conn_finish(conn *c) {
  if (c->freed || c->closing) return;
  worker *wk = c->wk;
  if (c->tls && (tls_push_out(c) < 0 || rpc__tls_close_notify(c->tls) < 0)) {
    conn_close(c);
    return;
  }
  out_flush(c);
  if (c->freed) return;
  c->closing = 1;
  c->paused = 0;
  int rc = gaio_shutdown(wk->w, c->fd, &c->shut_kind);
  if (rc == 0) {
    c->pending++;
    uint64_t linger = (uint64_t)wk->srv->opts.close_linger_ms * 1000000u;
    rc = rpc__timer_arm(wk->w, &c->idle, gaio_now() + linger);
    if (rc == 0) c->pending++; /* the timer's result holds c */
  }
  if (rc < 0) {
    conn_close(c);
    return;
  }
  c->rb.len = 0;
  c->rb.skip = 0;
  c->rb.scanned = 0;
  conn_read(c);
}

static void on_shutdown(conn *c, const gaio_result *r) {
  c->shut_done = 1;
  if (!c->freed && (r->error != 0 || c->eof)) conn_close(c);
  conn_release(c);
}

/* A connection whose idle timer cannot be set (no gaio request to spare) would never be
 * closed for idleness: close it now instead. */
static void conn_arm_idle(conn *c, uint64_t now) {
  int ms = c->wk->srv->opts.idle_timeout_ms;
  if (ms <= 0 || c->closing) return;
  if (rpc__timer_arm(c->wk->w, &c->idle, now + (uint64_t)ms * 1000000u) < 0) conn_close(c);
  else c->pending++; /* the timer's result holds c */
}

/* Who is on the other end, for rpc_call_peer(): the address, and on a unix socket the client
 * process's credentials. A failure leaves the fields zero: no peer is not an error. */
static void conn_peer(conn *c) {
  rpc_peer *p = &c->peer;
  p->addr_len = sizeof p->addr;
  if (getpeername(c->fd, (struct sockaddr *)&p->addr, &p->addr_len) != 0) p->addr_len = 0;
  if (p->addr_len > 0 && p->addr.ss_family == AF_UNIX) {
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
      p->has_cred = 1;
      p->pid = cr.pid;
      p->uid = cr.uid;
      p->gid = cr.gid;
    }
  }
}

/* ---- TLS (transport.h): a session per connection of a "tls:" listener ---------------------- */

/* A connection refused or ended by TLS: counted with its reason (what the log says). */
/* A TLS connection refused (c is closed by the caller): counted, and logged with the peer. */
static void tls_refuse(conn *c, const char *why) {
  rpc__tls_ctx_refused(c->wk->srv->tls, why);
  conn_cause(c, RPC_CLOSE_PROTOCOL);
  if (rpc__log_on(&c->wk->srv->log, RPC_LOG_WARN)) {
    char peer[RPC_ADDRESS_MAX];
    rpc__log(&c->wk->srv->log, RPC_LOG_WARN, "peer %s: TLS refused: %s; closing the connection",
             peer_text(c, peer, sizeof peer), why);
  }
}

static int tls_start(conn *c) {
  int rc = rpc__tls_new(&c->tls, c->wk->srv->tls, NULL);
  if (rc == -EBUSY) tls_refuse(c, "too many TLS handshakes in progress");
  return rc;
}

/* The handshake must end within the handshake timeout: the idle timer is set for it, and
 * on_idle() closes a connection still handshaking when it fires. */
static void tls_arm_handshake(conn *c) {
  uint64_t ms = (uint64_t)rpc__tls_ctx_handshake_ms(c->wk->srv->tls);
  if (rpc__timer_arm(c->wk->w, &c->idle, c->last_active + ms * 1000000u) < 0) conn_close(c);
  else c->pending++; /* the timer's result holds c */
}

/* Write what the session has to send (handshake messages, alerts, key updates): at the end
 * of the batch, with the replies. */
static void tls_flush(conn *c) {
  if (c->freed) return;
  (void)rpc__tls_push(c->tls, NULL, 0); /* moves a handshake on, as rpc__tls_seal() did */
  tls_count(c);
  if (c->tls_counted > 0) conn_mark_dirty(c);
}

/* The session failed (a bad handshake, an alert): its alert goes out, the calls are cancelled
 * with no answer, and the connection ends. */
static void tls_failed(conn *c) {
  if (!rpc__tls_ready(c->tls)) tls_refuse(c, rpc__tls_error(c->tls));
  tls_flush(c);
  conn_orphan_calls(c);
  conn_finish(c);
}

/* n ciphertext bytes arrived. Returns 0 to parse on, -1 when c is ending. */
static int tls_input(conn *c, size_t n) {
  int rc = rpc__tls_feed(c->tls, n);
  if (rc < 0) {
    tls_failed(c);
    return -1;
  }
  if (rc == 1) { /* the handshake timer gives way to the idle timeout */
    rpc__tls_peer(c->tls, &c->peer);
    rpc__timer_disarm(c->wk->w, &c->idle);
    conn_arm_idle(c, c->last_active);
  }
  tls_flush(c);
  return c->freed || c->closing ? -1 : 0;
}

static void conn_adopt(worker *wk, int fd, int tls) {
  conn *c = gaio__calloc(1, sizeof *c);
  if (!c || rpc__rbuf_init(&c->rb) < 0) {
    if (c) rpc__rbuf_free(&c->rb);
    free(c);
    close(fd);
    return;
  }
  c->kind = RPC__CTX_CONN;
  c->shut_kind = RPC__CTX_SHUT;
  c->cause = -1;
  c->rb.urgent = RPC_TYPE_PING; /* a PONG does not wait for the handlers before it */
  c->rb.takes = 1u << RPC_TYPE_REQUEST | 1u << RPC_TYPE_CANCEL | 1u << RPC_TYPE_PING;
  c->wk = wk;
  c->fd = fd;
  rpc__timer_init(&c->idle, TIMER_IDLE);
  conn_peer(c);
  if ((tls && tls_start(c) < 0) || gaio_attach(wk->w, fd) < 0) {
    rpc__rbuf_free(&c->rb);
    rpc__tls_free(c->tls);
    free(c);
    close(fd);
    return;
  }
  c->next = wk->conns;
  if (wk->conns) wk->conns->prev = c;
  wk->conns = c;
  wk->nconns++;
  rpc__count(&wk->ct->adopted, 1);
  if (rpc__log_on(&wk->srv->log, RPC_LOG_DEBUG)) {
    char peer[RPC_ADDRESS_MAX];
    rpc__log(&wk->srv->log, RPC_LOG_DEBUG, "peer %s: connection accepted (worker %u)",
             peer_text(c, peer, sizeof peer), wk->index);
  }
  c->last_active = gaio_now();
  if (c->tls) tls_arm_handshake(c);
  else conn_arm_idle(c, c->last_active);
  conn_read(c);
}

/* ---- Requests ---------------------------------------------------------------------------- */

/* size bytes from the call's spill buffer (bump allocation), or NULL: too large to keep, no
 * room left, or no memory (the caller falls back to malloc). */
static void *spill_alloc(rpc_call *call, size_t size) {
  size_t a = _Alignof(max_align_t);
  size_t off = (call->spill_used + a - 1) & ~(a - 1);
  if (call->spill && off <= call->spill_cap && size <= call->spill_cap - off) {
    call->spill_used = off + size;
    return call->spill + off;
  }
  if (call->spill_used > 0 || size > CALL_SPILL_KEEP_MAX) return NULL;
  /* Empty and too small: replaced by one that fits, in 4 KiB steps. */
  size_t cap = (size + 4095u) & ~(size_t)4095u;
  if (cap > CALL_SPILL_KEEP_MAX) cap = CALL_SPILL_KEEP_MAX;
  free(call->spill);
  call->spill_cap = 0;
  if ((call->spill = gaio__malloc(cap)) == NULL) return NULL;
  call->spill_cap = cap;
  call->spill_used = size;
  return call->spill;
}

/* ProtobufCAllocator of a call: bump allocation in its arena, then in its spill buffer, the
 * server's allocator (or malloc) beyond. A failure is remembered: protobuf-c reports it as a
 * failed unpack, which would otherwise look like a malformed request. */
static void *arena_alloc(void *data, size_t size) {
  rpc_call *call = data;
  size_t a = _Alignof(max_align_t);
  size_t off = (call->arena_used + a - 1) & ~(a - 1);
  if (off <= CALL_ARENA && size <= CALL_ARENA - off) {
    call->arena_used = off + size;
    return call->arena + off;
  }
  const ProtobufCAllocator *x = call->ext;
  void *q = x ? NULL : spill_alloc(call, size);
  if (q) return q;
  void *p = x ? x->alloc(x->allocator_data, size) : gaio__malloc(size);
  if (!p) call->alloc_failed = 1;
  return p;
}

static void arena_free(void *data, void *ptr) {
  rpc_call *call = data;
  uintptr_t p = (uintptr_t)ptr, lo = (uintptr_t)call->arena;
  if (p >= lo && p < lo + CALL_ARENA) return; /* the arena goes with the call */
  lo = (uintptr_t)call->spill;
  if (call->spill && p >= lo && p < lo + call->spill_cap) return; /* so does the spill */
  const ProtobufCAllocator *x = call->ext;
  if (x) x->free(x->allocator_data, ptr);
  else free(ptr);
}

/* A zeroed call (its arena aside) from the worker's cache, or a new one; NULL on -ENOMEM. A
 * per-call malloc and free cost more than the whole unary echo path otherwise does. */
static rpc_call *call_get(worker *wk) {
  rpc_call *call = wk->cache;
  if (call) {
    wk->cache = call->lnext;
    wk->ncached--;
  } else if ((call = gaio__malloc(sizeof *call)) == NULL) {
    return NULL;
  } else {
    call->spill = NULL;
    call->spill_cap = 0;
  }
  memset(call, 0, offsetof(rpc_call, alloc));
  call->alloc.alloc = arena_alloc;
  call->alloc.free = arena_free;
  call->alloc.allocator_data = call;
  call->arena_used = 0;
  call->spill_used = 0;
  call->ext = wk->srv->opts.allocator;
  return call;
}

/* Free what the call holds and give the struct back to the worker's cache. Worker thread. */
static void call_put(worker *wk, rpc_call *call) {
  call_deadline_clear(wk, call);
  if (call->input) protobuf_c_message_free_unpacked(call->input, &call->alloc);
  free(call->reply);
  free(call->msg);
  free(call->md_mem);
  free(call->tr);
  if (wk->ncached >= CALL_CACHE_MAX) {
    free(call->spill);
    free(call);
    return;
  }
  call->lnext = wk->cache;
  wk->cache = call;
  wk->ncached++;
}

/* Start call (from call_get(), input unpacked into call->input). Returns 0 or -ENOMEM (the
 * caller still has the call). */
/* The server call being handled on this thread: set around the interceptors and invoke. */
static _Thread_local const rpc_call *tls_call;

const rpc_call *rpc__srv_current_call(void) { return tls_call; }

/* The interceptors' before(), in order. Returns 1 to invoke the handler, 0 when one refused
 * the call (it is completed with that status). */
static int run_before(rpc_call *call) {
  rpc_server *s = call->wk->srv;
  for (unsigned i = 0; i < s->ninterceptors; i++) {
    const rpc_server_interceptor *ic = &s->interceptors[i];
    call->ic_ran = i + 1;
    if (!ic->before) continue;
    const char *msg = NULL;
    int st = ic->before(ic->arg, call, &msg);
    if (st != RPC_STATUS_OK) {
      rpc_call_fail(call, st, msg); /* rpc.h: a NULL message is none */
      return 0;
    }
  }
  return 1;
}

/* The interceptors' after(), in reverse order, once per call whose before() ran. */
static void run_after(rpc_call *call, int status, size_t resp_bytes) {
  rpc_server *s = call->wk->srv;
  if (call->ic_ran == 0) return;
  rpc_call_outcome o = {status, gaio_now() - call->arrived, call->req_bytes, resp_bytes};
  for (unsigned i = call->ic_ran; i-- > 0;) {
    const rpc_server_interceptor *ic = &s->interceptors[i];
    if (ic->after) ic->after(ic->arg, call, &o);
  }
  call->ic_ran = 0;
}

static int call_new(conn *c, rpc_call *call, const rpc_frame *f, const rpc__srv_method *m) {
  ProtobufCMessage *in = call->input;
  call->node.key = f->request_id;
  call->item.kind = ITEM_CALL;
  call->wk = c->wk;
  call->cn = c;
  call->request_id = f->request_id;
  call->method = m;
  call->input = in;
  atomic_init(&call->state, CALL_INVOKING);
  atomic_init(&call->cancelled, 0);
  atomic_flag_clear(&call->done);
  if (rpc__idmap_put(&c->calls, &call->node) < 0) return -ENOMEM;
  call->in_map = 1;
  call->lnext = c->live;
  if (c->live) c->live->lprev = call;
  c->live = call;
  c->ncalls++;
  c->wk->ncalls++;
  rpc__method_counters *mc = method_counters(c->wk, m);
  if (mc) {
    rpc__count(&mc->started, 1);
    rpc__count(&mc->request_bytes, f->body_len);
  }
  if (f->timeout_us) {
    call->deadline = gaio_now() + (uint64_t)f->timeout_us * 1000u;
    if (call_deadline_set(c->wk, call) < 0) {
      /* No deadline timer, no call: it is refused before its handler runs. */
      live_del(c, call);
      c->ncalls--;
      c->wk->ncalls--;
      rpc__idmap_del(&c->calls, call->request_id);
      call->in_map = 0;
      if (mc) { /* not started after all: refused below */
        rpc__count(&mc->started, (uint64_t)-1);
        rpc__count(&mc->request_bytes, (uint64_t)0 - f->body_len);
      }
      return -ENOMEM;
    }
  }
  /* The closure may run on another thread before invoke returns; from here on the call
   * belongs to the state machine. A refusal by an interceptor completes it like a handler's
   * failure, so it ends through the same path. */
  const rpc_call *outer = tls_call;
  tls_call = call;
  if (run_before(call)) m->svc->invoke(m->svc, m->index, in, rpc__srv_closure, call);
  tls_call = outer;
  int expected = CALL_INVOKING;
  if (!atomic_compare_exchange_strong(&call->state, &expected, CALL_WAITING)) call_finish(call);
  return 0;
}

/* Admission checks, in the order of the wire spec. Returns 0 or the status to answer. */
static int admit(conn *c, const rpc_frame *f, const char **why) {
  rpc_server *s = c->wk->srv;
  if (rpc__idmap_get(&c->calls, f->request_id)) {
    *why = "request_id in use";
    return RPC_STATUS_INVALID_ARGUMENT;
  }
  if (c->ncalls >= s->opts.max_calls_per_conn) {
    *why = "too many calls in flight on this connection";
    return RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  if (atomic_fetch_add(&s->calls, 1) >= s->opts.max_calls) {
    atomic_fetch_sub(&s->calls, 1);
    *why = "too many calls in flight on this server";
    return RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  return 0;
}

/* The request's headers, copied into the call (the receive buffer moves on). Returns 0, or the
 * status to answer: INVALID_ARGUMENT (malformed), RESOURCE_EXHAUSTED (over the limits, or no
 * memory). *body and *len are advanced past the block. */
static int take_headers(rpc_server *s, rpc_call *call, const uint8_t **body, size_t *len,
                        const char **why) {
  rpc_metadata md;
  long used = rpc_metadata_parse(*body, *len, s->opts.max_metadata_bytes,
                                 s->opts.max_metadata_entries, &md);
  if (used == -EPROTO) {
    *why = "malformed metadata";
    return RPC_STATUS_INVALID_ARGUMENT;
  }
  if (used < 0) {
    *why = "metadata larger than the server's limit";
    return RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  *body += used;
  *len -= (size_t)used;
  if (md.len == 0) return 0;
  if ((call->md_mem = gaio__malloc(md.len)) == NULL) {
    *why = "out of memory";
    return RPC_STATUS_RESOURCE_EXHAUSTED;
  }
  memcpy(call->md_mem, md.data, md.len);
  call->md = (rpc_metadata){call->md_mem, md.len, md.count};
  return 0;
}

/* Answer a request that does not reach its handler (m: its method, NULL when unknown),
 * counted and logged as refused. */
static void refuse(conn *c, const rpc_frame *f, const rpc__srv_method *m, int st,
                   const char *why) {
  worker *wk = c->wk;
  send_status(c, f->request_id, st, why);
  rpc__method_counters *mc = m ? method_counters(wk, m) : NULL;
  if (mc) rpc__count_status(mc, st);
  if (!rpc__log_on(&wk->srv->log, RPC_LOG_INFO)) return;
  char peer[RPC_ADDRESS_MAX], id[16];
  snprintf(id, sizeof id, "0x%08x", (unsigned)f->method_id);
  rpc__log(&wk->srv->log, RPC_LOG_INFO, "peer %s: call %s refused: %s %s",
           peer_text(c, peer, sizeof peer), m ? m->full_name : id, rpc_status_name(st), why);
}

static void on_request(conn *c, const rpc_frame *f) {
  rpc_server *s = c->wk->srv;
  const rpc__srv_method *m = rpc__srv_find_method(s, f->method_id);
  if (!m) {
    char why[48];
    snprintf(why, sizeof why, "unknown method id 0x%08x", (unsigned)f->method_id);
    rpc__count(&c->wk->ct->unimplemented, 1);
    refuse(c, f, NULL, RPC_STATUS_UNIMPLEMENTED, why);
    return;
  }
  const char *why = NULL;
  int st = admit(c, f, &why);
  if (st) {
    if (st == RPC_STATUS_RESOURCE_EXHAUSTED) rpc__count(&c->wk->ct->refused, 1);
    refuse(c, f, m, st, why);
    return;
  }
  rpc_call *call = call_get(c->wk);
  if (!call) {
    atomic_fetch_sub(&s->calls, 1);
    refuse(c, f, m, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  call->arrived = c->last_active; /* when its bytes were read: no clock read per call */
  call->req_bytes = f->body_len;
  const uint8_t *body = f->body;
  size_t len = f->body_len;
  if ((f->flags & RPC_FLAG_METADATA) && (st = take_headers(s, call, &body, &len, &why)) != 0) {
    atomic_fetch_sub(&s->calls, 1);
    call_put(c->wk, call);
    refuse(c, f, m, st, why);
    return;
  }
  call->input = protobuf_c_message_unpack(m->md->input, &call->alloc, len, body);
  if (!call->input) {
    int oom = call->alloc_failed;
    atomic_fetch_sub(&s->calls, 1);
    call_put(c->wk, call);
    if (oom)
      refuse(c, f, m, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory unpacking the request");
    else
      refuse(c, f, m, RPC_STATUS_INVALID_ARGUMENT, "request does not unpack");
    return;
  }
  if (call_new(c, call, f, m) < 0) {
    atomic_fetch_sub(&s->calls, 1);
    call_put(c->wk, call);
    refuse(c, f, m, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
}

/* A REQUEST before any GOAWAY is accepted: it is answered, by its handler or by the framework
 * (UNIMPLEMENTED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED), so the GOAWAY's id covers it. Ids are
 * compared as plain numbers: the highest one seen is the GOAWAY's (WIRE.md section 11). After a
 * GOAWAY, a request is above its id: dropped without a response, as the client fails it
 * UNAVAILABLE itself. Returns 1 when accepted. */
static int accept_id(conn *c, uint32_t request_id) {
  if (c->goaway) return 0;
  if (request_id > c->last_id) c->last_id = request_id;
  return 1;
}

static void on_cancel(conn *c, uint32_t request_id) {
  rpc__idnode *n = rpc__idmap_get(&c->calls, request_id);
  if (!n) return; /* finished already, or never known: ignored */
  call_answered(c, rpc__container_of(n, rpc_call, node), RPC_STATUS_CANCELLED);
}

/* rpc__frame_fn for a server connection. */
static int on_frame(void *owner, const rpc_frame *f, int oversize) {
  conn *c = owner;
  if (c->freed || c->closing) return -ECANCELED;
  if (c->qbytes >= c->wk->srv->opts.max_write_bytes_per_conn) {
    c->paused = 1; /* the peer is not reading: neither do we, until half of it is written */
    return RPC__FRAME_PAUSE;
  }
  if (oversize) {
    if (f->type != RPC_TYPE_REQUEST) {
      c->wk->perr_kind = RPC_PERR_OVERSIZE;
      return -EPROTO;
    }
    if (accept_id(c, f->request_id))
      refuse(c, f, rpc__srv_find_method(c->wk->srv, f->method_id), RPC_STATUS_RESOURCE_EXHAUSTED,
             "message larger than the server's limit");
    return 0;
  }
  switch (f->type) {
    case RPC_TYPE_REQUEST:
      if (accept_id(c, f->request_id)) on_request(c, f);
      return 0;
    case RPC_TYPE_CANCEL:
      on_cancel(c, f->request_id);
      return 0;
    case RPC_TYPE_PING: {
      rpc_frame p = {0};
      p.type = RPC_TYPE_PONG;
      p.request_id = f->request_id;
      send_frame(c, &p, NULL, 0);
      return 0;
    }
    default: /* RESPONSE, PONG, GOAWAY: a client may not send them */
      c->wk->perr_kind = RPC_PERR_BAD_TYPE;
      return -EPROTO;
  }
}

/* A protocol error (WIRE.md section 8): GOAWAY, the calls are cancelled with no RESPONSE, and
 * the connection ends. */
static void protocol_error(conn *c, int kind) {
  rpc__count(&c->wk->ct->protocol_errors[kind], 1);
  conn_cause(c, RPC_CLOSE_PROTOCOL);
  if (rpc__log_on(&c->wk->srv->log, RPC_LOG_WARN)) {
    char peer[RPC_ADDRESS_MAX];
    rpc__log(&c->wk->srv->log, RPC_LOG_WARN, "peer %s: protocol error (%s); closing the connection",
             peer_text(c, peer, sizeof peer), rpc_protocol_error_name(kind));
  }
  send_goaway(c, "protocol error");
  conn_orphan_calls(c);
  conn_finish(c);
}

/* Hand the frames of n new bytes (0: resume after a pause) to on_frame, then read on. */
static void conn_parse(conn *c, size_t n) {
  worker *wk = c->wk;
  for (;;) {
    wk->perr_kind = -1;
    int rc = rpc__rbuf_consume(&c->rb, n, wk->srv->opts.max_body, on_frame, c);
    if (c->freed || c->closing) return;
    if (rc == -EPROTO) {
      /* on_frame named the kind, or the parser refused a header: look at it. */
      int kind = wk->perr_kind >= 0
                     ? wk->perr_kind
                     : rpc__protocol_error_kind(c->rb.data + c->rb.bad_at, c->rb.len - c->rb.bad_at);
      protocol_error(c, kind);
      return;
    }
    if (rc < 0) {
      conn_close(c); /* -ENOMEM */
      return;
    }
    if (!c->tls || c->paused) break;
    /* TLS: the plaintext of the records received so far, into the receive buffer. */
    long got = rpc__tls_recv(c->tls, c->rb.data + c->rb.len, c->rb.cap - c->rb.len);
    if (got == 0) break;
    if (got < 0) {
      if (got == GAIO_EOF) read_end(c, GAIO_EOF);
      else tls_failed(c);
      return;
    }
    n = (size_t)got;
  }
  if (c->tls) tls_flush(c);
  conn_read(c); /* unless paused */
}

/* Half of what was queued is written: parse what waits in the buffer, and read again. */
static void conn_resume(conn *c) {
  c->paused = 0;
  conn_hold(c);
  conn_parse(c, 0);
  conn_release(c);
}

/* The read ended: the peer closed its side (GAIO_EOF) or the socket failed. */
static void read_end(conn *c, int error) {
  c->eof = 1;
  conn_cause(c, error == GAIO_EOF || error == -ECONNRESET ? RPC_CLOSE_PEER : RPC_CLOSE_ERROR);
  if (c->closing) {
    if (c->shut_done || error != GAIO_EOF) conn_close(c); /* the FIN after our half-close */
    return;
  }
  /* A reset, or a frame cut short, ends the connection and cancels its calls (WIRE.md
   * section 8). A plain half-close after whole frames gets every answer, then the end. */
  if (error != GAIO_EOF || c->rb.len > 0 || c->rb.skip > 0 || (c->tls && rpc__tls_partial(c->tls)))
    conn_close(c);
  else if (c->ncalls == 0) conn_finish(c);
}

static void read_done(conn *c, const gaio_result *r) {
  if (c->freed) return;
  if (r->error != 0) {
    read_end(c, r->error);
    return;
  }
  c->last_active = gaio_now();
  if (c->closing) { /* finishing: the bytes are discarded */
    c->rb.len = 0;
    conn_read(c);
    return;
  }
  if (c->tls) {
    if (tls_input(c, r->size) == 0) conn_parse(c, 0);
    return;
  }
  conn_parse(c, r->size);
}

static void on_read(conn *c, const gaio_result *r) {
  c->reading = 0; /* the read's pending count holds c until the end */
  read_done(c, r);
  conn_release(c);
}

static void on_write(rpc__wbuf *b, const gaio_result *r) {
  conn *c = b->conn;
  assert(c->writes > 0);
  c->writes--; /* the write's pending count holds c until the end */
  assert(c->qbytes >= b->len);
  c->qbytes -= b->len;
  if (b->coalesced) {
    c->out_busy--;
    if (c->tls) {
      b = rpc__tls_recycle(c->tls, b); /* records: kept for the next ones */
    } else if (!c->out && b->cap <= OUT_KEEP_MAX) { /* reused as the next output buffer */
      b->len = 0;
      c->out = b;
      b = NULL;
    }
  }
  free(b);
  if (!c->freed && r->error != 0) {
    conn_cause(c, r->error == -EPIPE || r->error == -ECONNRESET ? RPC_CLOSE_PEER : RPC_CLOSE_ERROR);
    conn_close(c);
  } else if (!c->freed) {
    if ((c->out && c->out->len > 0) || (c->tls && rpc__tls_queued(c->tls) > 0))
      conn_mark_dirty(c);
    if (c->paused && c->qbytes <= c->wk->srv->opts.max_write_bytes_per_conn / 2) conn_resume(c);
  }
  conn_release(c);
}

/* ---- Finishing calls --------------------------------------------------------------------- */

/* A RESPONSE with the call's trailers (WIRE.md section 13): the block, then the reply's body
 * or the error text. Copied into the output buffer. */
static void send_with_trailers(conn *c, rpc_call *call, int status, const void *body,
                               size_t len) {
  if (c->freed || c->closing) return;
  size_t md = RPC_METADATA_PREFIX + call->tr_len, total = RPC_FRAME_HEADER_SIZE + md + len;
  uint8_t *p = out_room(c, total);
  if (!p) {
    conn_close(c);
    return;
  }
  rpc_frame f = {0};
  f.type = RPC_TYPE_RESPONSE;
  f.flags = RPC_FLAG_METADATA;
  f.status = (uint8_t)status;
  f.request_id = call->request_id;
  f.body_len = (uint32_t)(md + len);
  rpc_frame_encode(&f, p);
  p += RPC_FRAME_HEADER_SIZE;
  uint32_t n = (uint32_t)call->tr_len;
  p[0] = (uint8_t)n;
  p[1] = (uint8_t)(n >> 8);
  p[2] = (uint8_t)(n >> 16);
  p[3] = (uint8_t)(n >> 24);
  memcpy(p + RPC_METADATA_PREFIX, call->tr, call->tr_len);
  if (len) memcpy(p + md, body, len);
  c->out->len += total;
  c->qbytes += total;
}

/* Send the call's answer: its reply or its status, with its trailers. Returns the body bytes. */
static size_t send_answer(conn *c, rpc_call *call) {
  if (call->packed) return call->packed - 1; /* in the output buffer already */
  rpc__wbuf *b = call->reply;
  call->reply = NULL;
  const char *text = b ? NULL : call->msg;
  size_t len = b ? b->len - RPC_FRAME_HEADER_SIZE : text ? strlen(text) : 0;
  if (!b && len > RPC_MAX_ERROR_MESSAGE) len = RPC_MAX_ERROR_MESSAGE;
  if (call->tr_count > 0) {
    int st = b ? RPC_STATUS_OK : call->status;
    send_with_trailers(c, call, st, b ? (const void *)(b->data + RPC_FRAME_HEADER_SIZE) : text, len);
    free(b);
    return RPC_METADATA_PREFIX + call->tr_len + len;
  }
  if (b) send_reply(c, call->request_id, b);
  else send_status(c, call->request_id, call->status, text);
  return len;
}

/* The call's closure has run (state REPLIED): send its answer unless that is not wanted any
 * more, tell the interceptors, and release it. Worker thread. */
static void call_finish(rpc_call *call) {
  worker *wk = call->wk;
  conn *c = call->cn;
  int status = call->answered ? call->early_status
                              : call->reply ? RPC_STATUS_OK : call->status;
  size_t sent = call->answered ? call->early_bytes : 0;
  call_deadline_clear(wk, call);
  rpc__method_counters *mc = method_counters(wk, call->method);
  assert(wk->ncalls > 0);
  wk->ncalls--;
  if (c) {
    assert(c->ncalls > 0);
    conn_hold(c);
    if (call->in_map) rpc__idmap_del(&c->calls, call->request_id);
    live_del(c, call);
    c->ncalls--;
    atomic_fetch_sub(&wk->srv->calls, 1);
    if (!call->answered) sent = send_answer(c, call);
    if (c->ncalls == 0 && (c->goaway || c->eof)) conn_finish(c);
    conn_release(c);
  }
  if (mc) {
    rpc__count(&mc->finished, 1);
    rpc__count_status(mc, status);
    rpc__count(&mc->response_bytes, sent);
    lat_keep(wk, mc, call->arrived);
  }
  run_after(call, status, sent);
  call_put(wk, call);
}

static void on_call_timer(rpc_call *call) {
  if (call->answered || !call->cn) return;
  call_answered(call->cn, call, RPC_STATUS_DEADLINE_EXCEEDED);
  call->early_bytes = strlen("deadline exceeded");
  send_status(call->cn, call->request_id, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* Hand the completed call to its worker (or let the worker take it after invoke). */
static void call_complete(rpc_call *call) {
  if (atomic_exchange(&call->state, CALL_REPLIED) == CALL_WAITING) {
    int rc = rpc__inbox_post(&call->wk->inbox, &call->item);
    assert(rc == 0); /* a worker keeps its inbox open while it has calls */
    (void)rc;
  }
}

/* The common case: the handler replies inside invoke, on the worker thread, with no trailers.
 * The reply is packed straight into the connection's output buffer behind its header: no
 * buffer of its own, no copy, and it leaves with the batch's other frames in one write. A
 * large reply keeps its own buffer (written as is, header and body in one writev with the
 * others) while the connection has writes to spare, as send_reply() does. Returns 1 when the
 * reply was sent this way (call_finish() then only counts it). */
static int pack_direct(rpc_call *call, const ProtobufCMessage *reply, size_t len) {
  if (tls_call != call) return 0; /* another thread: the call's fields are the worker's */
  conn *c = call->cn;
  if (!c || c->freed || c->closing || call->answered || call->tr_count) return 0;
  size_t total = RPC_FRAME_HEADER_SIZE + len;
  if (total > OUT_COALESCE_MAX && c->writes < CONN_MAX_WRITES) return 0;
  uint8_t *p = out_room(c, total);
  if (!p) return 0; /* the own-buffer path gets its chance */
  rpc_frame f = {0};
  f.type = RPC_TYPE_RESPONSE;
  f.request_id = call->request_id;
  f.body_len = (uint32_t)len;
  rpc_frame_encode(&f, p);
  protobuf_c_message_pack(reply, p + RPC_FRAME_HEADER_SIZE);
  c->out->len += total;
  c->qbytes += total;
  call->packed = 1 + len;
  return 1;
}

/* Closure of every handler invocation. Any thread. */
void rpc__srv_closure(const ProtobufCMessage *reply, void *closure_data) {
  rpc_call *call = closure_data;
  if (atomic_flag_test_and_set(&call->done)) return; /* a second completion is ignored */
  if (reply) {
    size_t len = protobuf_c_message_get_packed_size(reply);
    if (len > call->wk->srv->opts.max_body) {
      call->status = RPC_STATUS_RESOURCE_EXHAUSTED;
      call->msg = rpc__msgdup("reply larger than the server's limit", 36);
    } else if (!pack_direct(call, reply, len)) {
      if ((call->reply = rpc__wbuf_new(len)) != NULL)
        protobuf_c_message_pack(reply, call->reply->data + RPC_FRAME_HEADER_SIZE);
      else
        call->status = RPC_STATUS_RESOURCE_EXHAUSTED;
    }
  } else {
    call->status = RPC_STATUS_UNKNOWN;
    call->msg = rpc__msgdup("handler returned no reply", 25);
  }
  call_complete(call);
}

/* ---- Handler-side API -------------------------------------------------------------------- */

rpc_call *rpc_server_call(void *closure_data) { return closure_data; }

rpc_server *rpc_call_server(const rpc_call *c) { return c->wk->srv; }

int64_t rpc_call_remaining_us(const rpc_call *c) {
  if (c->deadline == 0) return -1;
  uint64_t now = gaio_now();
  return now >= c->deadline ? 0 : (int64_t)((c->deadline - now) / 1000u);
}

int rpc_call_cancelled(const rpc_call *c) { return atomic_load(&c->cancelled); }

void rpc_call_reply(rpc_call *c, const ProtobufCMessage *reply) { rpc__srv_closure(reply, c); }

const rpc_metadata *rpc_call_metadata(const rpc_call *c) { return &c->md; }

int rpc_call_header(const rpc_call *c, const char *key, const void **value, size_t *len) {
  rpc_md e;
  if (!key || !rpc_metadata_get(&c->md, key, strlen(key), &e)) return 0;
  if (value) *value = e.value;
  if (len) *len = e.value_len;
  return 1;
}

const char *rpc_call_method(const rpc_call *c) { return c->method->full_name; }

int rpc_call_peer(const rpc_call *c, rpc_peer *out) {
  if (!c->cn) return -ENOTCONN;
  *out = c->cn->peer;
  return 0;
}

int rpc_call_set_trailer(rpc_call *c, const char *key, const void *value, size_t len) {
  rpc_md e = {key, key ? strlen(key) : 0, value, len};
  size_t size = rpc_metadata_size(&e, 1);
  if (size == 0) return -EINVAL;
  size -= RPC_METADATA_PREFIX;
  if (c->tr_len + size > RPC_DEFAULT_MAX_METADATA_BYTES ||
      c->tr_count == RPC_DEFAULT_MAX_METADATA_ENTRIES)
    return -EMSGSIZE;
  if (c->tr_cap - c->tr_len < size) {
    size_t cap = c->tr_cap ? c->tr_cap : 256;
    while (cap - c->tr_len < size) cap *= 2;
    uint8_t *p = gaio__realloc(c->tr, cap);
    if (!p) return -ENOMEM;
    c->tr = p;
    c->tr_cap = cap;
  }
  long n = rpc_metadata_encode_entry(&e, c->tr + c->tr_len, c->tr_cap - c->tr_len);
  assert(n == (long)size);
  (void)n;
  c->tr_len += size;
  c->tr_count++;
  return 0;
}

void rpc_call_fail(rpc_call *c, int status, const char *message) {
  if (atomic_flag_test_and_set(&c->done)) return;
  if (status <= RPC_STATUS_OK || status > RPC_STATUS_UNAUTHENTICATED) status = RPC_STATUS_UNKNOWN;
  c->status = status;
  c->msg = rpc__msgdup(message, message ? strlen(message) : 0);
  call_complete(c);
}

/* ---- Listeners (worker 0) ---------------------------------------------------------------- */

static void listener_break(worker *wk, rpc__srv_listener *l, int error);

/* Pause accepting on l for ACCEPT_RETRY_MS after a shortage (EMFILE, ENOMEM, ENOBUFS): accepting
 * again at once would spin. The pause is kept by worker_main's wait timeout (accept_resume()),
 * not by a gaio timer, so that pausing needs no request and cannot fail: a shortage never
 * closes a listener (it did when arming the timer failed, itself for want of memory). */
static void accept_pause(worker *wk, rpc__srv_listener *l) {
  if (l->paused_until != 0) return;
  l->paused_until = gaio_now() + ACCEPT_RETRY_MS * 1000000ull;
  if (wk->accept_resume_at == 0 || l->paused_until < wk->accept_resume_at)
    wk->accept_resume_at = l->paused_until;
}

/* Queue accepts up to ACCEPTS_QUEUED, unless paused. A submit refused for a shortage (-ENOBUFS,
 * -ENOMEM) with no accept left queued would leave the listener idle for good: pause and retry. */
static void accept_more(worker *wk, rpc__srv_listener *l) {
  while (!wk->stopping && !l->closed && l->paused_until == 0 && l->queued < ACCEPTS_QUEUED) {
    int rc = gaio_accept(wk->w, l->fd, NULL, l);
    if (rc < 0) {
      if (rc == -ESHUTDOWN) return;
      if (rc != -ENOBUFS && rc != -ENOMEM) listener_break(wk, l, rc);
      else if (l->queued == 0) accept_pause(wk, l);
      return;
    }
    l->queued++;
    wk->accepts++;
  }
}

/* Before each wait of worker 0: end the pauses that are due (queueing accepts again) and return
 * the wait timeout in ms that does not oversleep the next one (-1: no listener is paused). */
static int accept_resume(worker *wk) {
  if (wk->accept_resume_at == 0) return -1;
  uint64_t now = gaio_now();
  if (now >= wk->accept_resume_at) {
    wk->accept_resume_at = 0;
    for (unsigned i = 0; i < wk->srv->nlisteners; i++) {
      rpc__srv_listener *l = &wk->srv->listeners[i];
      if (l->paused_until == 0) continue;
      if (now < l->paused_until) {
        if (wk->accept_resume_at == 0 || l->paused_until < wk->accept_resume_at)
          wk->accept_resume_at = l->paused_until;
        continue;
      }
      l->paused_until = 0;
      accept_more(wk, l); /* may pause it again */
    }
    if (wk->accept_resume_at == 0) return -1;
  }
  return (int)((wk->accept_resume_at - now + 999999u) / 1000000u);
}

static void hand_over(worker *wk, int fd, int tls) {
  rpc_server *s = wk->srv;
  worker *to = &s->workers[s->next_worker++ % s->opts.workers];
  if (to == wk) {
    conn_adopt(wk, fd, tls);
    return;
  }
  struct conn_item *it = gaio__malloc(sizeof *it);
  if (!it) {
    close(fd);
    return;
  }
  it->item.kind = ITEM_CONN;
  it->fd = fd;
  it->tls = tls;
  if (rpc__inbox_post(&to->inbox, &it->item) < 0) {
    close(fd);
    free(it);
  }
}

/* The listener is unusable: free it (its queued accepts complete -ECANCELED) and keep the
 * first such error for rpc_server_listen_error(), instead of retrying forever. */
static void listener_break(worker *wk, rpc__srv_listener *l, int error) {
  rpc__log(&wk->srv->log, RPC_LOG_ERROR, "listener %s: accept: %s; the listener is closed",
           l->address, gaio_strerror(error));
  int none = 0;
  atomic_compare_exchange_strong(&wk->srv->listen_error, &none, error);
  l->closed = 1;
  l->paused_until = 0;
  if (l->attached) gaio_free(wk->w, l->fd);
}

/* A failed accept, counted and logged (a cancelled one is not a failure). */
static void accept_failed(worker *wk, rpc__srv_listener *l, int error) {
  int verdict = gaio_accept_verdict(error);
  if (verdict == GAIO_ACCEPT_GONE) return;
  rpc__count(&l->accept_errors, 1);
  if (verdict == GAIO_ACCEPT_NEXT)
    rpc__log(&wk->srv->log, RPC_LOG_WARN, "listener %s: accept: %s", l->address,
             gaio_strerror(error));
  else if (verdict == GAIO_ACCEPT_BACKOFF)
    rpc__log(&wk->srv->log, RPC_LOG_ERROR, "listener %s: accept: %s; accepting again in %d ms",
             l->address, gaio_strerror(error), ACCEPT_RETRY_MS);
}

static void on_accept(worker *wk, rpc__srv_listener *l, const gaio_result *r) {
  l->queued--;
  wk->accepts--;
  if (r->error != 0) accept_failed(wk, l, r->error);
  if (r->error == 0 && r->conn_fd >= 0) {
    rpc__count(&l->accepted, 1);
    if (wk->stopping) {
      close(r->conn_fd);
    } else {
      if (!l->is_unix) {
        int one = 1;
        setsockopt(r->conn_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      hand_over(wk, r->conn_fd, l->tls);
    }
  }
  if (l->closed) return;
  switch (gaio_accept_verdict(r->error)) {
    case GAIO_ACCEPT_NEXT:
      accept_more(wk, l);
      break;
    case GAIO_ACCEPT_BACKOFF: /* out of fds or memory */
      accept_pause(wk, l);
      break;
    case GAIO_ACCEPT_GONE:
      break;
    default: /* GAIO_ACCEPT_BROKEN */
      listener_break(wk, l, r->error);
      break;
  }
}

/* ---- Shutdown ---------------------------------------------------------------------------- */

static void drain_expired(worker *wk);

static void begin_stop(worker *wk) {
  if (wk->stopping) return;
  wk->stopping = 1;
  rpc_server *s = wk->srv;
  if (wk->index == 0) {
    for (unsigned i = 0; i < s->nlisteners; i++) {
      rpc__srv_listener *l = &s->listeners[i];
      if (!l->closed && l->attached) gaio_free(wk->w, l->fd);
      l->closed = 1;
      l->paused_until = 0;
    }
    wk->accept_resume_at = 0;
  }
  for (conn *c = wk->conns, *next; c; c = next) {
    next = c->next;
    conn_hold(c);
    conn_cause(c, RPC_CLOSE_SHUTDOWN);
    send_goaway(c, "server shutting down");
    if (c->ncalls == 0) conn_finish(c);
    conn_release(c);
  }
  /* Without a drain timer the drain could never end: end it now. */
  if (rpc__timer_arm(wk->w, &wk->drain, wk->drain_at) < 0) drain_expired(wk);
}

/* The drain deadline: the calls still running are cancelled (nothing more is sent for them)
 * and every connection ends as conn_finish() ends it, within close_linger_ms. */
static void drain_expired(worker *wk) {
  wk->drained = 1;
  for (conn *c = wk->conns, *next; c; c = next) {
    next = c->next;
    conn_hold(c);
    conn_cause(c, RPC_CLOSE_SHUTDOWN);
    conn_orphan_calls(c);
    conn_finish(c);
    conn_release(c);
  }
}

/* ---- The loop ---------------------------------------------------------------------------- */

static void on_inbox(worker *wk) {
  rpc__item *it = rpc__inbox_take(&wk->inbox, 0);
  while (it) {
    rpc__item *next = it->next;
    if (it->kind == ITEM_CALL) {
      call_finish(rpc__container_of(it, rpc_call, item));
    } else if (it->kind == ITEM_CONN) {
      struct conn_item *ci = (struct conn_item *)it;
      if (wk->stopping) close(ci->fd);
      else conn_adopt(wk, ci->fd, ci->tls);
      free(ci);
    } else if (it->kind == ITEM_SHUTDOWN) {
      begin_stop(wk);
    }
    it = next;
  }
}

/* The idle timer of c fired: close c if it is idle, else look again when it could be. Once
 * closing, the same timer is the linger. */
static void on_idle(worker *wk, conn *c) {
  uint64_t now = gaio_now();
  int ms = wk->srv->opts.idle_timeout_ms;
  if (c->freed) return;
  if (c->closing) {
    conn_close(c); /* the linger time is over */
  } else if (c->tls && !rpc__tls_ready(c->tls)) {
    tls_refuse(c, "TLS handshake timed out");
    conn_close(c);
  } else if (c->ncalls > 0 || c->last_active + (uint64_t)ms * 1000000u > now) {
    conn_arm_idle(c, c->ncalls > 0 ? now : c->last_active);
  } else {
    conn_cause(c, RPC_CLOSE_IDLE);
    send_goaway(c, "idle timeout");
    conn_finish(c);
  }
}

static void on_timer(worker *wk, const gaio_result *r) {
  if (rpc__timer_is_id(r->ctx)) { /* a call's deadline, if the call is still there */
    rpc__idnode *n = r->error ? NULL : rpc__idmap_get(&wk->deadlines, rpc__timer_id(r->ctx));
    if (n) on_call_timer(rpc__container_of(n, rpc_call, dnode));
    return;
  }
  rpc__timer *t = r->ctx;
  if (t->kind == TIMER_IDLE) {
    conn *c = rpc__container_of(t, conn, idle);
    if (rpc__timer_fired(t, r)) on_idle(wk, c);
    conn_release(c); /* the timer's hold */
  } else {
    assert(t->kind == TIMER_DRAIN);
    if (rpc__timer_fired(t, r)) drain_expired(wk);
  }
}

static void on_result(worker *wk, const gaio_result *r) {
  if (r->op == GAIO_OP_TIMER) {
    on_timer(wk, r);
    return;
  }
  int kind = *(const int *)r->ctx;
  switch (kind) {
    case RPC__CTX_CONN:
      on_read(r->ctx, r);
      break;
    case RPC__CTX_WRITE:
      on_write(r->ctx, r);
      break;
    case RPC__CTX_SHUT:
      on_shutdown(rpc__container_of(r->ctx, conn, shut_kind), r);
      break;
    case RPC__CTX_INBOX:
      if (r->error == 0) on_inbox(wk);
      break;
    case RPC__CTX_LISTEN:
      on_accept(wk, r->ctx, r);
      break;
    default:
      assert(!"a result with an unknown ctx kind");
  }
}

static int finished(const worker *wk) {
  return wk->stopping && wk->nconns == 0 && wk->ncalls == 0 && wk->accepts == 0;
}

static void *worker_main(void *arg) {
  worker *wk = arg;
  gaio_result res[RESULTS_PER_WAIT];
  if (wk->index == 0)
    for (unsigned i = 0; i < wk->srv->nlisteners; i++) accept_more(wk, &wk->srv->listeners[i]);
  while (!finished(wk)) {
    int n = gaio_wait(wk->w, res, RESULTS_PER_WAIT, accept_resume(wk));
    if (n < 0) break;
    for (int i = 0; i < n; i++) on_result(wk, &res[i]);
    lat_flush(wk); /* before the replies go: a client that has one sees its latency counted */
    flush_dirty(wk);
  }
  /* Close the inbox (nothing more can arrive for this worker: no calls, no listener), then
   * collect the watcher's last results (timers, a last post) so every request is accounted
   * for. */
  rpc__item *it = rpc__inbox_take(&wk->inbox, 1);
  while (it) {
    rpc__item *next = it->next;
    if (it->kind == ITEM_CONN) {
      close(((struct conn_item *)it)->fd);
      free(it);
    }
    it = next;
  }
  gaio_watcher_close(wk->w);
  while (gaio_wait(wk->w, res, RESULTS_PER_WAIT, -1) > 0) {
  }
  return NULL;
}

/* ---- Lifecycle (the rest is in server_setup.c) ------------------------------------------- */

int rpc__srv_start_workers(rpc_server *s) {
  /* Every watcher and inbox exists before any thread runs: worker 0 hands connections to the
   * others as soon as it starts. */
  int rc = 0;
  for (unsigned i = 0; i < s->opts.workers && rc == 0; i++) {
    worker *wk = &s->workers[i];
    wk->srv = s;
    wk->index = i;
    wk->ct = &s->counters[i];
    if (s->opts.stats == 0 && s->nmethods > 0 &&
        (wk->ct->methods = gaio__calloc(s->nmethods, sizeof *wk->ct->methods)) == NULL)
      rc = -ENOMEM;
    rpc__timer_init(&wk->drain, TIMER_DRAIN);
    wk->shutdown_item.kind = ITEM_SHUTDOWN;
    gaio_options go = {0};
    go.backend = s->opts.backend;
    /* Only the worker's thread enters its loop, and it waits until -ESHUTDOWN before
     * rpc_server_destroy() frees the watcher: so a handler's own blocking calls are not
     * interrupted by the worker's completions on io_uring (gaio.h). */
    go.one_thread = 1;
    s->nworkers = i + 1;
    if (rc == 0) rc = gaio_watcher_create(&wk->w, &go);
    rpc__inbox_init(&wk->inbox, wk->w); /* without a watcher, it is only destroyed */
    if (wk->w) {
      s->backend = gaio_backend_name(wk->w);
      atomic_store(&wk->ct->w, wk->w);
    }
  }
  s->started_at = gaio_now();
  for (unsigned j = 0; j < s->nlisteners && rc == 0; j++) {
    rc = gaio_attach(s->workers[0].w, s->listeners[j].fd);
    if (rc == 0) s->listeners[j].attached = 1;
  }
  for (unsigned i = 0; i < s->nworkers && rc == 0; i++) {
    worker *wk = &s->workers[i];
    rc = -pthread_create(&wk->th, NULL, worker_main, wk);
    if (rc == 0) wk->started = 1;
  }
  return rc;
}

void rpc__srv_stop_workers(rpc_server *s, int drain_ms) {
  uint64_t at = gaio_now() + (uint64_t)(drain_ms > 0 ? drain_ms : 0) * 1000000u;
  for (unsigned i = 0; i < s->nworkers; i++) {
    worker *wk = &s->workers[i];
    if (!wk->started) continue;
    wk->drain_at = at;
    int rc = rpc__inbox_post(&wk->inbox, &wk->shutdown_item);
    assert(rc == 0); /* the inbox closes when its worker ends, after the shutdown item */
    (void)rc;
  }
  for (unsigned i = 0; i < s->nworkers; i++) {
    worker *wk = &s->workers[i];
    if (wk->started) pthread_join(wk->th, NULL);
    wk->started = 0;
  }
  for (unsigned i = 0; i < s->nworkers; i++) {
    worker *wk = &s->workers[i];
    rpc__inbox_destroy(&wk->inbox); /* first: it waits for posters still using the watcher */
    if (wk->w) gaio_watcher_stats(wk->w, &wk->ct->loop);
    atomic_store(&wk->ct->w, NULL);
    gaio_watcher_destroy(wk->w);
    rpc__idmap_free(&wk->deadlines);
    wk->w = NULL;
    while (wk->cache) {
      rpc_call *call = wk->cache;
      wk->cache = call->lnext;
      free(call->spill);
      free(call);
    }
    wk->ncached = 0;
  }
  /* Listeners never attached (a failed start) are still ours to close. */
  for (unsigned i = 0; i < s->nlisteners; i++)
    if (!s->listeners[i].attached) close(s->listeners[i].fd);
  s->nlisteners = 0;
}

size_t rpc__srv_worker_size(void) { return sizeof(worker); }

void rpc__srv_counters_free(rpc_server *s) {
  for (unsigned i = 0; i < s->opts.workers; i++) {
    free(s->counters[i].methods);
    s->counters[i].methods = NULL;
  }
}
