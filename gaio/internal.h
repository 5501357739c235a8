/* Private to //gaio: the watcher, request and per-fd structures shared by the core (gaio.c) and
 * the backends. Functions named gaio__* are internal and non-static. */
#ifndef GAIO_INTERNAL_H
#define GAIO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gaio/backend.h"
#include "gaio/gaio.h"
#include "gaio/heap.h"
#include "gaio/queue.h"

/* Internal request kinds, after the public enum gaio_op. They travel through the submission
 * queue like I/O requests but produce no result. */
enum { GAIO__OP_ATTACH = 16, GAIO__OP_FREE = 17 };

/* gaio__req.flags */
enum {
  GAIO__REQ_SWAP = 1u << 0,     /* submitted with a NULL buffer: reads into the swap buffer */
  GAIO__REQ_IN_HEAP = 1u << 1,  /* linked in the deadline heap */
  GAIO__REQ_KERNEL = 1u << 2,   /* io_uring: the kernel holds it (an SQE was queued for it) */
  GAIO__REQ_CANCEL = 1u << 3,   /* io_uring: a cancel was asked for; `error` holds the error to
                                   complete with if the kernel confirms it */
  GAIO__REQ_TRUNC = 1u << 4,    /* a datagram was truncated (GAIO_RESULT_TRUNC) */
  GAIO__REQ_POLL = 1u << 5,     /* io_uring: the kernel holds a readiness poll for it, not the
                                   operation itself (the operation said EAGAIN) */
};

/* One submitted operation. Lives in a slab; linked in exactly one queue at a time: the
 * submission queue, an fd's read or write queue, the pending timers, the done queue, or the free
 * list. */
typedef struct gaio__req {
  gaio__queue link;
  gaio__heap_node heap;   /* deadline heap, when deadline != 0 */
  struct gaio__fd *f;     /* the fd entry, once queued on it; always NULL for core ops */
  void *ctx;
  char *buf;
  size_t len;
  size_t done;            /* bytes transferred so far */
  uint64_t deadline;      /* absolute, gaio_now() base; 0 = none */
  uint64_t seq;           /* submission order: FIFO tiebreak among equal deadlines */
  int fd;
  int error;
  uint8_t op;
  uint8_t flags;
  uint16_t be_tag;        /* backend scratch (io_uring: buffer id, or requests in a send) */
  void *be_ptr;           /* backend scratch (io_uring: the msghdr block of the operation) */
  union {
    struct {              /* GAIO__OP_ATTACH */
      uint32_t gen;       /* the generation given to the backend */
      uint32_t kind;      /* GAIO__FD_SOCK / GAIO__FD_STREAM / GAIO__FD_WAS_NONBLOCK */
    } attach;
    struct {              /* accept, connect, recvfrom, sendto */
      void *addr;         /* accept/recvfrom: struct sockaddr_storage *; sendto: the target */
      uint32_t addr_len;  /* in: sendto's length; out: the peer address length */
      int conn_fd;        /* accept: the new connection, -1 until there is one */
    } sock;
  } u;
} gaio__req;

/* The direction queue of an operation: connect, sends and shutdown travel with the writes. */
static inline int gaio__is_write_op(int op) {
  return op == GAIO_OP_WRITE || op == GAIO_OP_SENDTO || op == GAIO_OP_CONNECT ||
         op == GAIO_OP_SHUTDOWN;
}

/* Requests with no fd (timers, posts): the core completes them itself, so no backend ever sees
 * one, and they need no attached fd at submit. */
static inline int gaio__is_core_op(int op) { return op == GAIO_OP_TIMER || op == GAIO_OP_POST; }

/* gaio__fd.state, loop-owned. */
enum {
  GAIO__FD_LIVE = 1u << 0,       /* attached, as far as the loop knows */
  GAIO__FD_RD_BLOCKED = 1u << 1, /* a read saw EAGAIN (or a short read): wait for an event */
  GAIO__FD_WR_BLOCKED = 1u << 2, /* a write saw EAGAIN (or a short write): wait for an event */
  GAIO__FD_SOCK = 1u << 3,       /* a socket: writes use sendmsg(MSG_NOSIGNAL) */
  GAIO__FD_STREAM = 1u << 4,     /* a stream socket: a short read means the buffer is drained */
  GAIO__FD_HUP = 1u << 5,        /* the peer hung up or the socket has an error (seen in an
                                    event): short reads and writes no longer mean "wait for an
                                    edge", since the edge that reported it is already consumed */
  GAIO__FD_WAS_NONBLOCK = 1u << 6, /* O_NONBLOCK was set before gaio_attach (for gaio_detach) */
  GAIO__FD_BE1 = 1u << 8,          /* backend-defined bits */
  GAIO__FD_BE2 = 1u << 9,
  GAIO__FD_BE3 = 1u << 10,
  GAIO__FD_BE4 = 1u << 11,
};

/* gaio__fd.owned: who may submit on the fd. */
enum {
  GAIO__OWNED_NO = 0,
  GAIO__OWNED_YES = 1,     /* attached: submits accepted */
  GAIO__OWNED_FREEING = 2, /* gaio_free() called: submits refused, the loop will release it */
};

/* Per-fd state, in a table indexed by fd. Chunks of the table never move, so the queue heads
 * inside can be intrusive. Everything but `owned` is touched by the loop thread only. */
typedef struct gaio__fd {
  gaio__queue rq;        /* pending reads, FIFO */
  gaio__queue wq;        /* pending writes, FIFO */
  gaio__queue kick_link; /* in w->kicks or w->deferred */
  size_t wbytes;         /* bytes of the queued writes */
  int fd;
  uint32_t gen;          /* generation of the current attachment (stale-event guard) */
  uint16_t state;
  atomic_uchar owned;    /* GAIO__OWNED_*: set by gaio_attach and gaio_free (any thread, under
                            the lock), cleared when the loop releases the fd */
} gaio__fd;

#define GAIO__FD_CHUNK 256u
#define GAIO__TIMER_BUCKETS 1024u /* a power of two */

/* A single-writer counter: written by one thread at a time (the loop, or a submitter holding
 * the lock), read from any thread. Relaxed atomics keep the reads race-free at no cost. */
typedef _Atomic uint64_t gaio__counter;

struct gaio_watcher {
  const struct gaio__backend *be;
  void *be_state;

  /* Limits (options with defaults applied). */
  size_t swap_size, read_max, max_write_pending;
  unsigned max_events, max_requests, ring_entries;
  int one_thread; /* gaio_options.one_thread: the core holds every loop call to one thread */
  int one_issuer; /* and the backend's kernel side too (io_uring DEFER_TASKRUN): set by it */
  int owner_set;  /* one_thread: owner is the thread that entered the loop first */
  pthread_t owner;

  /* Shared with submitting threads: under `lock`. */
  pthread_mutex_t lock;
  gaio__queue pending;   /* submissions not yet seen by the loop */
  gaio__queue free_reqs; /* request free list */
  void *slabs;           /* singly linked list of request slabs */
  unsigned live_reqs;    /* I/O requests out of the free list (attach/free are bounded by the
                            fds instead: at most one of each per fd at a time) */
  uint64_t next_seq;
  uint32_t next_gen;
  int sleeping;          /* the loop is (about to be) blocked in poll */
  int wake_sent;         /* a wakeup is on its way since the last flush */
  atomic_int closed;
  atomic_int in_wait;    /* a thread is inside gaio_wait */

  /* The fd table: chunk pointers published with release stores by gaio_attach. */
  _Atomic(gaio__fd *) *chunks;
  size_t nchunks;

  /* Loop-owned. */
  gaio__queue done;     /* completed, not yet delivered */
  gaio__queue spent;    /* delivered or internal requests, to return to the free list */
  gaio__queue kicks;    /* fds whose queues changed */
  gaio__queue deferred; /* fds whose head NULL-buffer read waits for swap space */
  gaio__heap timers;    /* every pending deadline (I/O and timers), keyed (deadline, seq) */
  /* Pending timers, hashed by ctx, each bucket in submission order: gaio_timer_cancel()
   * searches one bucket (the first match is the oldest timer with that ctx), close sweeps all. */
  gaio__queue timer_q[GAIO__TIMER_BUCKETS];
  char *swap;
  size_t swap_used;
  unsigned swap_out;    /* undelivered results that point into the swap buffer */
  unsigned unpolled;    /* consecutive waits that returned without polling */
  int swept;            /* close has been carried out by the loop */
  int poll_error;       /* a backend poll error held back while results were delivered: the
                           next gaio_wait() returns it once the done queue is empty */

  gaio__counter submitted, completed, bytes_read, bytes_written, queued;
  /* Loop metrics (loop thread): waits in the kernel, time blocked there, the events or CQEs
   * they returned, and socket reads and writes that moved bytes. */
  gaio__counter polls, idle_ns, events, reads, writes;
  atomic_ullong nfds;
};

/* --- Called by backends (loop thread). --- */

/* Finish req with error (0, -errno or GAIO_EOF): unlink it from its fd queue and the deadline
 * heap and queue it for delivery. If it was the head of its fd queue, the fd is kicked again. */
void gaio__complete(struct gaio_watcher *w, gaio__req *req, int error);

/* Finish r with error at once, or, if the backend holds it in the kernel, ask the backend to
 * (it then completes r when the kernel answers, maybe with r's own outcome). r leaves the
 * deadline heap either way. */
void gaio__cancel(struct gaio_watcher *w, gaio__req *req, int error);

/* req, a shutdown, is the head of its fd's write queue (every write before it has completed):
 * call shutdown(2) and complete req with its outcome. The request behind it is kicked. */
void gaio__shutdown_run(struct gaio_watcher *w, gaio__req *req);

/* f's queues need attention at the next kick round (loop thread). */
void gaio__kick(struct gaio_watcher *w, gaio__fd *f);

/* A slice of read_max bytes of the swap buffer, or NULL when it is used up for this batch. */
char *gaio__swap_take(struct gaio_watcher *w);

/* The slice taken last got only `used` bytes: give the rest back, so that small reads do not
 * use up the swap buffer a whole read_max at a time. */
void gaio__swap_trim(struct gaio_watcher *w, char *slice, size_t used);

/* Give back the slice taken last (the read that wanted it found no data). */
void gaio__swap_return(struct gaio_watcher *w, char *slice);

/* f's head read needs swap space: retry it at the next gaio_wait(), when the buffer is recycled. */
void gaio__defer(struct gaio_watcher *w, gaio__fd *f);

/* The live entry for an event tagged (fd, gen), or NULL if the event is stale. */
gaio__fd *gaio__fd_event(struct gaio_watcher *w, int fd, uint32_t gen);

static inline void gaio__count(gaio__counter *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

/* A socket read or write of n bytes (backends, loop thread). */
static inline void gaio__count_read(struct gaio_watcher *w, uint64_t n) {
  gaio__count(&w->bytes_read, n);
  gaio__count(&w->reads, 1);
}

static inline void gaio__count_write(struct gaio_watcher *w, uint64_t n) {
  gaio__count(&w->bytes_written, n);
  gaio__count(&w->writes, 1);
}

#endif /* GAIO_INTERNAL_H */
