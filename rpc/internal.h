/* Internals shared by the RPC server and client, one mechanism per file: timers (timer.c), an
 * id map (idmap.c), write and receive buffers (buf.c), a cross-thread inbox (inbox.c), address
 * parsing (addr.c), method ids and status messages (method.c). Private to //rpc. */
#ifndef GAIO_RPC_INTERNAL_H
#define GAIO_RPC_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gaio/fault.h" /* gaio__malloc and co.: every allocation of rpc/ (fault runs) */
#include "gaio/gaio.h"
#include "rpc/frame.h"

#define rpc__container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* What a gaio context pointer points at: every ctx struct starts with one of these. */
enum rpc__ctx_kind {
  RPC__CTX_CONN = 1,   /* a connection's read (and the client's connect) */
  RPC__CTX_WRITE = 2,  /* an rpc__wbuf */
  RPC__CTX_INBOX = 3,  /* the inbox's gaio_post() */
  RPC__CTX_LISTEN = 4, /* an accept on a listener */
  RPC__CTX_SHUT = 5,   /* a server connection's half-close */
};

/* ---- Timers: gaio_timer() requests ------------------------------------------------------
 * A timer of a long-lived object (a connection, an endpoint, a listener) is an rpc__timer
 * inside it: the gaio ctx points at it, and its owner keeps the object until `pending` is 0.
 * A timer of an object that may go away first (a call) has an id as its ctx instead
 * (RPC__TIMER_ID): the owner looks the id up when it fires, and a call that is gone is not
 * found. Timer results are told apart from others by op == GAIO_OP_TIMER. */

typedef struct rpc__timer {
  int kind;         /* owner's tag, at offset 0: the ctx of its gaio timers points here */
  int armed;        /* a timer is set and not disarmed */
  unsigned stale;   /* fired timers whose result is still to come, disarmed meanwhile */
  unsigned pending; /* gaio timers of this struct whose result is still to come */
} rpc__timer;

void rpc__timer_init(rpc__timer *t, int kind);
/* Set t to fire at when (disarming a timer already set). Loop thread. Returns 0, or the error of
 * gaio_timer() (-ENOBUFS, -ENOMEM, -ESHUTDOWN): then t is not armed. */
int rpc__timer_arm(gaio_watcher *w, rpc__timer *t, uint64_t when);
/* Disarm t if armed: its result will be ignored. Loop thread. */
void rpc__timer_disarm(gaio_watcher *w, rpc__timer *t);
/* The result r of one of t's timers arrived: 1 if it is t firing (act on it), 0 if it is a
 * disarmed or cancelled one (ignore it). Decrements pending. */
int rpc__timer_fired(rpc__timer *t, const gaio_result *r);

#define RPC__TIMER_ID(id) ((void *)(uintptr_t)(((uint64_t)(id) << 1) | 1u))
static inline int rpc__timer_is_id(const void *ctx) { return (int)((uintptr_t)ctx & 1u); }
static inline uint64_t rpc__timer_id(const void *ctx) { return (uint64_t)(uintptr_t)ctx >> 1; }

/* ---- Id map: intrusive chained hash table keyed by a 64-bit id. -------------------------- */

typedef struct rpc__idnode {
  struct rpc__idnode *next;
  uint64_t key;
} rpc__idnode;

typedef struct rpc__idmap {
  rpc__idnode **b;
  size_t nb, n;
} rpc__idmap;

rpc__idnode *rpc__idmap_get(const rpc__idmap *m, uint64_t key);
/* Insert node (its key must not be present). Returns 0 or -ENOMEM. */
int rpc__idmap_put(rpc__idmap *m, rpc__idnode *node);
/* Remove and return the node with key, or NULL. */
rpc__idnode *rpc__idmap_del(rpc__idmap *m, uint64_t key);
/* Remove and return any node, or NULL when empty (to empty the map). */
rpc__idnode *rpc__idmap_pop(rpc__idmap *m);
void rpc__idmap_free(rpc__idmap *m);

/* ---- Write buffers: one frame (or more) handed to gaio_write, freed on its result. ------- */

typedef struct rpc__wbuf {
  int kind; /* RPC__CTX_WRITE */
  int coalesced; /* owner's flag: a buffer of several frames (the server's output buffer) */
  void *conn;
  size_t len;
  size_t cap; /* bytes of data[] */
  uint8_t data[];
} rpc__wbuf;

/* A buffer with room for the header plus body_len bytes (len = cap = 24 + body_len). */
rpc__wbuf *rpc__wbuf_new(size_t body_len);
/* A whole frame: header from f (f->body_len is set from body_len) and a copy of body. */
rpc__wbuf *rpc__wbuf_frame(const rpc_frame *f, const void *body, size_t body_len);

/* ---- Receive buffers. ---------------------------------------------------------------------- */

#define RPC__RBUF_INITIAL (16u * 1024u) /* first size, and what a grown buffer shrinks back to */
#define RPC__RBUF_KEEP_MAX (16u * RPC__RBUF_INITIAL) /* an empty buffer above this shrinks */

typedef struct rpc__rbuf {
  uint8_t *data;
  size_t len;     /* bytes held */
  size_t cap;
  uint64_t skip;  /* bytes of an oversized body still to discard as they arrive */
  int urgent;     /* a frame type handed to fn ahead of the frames before it (0: none) */
  unsigned takes; /* with urgent: the frame types fn accepts (bit 1u << type); the urgent scan
                     stops at any other, so nothing past a frame fn will refuse is acted on */
  size_t scanned; /* whole frames in data[0, scanned) were looked at for `urgent` */
  size_t bad_at;  /* after -EPROTO from rpc__rbuf_consume: where the malformed header starts */
} rpc__rbuf;

int rpc__rbuf_init(rpc__rbuf *b);
void rpc__rbuf_free(rpc__rbuf *b);

/* What the owner does with each frame; returns 0 to go on, RPC__FRAME_PAUSE to stop before
 * this frame (it stays in the buffer, to be handed over again by the next consume), or < 0 to
 * stop parsing (the connection is being closed). oversize is 1 for a frame over max_body
 * (-EMSGSIZE: the body is not there; f has the header). */
typedef int (*rpc__frame_fn)(void *owner, const rpc_frame *f, int oversize);
#define RPC__FRAME_PAUSE 1

/* Account for n bytes just read into data + len (n may be 0: resume after a pause), and hand
 * every whole frame to fn, in order. With b->urgent set, every whole frame of that type already
 * in the buffer is handed over first, once, ahead of the frames before it (a PING does not wait
 * behind the handlers of the requests before it), up to the first frame that is incomplete,
 * malformed, or of a type not in b->takes: past a protocol error nothing is answered. The owner
 * sets b->takes with b->urgent (0 takes no type: the scan answers nothing, the main parse still
 * hands over every frame). Returns 0, RPC__FRAME_PAUSE (fn paused; the
 * rest is kept), -EPROTO (malformed header), fn's negative return, or -ENOMEM (could not
 * grow). */
int rpc__rbuf_consume(rpc__rbuf *b, size_t n, size_t max_body, rpc__frame_fn fn, void *owner);

/* ---- Inbox: items posted from any thread to a loop, woken with gaio_post(). --------------- */

typedef struct rpc__item {
  struct rpc__item *next;
  int kind; /* owner's tag */
} rpc__item;

typedef struct rpc__inbox {
  int kind; /* RPC__CTX_INBOX: the ctx of its gaio_post() */
  gaio_watcher *w;
  pthread_mutex_t mu;
  rpc__item *head, *tail;
  int signalled; /* a post is on its way and the loop has not taken the items yet */
  int closed;
  unsigned posting; /* threads inside gaio_post() for this inbox */
} rpc__inbox;

/* Set up an inbox that wakes the loop of w. Never fails. */
void rpc__inbox_init(rpc__inbox *ib, gaio_watcher *w);
/* Queue it and wake the loop (one gaio_post() per batch of items). Any thread. Returns 0, or
 * -ESHUTDOWN when the inbox is closed (the caller keeps it). While the watcher has no request
 * to spare (-ENOBUFS, -ENOMEM), the posting thread waits and retries: the item is queued
 * already and must not be lost. */
int rpc__inbox_post(rpc__inbox *ib, rpc__item *it);
/* Loop thread: take every queued item (in posting order); with close set, also close the
 * inbox so later posts fail. */
rpc__item *rpc__inbox_take(rpc__inbox *ib, int close);
/* Waits for threads still inside gaio_post() on it: call it before destroying the watcher. */
void rpc__inbox_destroy(rpc__inbox *ib);

/* ---- Addresses. ---------------------------------------------------------------------------- */

#define RPC__MAX_PORT 65535u /* a TCP port: a larger number is refused, not wrapped */

/* Parse "host:port", "[v6]:port" or "unix:/path" (len bytes of s); port is decimal digits, at
 * most RPC__MAX_PORT. Returns 0 or -EINVAL. */
int rpc__parse_addr(const char *s, size_t len, struct sockaddr_storage *ss, socklen_t *sl);

/* Copy a status message, truncated to RPC_MAX_ERROR_MESSAGE bytes, NUL-terminated (malloc). */
char *rpc__msgdup(const char *s, size_t len);

/* FNV-1a method id of method i of a service descriptor; 0 on -ENOMEM (very long names). */
struct ProtobufCServiceDescriptor;
uint32_t rpc__method_id_of(const struct ProtobufCServiceDescriptor *svc, unsigned i);

/* Test hook, for the tests of request-id exhaustion (WIRE.md section 3) without 4 billion
 * calls: the client connections that take calls when the channel thread gets this (in order
 * with the calls submitted before and after it) give their next call the wire id id, if it is
 * above their next one; connections made later still start at 1. Any thread but the channel
 * thread. Returns 0, or -EINVAL (id 0), -ENOMEM, -ESHUTDOWN. The tests declare it themselves:
 * this header is private to //rpc. */
struct rpc_channel;
int rpc__channel_set_next_wire_id(struct rpc_channel *ch, uint32_t id);

#endif /* GAIO_RPC_INTERNAL_H */
