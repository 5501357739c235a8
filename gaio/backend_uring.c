/* io_uring backend (liburing). The kernel holds the head request of each direction of each fd:
 * one SQE for the head read (or accept, or receive), one for the head writes (queued stream
 * writes go out together as one sendmsg, up to GAIO_MAX_WRITE_IOV), so FIFO order per
 * direction holds. A shutdown at the head of the writes takes no SQE: it runs in the loop. SQEs
 * are queued by kicks and submitted by the next poll together with the wait for completions:
 * one io_uring_enter per wait. Deadlines stay in the core's heap, and an expired request that
 * the kernel holds is cancelled by its user_data. The earliest deadline is held by one absolute
 * IORING_OP_TIMEOUT, moved only when an earlier deadline comes, so that the waits themselves are
 * untimed: a timed wait (the timeout argument of IORING_FEAT_EXT_ARG, still the fallback) arms
 * and cancels a kernel timer at every wait (holding it instead gave a one-CPU RPC ping-pong,
 * whose server has an idle timeout pending, 0.6-0.8% more calls/s).
 *
 * NULL-buffer reads use a provided-buffer ring over the watcher's swap buffer: the kernel picks
 * a read_max slice only when data arrives, so idle connections hold no buffer. Slices come back
 * to the ring when a new gaio_wait() begins and no result points into the swap buffer any more;
 * a read that finds the ring empty (-ENOBUFS) waits for that, as on epoll.
 *
 * An operation that answers -EAGAIN (a non-socket fd opened O_NONBLOCK, for instance) is
 * retried after a one-shot readiness poll. In fault runs (gaio/fault.h) the injector may give
 * an operation that EAGAIN before it is submitted, a shorter length, or the kernel's answer to
 * a reset connection or a full fd table (inject()). Needs Linux 5.19 (buffer rings, cancel by
 * fd); init fails, and the automatic choice falls back to epoll, on anything older. */
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gaio/fault.h"
#include "gaio/internal.h"

/* user_data: a request pointer (requests are 8-aligned), with the low bits saying what the SQE
 * is for. 0 marks SQEs whose completion needs nothing (cancels). */
#define UD_OP 0u   /* the request's operation */
#define UD_POLL 1u /* a readiness poll for the request, after EAGAIN */
#define UD_WAKE 2u /* the wakeup eventfd read (no request) */
#define UD_TIMER 3u /* the deadline timer (no request) */
#define UD_ACCEPTS 4u /* a multishot accept: the pointer is the listener's gaio__fd */
#define UD_MASK 7u
#define BGID 0 /* the one buffer group of the ring */

/* A cancel of a request queued behind a head that is itself being cancelled waits for the
 * head, so that requests that expire together complete in FIFO order, as on epoll. */
#define FD_LATE_CANCELS GAIO__FD_BE1

/* Multishot accept (5.19): with several accepts queued on a listener and no peer address asked
 * for, one SQE accepts connection after connection, each completing the head accept. The
 * kernel drains the whole accept queue at each wakeup, so it may take more connections than
 * are asked for: those wait in a stash for the next accepts, and the multishot is cancelled as
 * soon as that happens (or no accept is queued), and armed again only once the stash of that
 * listener is empty. So one arming takes at most one accept queue's worth (the listen backlog)
 * beyond the requests. */
#define FD_MULTISHOT GAIO__FD_BE2    /* armed */
#define FD_MS_CANCEL GAIO__FD_BE3    /* its cancel is on the way */

/* A cancel asked for on this fd found no free SQE: a kick sends it (see ur_cancel). */
#define FD_CANCEL_OWED GAIO__FD_BE4

/* The msghdr and iovecs of an operation that needs them (sendmsg, recvmsg): they must stay put
 * until its completion. Kept on a free list, allocated on demand. */
struct mblock {
  struct msghdr msg;
  struct iovec iov[GAIO_MAX_WRITE_IOV];
  struct mblock *next;
};

struct uring_state {
  struct io_uring ring;
  int evfd;
  uint64_t evbuf;
  struct io_uring_buf_ring *br;
  size_t br_size;
  unsigned nbufs;     /* slices of the swap buffer in the ring (a power of two) */
  uint16_t *used;     /* ids of slices handed out since the last recycle */
  unsigned nused;
  int bufs_empty;     /* a read met -ENOBUFS: hold NULL-buffer reads until the recycle */
  struct stashed {
    gaio__fd *f;
    int fd;
  } *stash; /* connections a multishot accept took beyond the accepts queued */
  unsigned nstash, stash_cap;
  struct mblock *free_blocks;
  gaio__queue stalled; /* fds whose SQE could not be queued (no SQE, no memory): retried after
                          the next poll, by their kick_link */
  int started;         /* the ring is enabled (one_thread: by the first thread that enters) */
  int wake_armed;      /* the read of the wakeup eventfd is queued or in the kernel */
  int timer_armed;     /* the UD_TIMER timeout is queued or in the kernel, set for timer_until */
  int timer_off;       /* the kernel refused it: polls use timed waits from then on */
  int timer_refuse;    /* test hook: every timer is armed with a time the kernel refuses */
  uint64_t timer_until;
  struct __kernel_timespec timer_ts; /* read by the kernel when the SQE is submitted */
  int error;           /* an io_uring_enter error met where it cannot be returned (in a kick or
                          a cancel): the next poll returns it */
  int dead;            /* io_uring_enter failed for good while a detach waited for the kernel:
                          requests may still be in the kernel, so completions are never reaped
                          again, and every poll returns this error */
};

static struct uring_state *state_of(gaio_watcher *w) { return w->be_state; }

static gaio__req *head_of(gaio__queue *q) {
  return gaio__queue_empty(q) ? NULL : gaio__container_of(gaio__queue_head(q), gaio__req, link);
}

/* ---- SQEs ---- */

/* Does an io_uring_enter result call for more than a retry? -EINTR (a signal), -EAGAIN (the
 * kernel is short of memory for requests) and -EBUSY (the completion queue is full: reaping
 * makes room) pass; -ETIME is a wait that timed out. Anything else (-EBADR: the kernel dropped
 * completions, 5.19; -EFAULT, -EOPNOTSUPP: the ring fd is not a ring any more, ...) must reach
 * the caller of gaio_wait(). */
static int enter_failed(int rc) {
  return rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY;
}

static void note_error(struct uring_state *s, int rc) {
  if (enter_failed(rc) && s->error == 0) s->error = rc;
}

/* A one_thread ring starts disabled, so that its single issuer is the loop's thread, not the
 * one that made the watcher: the first thread to enter the kernel enables it (liburing 2.3 has
 * no wrapper for that). Returns 0 or a negative errno. */
static int ring_start(struct uring_state *s) {
  if (s->started) return 0;
  if (syscall(__NR_io_uring_register, s->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) != 0)
    return -errno;
  s->started = 1;
  return 0;
}

/* An SQE, flushing the submission queue to the kernel when it is full. Completions cannot be
 * reaped here, in the middle of a kick, so when the kernel takes none (the completion queue is
 * full, or an error, kept for the next poll) this returns NULL and the caller retries after the
 * next poll, which reaps first. */
static struct io_uring_sqe *sqe_get(struct uring_state *s) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
  if (sqe == NULL) {
    int rc = ring_start(s);
    note_error(s, rc != 0 ? rc : io_uring_submit(&s->ring));
    sqe = io_uring_get_sqe(&s->ring);
  }
  return sqe;
}

/* Without it a wakeup (a submit or a close from another thread) would go unseen: when no SQE
 * is free, wake_armed stays 0 and the next poll arms it, waiting at most 1 ms until it can. */
static void arm_wakeup(struct uring_state *s) {
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) return;
  io_uring_prep_read(sqe, s->evfd, &s->evbuf, sizeof(s->evbuf), 0);
  io_uring_sqe_set_data64(sqe, UD_WAKE);
  s->wake_armed = 1;
}

/* The deadline timer must fire by until: arm it, or move it earlier (a timeout update, 5.11). A
 * timer set later than needed is left as it is: it fires early, the core finds nothing due and
 * polls again. At most one UD_TIMER timeout is in the kernel, and its one completion (it fired,
 * or failed) disarms it. Returns 0 when no SQE is free: the caller waits with a timeout. */
static int hold_timer(struct uring_state *s, uint64_t until) {
  if (s->timer_armed && s->timer_until <= until) return 1;
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) return 0;
  s->timer_ts.tv_sec = s->timer_refuse ? -1 : (long long)(until / 1000000000u);
  s->timer_ts.tv_nsec = (long long)(until % 1000000000u);
  if (s->timer_armed) {
    /* Its completion is 0 or, when the timer has already fired, -ENOENT: nothing to do. */
    io_uring_prep_timeout_update(sqe, &s->timer_ts, UD_TIMER, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, 0);
  } else {
    io_uring_prep_timeout(sqe, &s->timer_ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, UD_TIMER);
  }
  s->timer_armed = 1;
  s->timer_until = until;
  return 1;
}

static void timer_done(struct uring_state *s, int res) {
  assert(s->timer_armed);
  s->timer_armed = 0;
  if (res != -ETIME && res != -ECANCELED) s->timer_off = 1; /* -EINVAL, -ENOMEM, ... */
}

static struct mblock *block_get(struct uring_state *s) {
  struct mblock *b = s->free_blocks;
  if (b != NULL) {
    s->free_blocks = b->next;
  } else if ((b = gaio__malloc(sizeof(*b))) == NULL) {
    return NULL;
  }
  memset(&b->msg, 0, sizeof(b->msg));
  b->msg.msg_iov = b->iov;
  return b;
}

static void block_put(struct uring_state *s, gaio__req *r) {
  struct mblock *b = r->be_ptr;
  if (b == NULL) return;
  b->next = s->free_blocks;
  s->free_blocks = b;
  r->be_ptr = NULL;
}

static void hold(gaio__req *r, struct io_uring_sqe *sqe, unsigned kind) {
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)r | kind);
  r->flags |= GAIO__REQ_KERNEL;
  if (kind == UD_POLL) r->flags |= GAIO__REQ_POLL;
}

static int inject(gaio_watcher *w, gaio__fd *f, gaio__req *r, unsigned allow, size_t *len);

/* Queue the SQE of the head read-side request r. Returns 0, or -1 if it could not be queued
 * now (no SQE or no memory: the fd is kicked again later). */
static int submit_read(gaio_watcher *w, gaio__fd *f, gaio__req *r) {
  struct uring_state *s = state_of(w);
  if ((r->flags & GAIO__REQ_SWAP) && s->bufs_empty) {
    gaio__defer(w, f);
    return 0;
  }
  /* The SQE's length field is 32 bits (liburing casts it): a 4 GiB read would become a 0-byte
   * read, a false end of stream. A read completes on its first bytes anyway; a read-full goes
   * on with the rest in the next SQE (read_done). */
  size_t want = r->len - r->done;
  if (want > GAIO_MAX_IO_CHUNK) want = GAIO_MAX_IO_CHUNK;
  size_t swap_len = w->read_max;
  if (GAIO__FAULT) {
    int bytes = r->op == GAIO_OP_READ || r->op == GAIO_OP_READ_FULL;
    unsigned allow = r->op == GAIO_OP_ACCEPT ? GAIO__FAULTS_ACCEPT
                     : bytes                 ? GAIO__FAULTS_READ
                                             : GAIO__FAULTS_RETRY;
    size_t *len = !bytes ? NULL : (r->flags & GAIO__REQ_SWAP) ? &swap_len : &want;
    int rc = inject(w, f, r, allow, len);
    if (rc != 0) return rc < 0 ? -1 : 0;
  }
  struct mblock *b = NULL;
  if (r->op == GAIO_OP_RECVFROM && (b = block_get(s)) == NULL) return -1;
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) {
    if (b != NULL) {
      r->be_ptr = b;
      block_put(s, r);
    }
    return -1;
  }
  if (r->op == GAIO_OP_ACCEPT) {
    r->u.sock.addr_len = sizeof(struct sockaddr_storage);
    io_uring_prep_accept(sqe, f->fd, r->u.sock.addr,
                         r->u.sock.addr ? (socklen_t *)&r->u.sock.addr_len : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
  } else if (r->op == GAIO_OP_RECVFROM) {
    r->be_ptr = b;
    b->iov[0].iov_base = r->buf;
    b->iov[0].iov_len = (r->flags & GAIO__REQ_SWAP) ? w->read_max : r->len;
    b->msg.msg_iovlen = 1;
    b->msg.msg_name = r->u.sock.addr;
    b->msg.msg_namelen = r->u.sock.addr ? sizeof(struct sockaddr_storage) : 0;
    io_uring_prep_recvmsg(sqe, f->fd, &b->msg, 0);
  } else if (r->flags & GAIO__REQ_SWAP) {
    io_uring_prep_recv(sqe, f->fd, NULL, swap_len, 0);
  } else if (f->state & GAIO__FD_SOCK) {
    /* MSG_WAITALL: the kernel itself keeps filling a read-full on a stream. */
    int full = r->op == GAIO_OP_READ_FULL && (f->state & GAIO__FD_STREAM);
    io_uring_prep_recv(sqe, f->fd, r->buf + r->done, want, full ? MSG_WAITALL : 0);
  } else {
    io_uring_prep_read(sqe, f->fd, r->buf + r->done, (unsigned)want, (uint64_t)-1);
  }
  if (r->flags & GAIO__REQ_SWAP) {
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
  }
  hold(r, sqe, UD_OP);
  return 0;
}

/* Queue one SQE for the head write-side requests: a connect's readiness poll, one sendto, or
 * the queued writes coalesced into one sendmsg/writev. */
static int submit_write(gaio_watcher *w, gaio__fd *f, gaio__req *head) {
  struct uring_state *s = state_of(w);
  if (head->op == GAIO_OP_CONNECT) {
    struct io_uring_sqe *sqe = sqe_get(s);
    if (sqe == NULL) return -1;
    io_uring_prep_poll_add(sqe, f->fd, POLLOUT);
    hold(head, sqe, UD_OP);
    return 0;
  }
  int message = head->op == GAIO_OP_SENDTO ||
                (f->state & (GAIO__FD_SOCK | GAIO__FD_STREAM)) == GAIO__FD_SOCK;
  size_t left = head->len - head->done;
  size_t limit = GAIO_MAX_IO_CHUNK; /* bytes of a stream write: less in a fault run */
  if (GAIO__FAULT) {
    size_t cut = left;
    int rc = inject(w, f, head, message ? GAIO__FAULTS_RETRY : GAIO__FAULTS_WRITE,
                    message ? NULL : &cut);
    if (rc != 0) return rc < 0 ? -1 : 0;
    if (cut < limit) limit = cut;
  }
  if (head->op == GAIO_OP_WRITE && (!message || left <= GAIO_MAX_IO_CHUNK) &&
      (message || head->link.next == &f->wq ||
       gaio__container_of(head->link.next, gaio__req, link)->op != GAIO_OP_WRITE)) {
    /* One write alone: no msghdr needed. The SQE's length is 32 bits, so a stream write goes
     * in chunks of GAIO_MAX_IO_CHUNK (writes_advance submits the rest); a message is never
     * split: a longer one takes the msghdr below, and the kernel's verdict (-EMSGSIZE). */
    struct io_uring_sqe *sqe = sqe_get(s);
    if (sqe == NULL) return -1;
    if (left > limit) left = limit;
    if (f->state & GAIO__FD_SOCK)
      io_uring_prep_send(sqe, f->fd, head->buf + head->done, left, MSG_NOSIGNAL);
    else
      io_uring_prep_write(sqe, f->fd, head->buf + head->done, (unsigned)left, (uint64_t)-1);
    head->be_tag = 1;
    hold(head, sqe, UD_OP);
    return 0;
  }
  struct mblock *b = block_get(s);
  if (b == NULL) return -1;
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) {
    head->be_ptr = b;
    block_put(s, head);
    return -1;
  }
  /* A stream group carries at most GAIO_MAX_IO_CHUNK bytes: the result is an int, and the
   * kernel cuts a call at 2 GiB anyway. Only the last iovec is ever cut, so the bytes written
   * are always a prefix of the group, as writes_advance assumes. */
  size_t cnt = 0, max = message ? 1 : GAIO_MAX_WRITE_IOV, total = 0;
  for (gaio__queue *q = gaio__queue_head(&f->wq);
       q != &f->wq && cnt < max && total < limit; q = q->next) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    if (r->op != GAIO_OP_WRITE && cnt > 0) break; /* a connect, sendto or shutdown: alone */
    size_t n = r->len - r->done;
    if (!message && n > limit - total) n = limit - total;
    b->iov[cnt].iov_base = r->buf + r->done;
    b->iov[cnt++].iov_len = n;
    total += n;
    r->flags |= GAIO__REQ_KERNEL;
  }
  b->msg.msg_iovlen = cnt;
  if (head->op == GAIO_OP_SENDTO) {
    b->msg.msg_name = head->u.sock.addr;
    b->msg.msg_namelen = head->u.sock.addr_len;
  }
  head->be_ptr = b;
  head->be_tag = (uint16_t)cnt;
  if (f->state & GAIO__FD_SOCK)
    io_uring_prep_sendmsg(sqe, f->fd, &b->msg, MSG_NOSIGNAL);
  else
    io_uring_prep_writev(sqe, f->fd, b->iov, (unsigned)cnt, (uint64_t)-1);
  hold(head, sqe, UD_OP);
  return 0;
}

/* After EAGAIN: wait for readiness with a one-shot poll, then the kick retries the operation. */
static int submit_poll(gaio_watcher *w, gaio__req *r) {
  struct io_uring_sqe *sqe = sqe_get(state_of(w));
  if (sqe == NULL) return -1;
  unsigned mask = gaio__is_write_op(r->op) ? POLLOUT : POLLIN;
  io_uring_prep_poll_add(sqe, r->fd, mask);
  hold(r, sqe, UD_POLL);
  return 0;
}

/* Fault runs: the fault the injector picks for the operation r is about to get, among allow
 * (fault.h). EAGAIN arms the readiness poll that a real -EAGAIN arms; a reset (the fd is shut
 * down by then) or EMFILE completes r with what the kernel would have answered; a short length
 * is left in *len (NULL: never shortened). Returns 0 to submit the operation, 1 when r needs
 * none now, -1 when the poll found no SQE (as submit_read: the fd is kicked again later). */
static int inject(gaio_watcher *w, gaio__fd *f, gaio__req *r, unsigned allow, size_t *len) {
  switch (gaio__fault_pick(GAIO__FAULTS_KERNEL_OP(allow), f->fd, len)) {
    case GAIO__FAULT_EAGAIN:
      return submit_poll(w, r) == 0 ? 1 : -1;
    case GAIO__FAULT_RESET:
      gaio__complete(w, r, gaio__is_write_op(r->op) ? -EPIPE : -ECONNRESET);
      return 1;
    case GAIO__FAULT_EMFILE:
      gaio__complete(w, r, -EMFILE);
      return 1;
    default:
      return 0;
  }
}

/* Complete the requests of q whose cancel waited for the head (see ur_cancel), in order. */
static void late_cancels(gaio_watcher *w, gaio__queue *q) {
  gaio__req *h = head_of(q);
  if (h != NULL && (h->flags & GAIO__REQ_KERNEL)) return;
  for (gaio__queue *it = q->next; it != q;) {
    gaio__req *r = gaio__container_of(it, gaio__req, link);
    it = it->next;
    if (r->flags & GAIO__REQ_CANCEL) gaio__complete(w, r, r->error);
  }
}

/* The connection goes to r, the head accept; the peer address, if r wants it, is asked for.
 * A connection reset before that has no address any more: r then fails as accept4() with an
 * address would, with -ECONNABORTED, and the connection is closed. */
static void accept_give(gaio_watcher *w, gaio__req *r, int fd) {
  r->u.sock.addr_len = 0;
  if (r->u.sock.addr != NULL) {
    socklen_t len = sizeof(struct sockaddr_storage);
    if (getpeername(fd, r->u.sock.addr, &len) != 0) {
      close(fd);
      gaio__complete(w, r, -ECONNABORTED);
      return;
    }
    r->u.sock.addr_len = len;
  }
  r->u.sock.conn_fd = fd;
  gaio__complete(w, r, 0);
}

static int is_accept(const gaio__req *r) { return r != NULL && r->op == GAIO_OP_ACCEPT; }

/* Accepts on f: served from the stash first; then a multishot accept is armed, kept, or
 * cancelled. Returns 1 when the read side needs no SQE of its own. */
static int accepts(gaio_watcher *w, gaio__fd *f) {
  struct uring_state *s = state_of(w);
  gaio__req *r;
  int left = 0; /* connections of f still stashed */
  unsigned k = 0;
  for (unsigned i = 0; i < s->nstash; i++) {
    if (s->stash[i].f == f && is_accept(r = head_of(&f->rq))) {
      accept_give(w, r, s->stash[i].fd);
      continue;
    }
    left += s->stash[i].f == f;
    s->stash[k++] = s->stash[i];
  }
  s->nstash = k;
  r = head_of(&f->rq);
  if (f->state & FD_MULTISHOT) {
    if ((!is_accept(r) || left) && !(f->state & FD_MS_CANCEL)) {
      struct io_uring_sqe *sqe = sqe_get(s);
      if (sqe == NULL) return 1;
      io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)f | UD_ACCEPTS, 0);
      io_uring_sqe_set_data64(sqe, 0);
      f->state |= FD_MS_CANCEL;
    }
    return 1;
  }
  if (left || !is_accept(r) || r->u.sock.addr != NULL || (r->flags & GAIO__REQ_KERNEL) ||
      r->link.next == &f->rq || !is_accept(gaio__container_of(r->link.next, gaio__req, link)))
    return 0;
  /* The injector's EAGAIN or EMFILE goes to the head accept, as from a single accept. With
   * no SQE for the poll, the single accept below finds none either, and the fd stalls. */
  int rc = GAIO__FAULT ? inject(w, f, r, GAIO__FAULTS_ACCEPT, NULL) : 0;
  if (rc != 0) return rc > 0;
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) return 0;
  io_uring_prep_multishot_accept(sqe, f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)f | UD_ACCEPTS);
  f->state |= FD_MULTISHOT;
  return 1;
}

/* Keep a connection nobody asked for yet. Returns 0, or -1 without memory (then it is closed,
 * as an accept queue overflow would drop it). */
static int stash_add(struct uring_state *s, gaio__fd *f, int fd) {
  if (s->nstash == s->stash_cap) {
    unsigned cap = s->stash_cap ? s->stash_cap * 2 : 64;
    struct stashed *n = gaio__realloc(s->stash, cap * sizeof(*n));
    if (n == NULL) return -1;
    s->stash = n;
    s->stash_cap = cap;
  }
  s->stash[s->nstash++] = (struct stashed){f, fd};
  return 0;
}

static void accepts_done(gaio_watcher *w, gaio__fd *f, int res, uint32_t cflags) {
  struct uring_state *s = state_of(w);
  assert((f->state & GAIO__FD_LIVE) && (f->state & FD_MULTISHOT)); /* detach waits for it */
  gaio__req *r = head_of(&f->rq);
  if (res >= 0) {
    if (is_accept(r) && !(r->flags & GAIO__REQ_KERNEL))
      accept_give(w, r, res);
    else if (stash_add(s, f, res) != 0)
      close(res);
  } else if (res != -ECANCELED && is_accept(r) && !(r->flags & GAIO__REQ_KERNEL)) {
    gaio__complete(w, r, res); /* -EMFILE and the like: this accept only */
  }
  if (!(cflags & IORING_CQE_F_MORE)) f->state &= (uint16_t)~(FD_MULTISHOT | FD_MS_CANCEL);
  gaio__kick(w, f);
}

/* Leave f to be kicked after the next poll: its SQE could not be queued now. */
static void stall(gaio_watcher *w, gaio__fd *f) {
  gaio__queue_remove(&f->kick_link);
  gaio__queue_push(&state_of(w)->stalled, &f->kick_link);
}

/* Queue the cancel of what the kernel holds for r: its own SQE, its readiness poll, or the
 * sendmsg of its write group (cancelled through the group's head). Returns 0, or -1 when no SQE
 * is free now. */
static int send_cancel(struct uring_state *s, gaio__req *r) {
  gaio__req *target = gaio__is_write_op(r->op) ? head_of(&r->f->wq) : r;
  uint64_t ud = (uint64_t)(uintptr_t)target | ((target->flags & GAIO__REQ_POLL) ? UD_POLL : UD_OP);
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) return -1;
  io_uring_prep_cancel64(sqe, ud, 0);
  io_uring_sqe_set_data64(sqe, 0);
  return 0;
}

/* Does the write group the kernel holds for f (the KERNEL-marked run at the head) have a
 * request whose cancel was asked for? At most GAIO_MAX_WRITE_IOV steps. */
static int group_cancelled(gaio__fd *f) {
  for (gaio__queue *q = f->wq.next; q != &f->wq; q = q->next) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    if (!(r->flags & GAIO__REQ_KERNEL)) return 0;
    if (r->flags & GAIO__REQ_CANCEL) return 1;
  }
  return 0;
}

/* Send the cancels of f that found no SQE (ur_cancel). A second cancel of an SQE that already
 * has one finds nothing and is harmless. */
static void owed_cancels(gaio_watcher *w, gaio__fd *f) {
  struct uring_state *s = state_of(w);
  gaio__req *r = head_of(&f->rq);
  int owed = 0;
  if (r != NULL && (r->flags & GAIO__REQ_KERNEL) && (r->flags & GAIO__REQ_CANCEL))
    owed |= send_cancel(s, r) != 0;
  r = head_of(&f->wq);
  if (r != NULL && (r->flags & GAIO__REQ_KERNEL) && group_cancelled(f))
    owed |= send_cancel(s, r) != 0;
  if (!owed) f->state &= (uint16_t)~FD_CANCEL_OWED;
}

static void ur_kick(gaio_watcher *w, gaio__fd *f) {
  if (f->state & FD_CANCEL_OWED) owed_cancels(w, f);
  if (f->state & FD_LATE_CANCELS) {
    late_cancels(w, &f->rq);
    late_cancels(w, &f->wq);
    if (!(head_of(&f->rq) && (head_of(&f->rq)->flags & GAIO__REQ_KERNEL)) &&
        !(head_of(&f->wq) && (head_of(&f->wq)->flags & GAIO__REQ_KERNEL)))
      f->state &= (uint16_t)~FD_LATE_CANCELS;
  }
  int again = 0;
  gaio__req *r = head_of(&f->rq);
  int served = (is_accept(r) || (f->state & FD_MULTISHOT)) && accepts(w, f);
  r = served ? NULL : head_of(&f->rq);
  if (r != NULL && !(r->flags & GAIO__REQ_KERNEL)) again |= submit_read(w, f, r);
  /* A shutdown at the head takes no SQE (IORING_OP_SHUTDOWN would only add a round trip):
   * shutdown(2) does not block, so it runs now, and what follows is submitted in this kick. */
  while ((r = head_of(&f->wq)) != NULL && r->op == GAIO_OP_SHUTDOWN) gaio__shutdown_run(w, r);
  if (r != NULL && !(r->flags & GAIO__REQ_KERNEL)) again |= submit_write(w, f, r);
  /* Out of SQEs or memory: retry after the next poll, not in this round. */
  if (again || (f->state & FD_CANCEL_OWED)) stall(w, f);
}

/* ---- Completions ---- */

/* The kernel gave r back without doing it (-ECANCELED, -EINTR). A cancel asked for by the core
 * completes it; otherwise (a detach, or another request of the same sendmsg was cancelled) it
 * stays queued, to be submitted again or completed by the core. */
static void gave_back(gaio_watcher *w, gaio__req *r) {
  if (r->flags & GAIO__REQ_CANCEL) {
    gaio__complete(w, r, r->error);
  } else {
    gaio__kick(w, r->f);
  }
}

static void take_buffer(gaio_watcher *w, gaio__req *r, uint32_t cflags) {
  struct uring_state *s = state_of(w);
  uint16_t bid = (uint16_t)(cflags >> IORING_CQE_BUFFER_SHIFT);
  assert(bid < s->nbufs && s->nused < s->nbufs); /* each slice is handed out once per recycle */
  s->used[s->nused++] = bid;
  r->buf = w->swap + (size_t)bid * w->read_max;
}

static void read_done(gaio_watcher *w, gaio__req *r, int res, uint32_t cflags) {
  gaio__fd *f = r->f;
  if (cflags & IORING_CQE_F_BUFFER) take_buffer(w, r, cflags);
  if (r->op == GAIO_OP_RECVFROM) {
    struct mblock *b = r->be_ptr;
    if (res >= 0) {
      r->u.sock.addr_len = r->u.sock.addr ? b->msg.msg_namelen : 0;
      if (b->msg.msg_flags & MSG_TRUNC) r->flags |= GAIO__REQ_TRUNC;
    }
    block_put(state_of(w), r);
    if (res >= 0 && (res > 0 || !(f->state & GAIO__FD_STREAM))) {
      r->done = (size_t)res;
      gaio__count_read(w, (uint64_t)res);
      gaio__complete(w, r, 0);
      return;
    }
  }
  if (r->op == GAIO_OP_ACCEPT && res >= 0) {
    r->u.sock.conn_fd = res;
    if (r->u.sock.addr == NULL) r->u.sock.addr_len = 0;
    gaio__complete(w, r, 0);
    return;
  }
  if (res > 0) {
    gaio__count_read(w, (uint64_t)res);
    r->done += (size_t)res;
    if (r->op == GAIO_OP_READ_FULL && r->done < r->len) {
      if (r->flags & GAIO__REQ_CANCEL)
        gaio__complete(w, r, r->error);
      else
        gaio__kick(w, f);
    } else {
      gaio__complete(w, r, 0);
    }
  } else if (res == 0) {
    gaio__complete(w, r, GAIO_EOF);
  } else if (res == -ENOBUFS && (r->flags & GAIO__REQ_SWAP) && !(r->flags & GAIO__REQ_CANCEL)) {
    state_of(w)->bufs_empty = 1;
    gaio__defer(w, f);
  } else if (res == -EAGAIN && !(r->flags & GAIO__REQ_CANCEL)) {
    if (submit_poll(w, r) != 0) gaio__kick(w, f);
  } else if (res == -ECANCELED || res == -EINTR || res == -ENOBUFS || res == -EAGAIN) {
    gave_back(w, r);
  } else {
    gaio__complete(w, r, res);
  }
}

/* The `rest` writes after `from` in f's write queue leave the kernel unsent. Those whose cancel
 * was asked for complete now: nothing of them was written (the write before them is unfinished),
 * so taking them out keeps the stream intact, as on epoll. Left queued, they would be submitted
 * again with no cancel on its way, and gaio_cancel() could wait for them forever. */
static void release_group(gaio_watcher *w, gaio__fd *f, gaio__queue *from, unsigned rest) {
  gaio__queue *q = from->next;
  for (unsigned j = 0; j < rest && q != &f->wq; j++) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    q = q->next;
    r->flags &= (uint8_t)~GAIO__REQ_KERNEL;
    if (r->flags & GAIO__REQ_CANCEL) gaio__complete(w, r, r->error);
  }
}

/* Spread n written bytes over the requests of one sendmsg, completing those fully written; the
 * rest are no longer held by the kernel. */
static void writes_advance(gaio_watcher *w, gaio__fd *f, unsigned cnt, size_t n) {
  for (unsigned i = 0; i < cnt; i++) {
    gaio__req *r = head_of(&f->wq);
    /* The group is still queued, in order (handle_cqe already unmarked the head). */
    assert(r != NULL && (i == 0 || (r->flags & GAIO__REQ_KERNEL)));
    size_t take = r->len - r->done < n ? r->len - r->done : n;
    r->done += take;
    n -= take;
    r->flags &= (uint8_t)~GAIO__REQ_KERNEL;
    if (r->done == r->len) {
      gaio__complete(w, r, 0);
    } else if (r->flags & GAIO__REQ_CANCEL) {
      gaio__complete(w, r, r->error);
    } else {
      release_group(w, f, &r->link, cnt - i - 1);
      break;
    }
  }
  assert(n == 0); /* the kernel wrote no more than the group's iovecs */
  gaio__kick(w, f);
}

static void connect_done(gaio_watcher *w, gaio__req *r, int res) {
  if (res < 0 && (res == -ECANCELED || res == -EINTR)) {
    gave_back(w, r);
    return;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  gaio__complete(w, r, -err);
}

static void write_done(gaio_watcher *w, gaio__req *head, int res) {
  gaio__fd *f = head->f;
  unsigned cnt = head->be_tag ? head->be_tag : 1;
  block_put(state_of(w), head);
  if (head->op == GAIO_OP_CONNECT) {
    connect_done(w, head, res);
    return;
  }
  if (res >= 0) {
    gaio__count_write(w, (uint64_t)res);
    if (head->op == GAIO_OP_SENDTO) res = (int)(head->len - head->done); /* one datagram */
    writes_advance(w, f, cnt, (size_t)res);
    return;
  }
  /* Nothing was written: release the group, then settle the head. */
  release_group(w, f, &head->link, cnt - 1);
  head->flags &= (uint8_t)~GAIO__REQ_KERNEL;
  if (res == -EAGAIN && !(head->flags & GAIO__REQ_CANCEL)) {
    if (submit_poll(w, head) != 0) gaio__kick(w, f);
  } else if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
    gave_back(w, head);
  } else {
    gaio__complete(w, head, res);
  }
  gaio__kick(w, f);
}

static void poll_done(gaio_watcher *w, gaio__req *r) {
  r->flags &= (uint8_t)~(GAIO__REQ_KERNEL | GAIO__REQ_POLL);
  if (r->flags & GAIO__REQ_CANCEL)
    gaio__complete(w, r, r->error);
  else
    gaio__kick(w, r->f); /* ready (or failed: the retried operation reports the error) */
}

static void handle_cqe(gaio_watcher *w, uint64_t ud, int res, uint32_t cflags) {
  if (ud == 0) return;
  if (ud == UD_TIMER) {
    timer_done(state_of(w), res);
    return;
  }
  if (ud == UD_WAKE) {
    state_of(w)->wake_armed = 0;
    arm_wakeup(state_of(w));
    return;
  }
  if ((ud & UD_MASK) == UD_ACCEPTS) {
    accepts_done(w, (gaio__fd *)(uintptr_t)(ud & ~(uint64_t)UD_MASK), res, cflags);
    return;
  }
  gaio__req *r = (gaio__req *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
  /* The kernel answers only for what it holds, and a detach waits for every answer before the
   * core releases the fd: r is still queued on a live fd. */
  assert(r->flags & GAIO__REQ_KERNEL);
  assert(r->f != NULL && (r->f->state & GAIO__FD_LIVE));
  if ((ud & UD_MASK) == UD_POLL) {
    poll_done(w, r);
    return;
  }
  r->flags &= (uint8_t)~GAIO__REQ_KERNEL;
  if (gaio__is_write_op(r->op))
    write_done(w, r, res);
  else
    read_done(w, r, res, cflags);
}

static void reap(gaio_watcher *w) {
  struct uring_state *s = state_of(w);
  struct io_uring_cqe *cqe;
  unsigned head, n = 0;
  io_uring_for_each_cqe(&s->ring, head, cqe) {
    handle_cqe(w, cqe->user_data, cqe->res, cqe->flags);
    n++;
  }
  io_uring_cq_advance(&s->ring, n);
  gaio__count(&w->events, n);
}

/* Submit what is queued, then wait up to timeout_ms (-1 forever, 0 not at all) for one
 * completion: untimed when the deadline timer holds until. Returns what io_uring_enter said. */
static int enter(struct uring_state *s, int timeout_ms, uint64_t until) {
  if (GAIO__FAULT && gaio__fault_pick(GAIO__FAULTS_POLL, -1, NULL) == GAIO__FAULT_EINTR)
    return -EINTR; /* a signal before anything was submitted */
  int rc = ring_start(s);
  if (rc != 0) return rc;
  if (timeout_ms > 0 && until != 0 && !s->timer_off && hold_timer(s, until)) timeout_ms = -1;
  if (timeout_ms == 0)
    return io_uring_submit_and_get_events(&s->ring); /* also runs pending completion work */
  if (timeout_ms < 0) return io_uring_submit_and_wait(&s->ring, 1);
  struct io_uring_cqe *cqe = NULL;
  struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                 .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
  return io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
}

/* The completions there are are handled whatever io_uring_enter said: with -EBUSY or -EAGAIN
 * that is what makes room, and the core's next poll submits again (a retry, not a spin here).
 * A lasting error, or one kept by a kick or a cancel, is returned, once. */
static int ur_poll(gaio_watcher *w, int timeout_ms, uint64_t until) {
  struct uring_state *s = state_of(w);
  if (s->dead != 0) return s->dead;
  if (!s->wake_armed) arm_wakeup(s);
  if ((!gaio__queue_empty(&s->stalled) || !s->wake_armed) && (timeout_ms < 0 || timeout_ms > 1)) {
    timeout_ms = 1;
    until = 0; /* a short timed wait, to retry: not worth the timer */
  }
  note_error(s, enter(s, timeout_ms, until));
  reap(w);
  while (!gaio__queue_empty(&s->stalled))
    gaio__kick(w, gaio__container_of(gaio__queue_head(&s->stalled), gaio__fd, kick_link));
  int rc = s->error;
  s->error = 0;
  return rc;
}

static int ur_cancel(gaio_watcher *w, gaio__req *r, int error) {
  if (!(r->flags & GAIO__REQ_KERNEL)) {
    gaio__req *h = head_of(gaio__is_write_op(r->op) ? &r->f->wq : &r->f->rq);
    if (h != r && (h->flags & GAIO__REQ_KERNEL) && (h->flags & GAIO__REQ_CANCEL)) {
      r->flags |= GAIO__REQ_CANCEL;
      r->error = error;
      r->f->state |= FD_LATE_CANCELS;
      return 1;
    }
    gaio__complete(w, r, error);
    return 0;
  }
  r->error = error;
  if (r->flags & GAIO__REQ_CANCEL) return 1;
  r->flags |= GAIO__REQ_CANCEL;
  /* No SQE free (the kernel took none: a full completion queue, or an error): the cancel is
   * owed, and sent by a kick after the next poll has reaped. Waiting for room here instead
   * spun forever when io_uring_enter kept failing. */
  if (send_cancel(state_of(w), r) != 0) {
    r->f->state |= FD_CANCEL_OWED;
    stall(w, r->f);
  }
  return 1;
}

static int held(gaio__fd *f) {
  gaio__req *r = head_of(&f->rq), *q = head_of(&f->wq);
  return (f->state & FD_MULTISHOT) || (r != NULL && (r->flags & GAIO__REQ_KERNEL)) || (q != NULL && (q->flags & GAIO__REQ_KERNEL));
}

/* One step of a loop that waits for the kernel: submit, wait for a completion, reap. Returns 0
 * to go on, or the io_uring_enter error that ends the wait. That leaves requests in the kernel,
 * whose completions may come later for requests the core has reused: so the ring is dead from
 * then on (no completion is reaped again, every poll returns the error; destroy the watcher,
 * io_uring_queue_exit cancels what the kernel holds). */
static int wait_step(gaio_watcher *w) {
  struct uring_state *s = state_of(w);
  int rc = ring_start(s);
  if (rc == 0) rc = io_uring_submit_and_wait(&s->ring, 1);
  reap(w);
  if (!enter_failed(rc)) return 0;
  s->dead = rc;
  return rc;
}

/* Cancel everything the kernel holds for f, and wait until it has all come back. */
static void settle(gaio_watcher *w, gaio__fd *f) {
  struct uring_state *s = state_of(w);
  struct io_uring_sqe *sqe = sqe_get(s);
  while (sqe == NULL && held(f)) {
    if (wait_step(w) != 0) return;
    sqe = sqe_get(s);
  }
  if (sqe != NULL) {
    io_uring_prep_cancel_fd(sqe, f->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 0);
  }
  while (held(f))
    if (wait_step(w) != 0) return;
}

static void ur_detach(gaio_watcher *w, gaio__fd *f) {
  struct uring_state *s = state_of(w);
  if (held(f) && s->dead == 0) settle(w, f);
  /* Connections taken for accepts that will never come: closed, as a closed listener's
   * backlog would be. */
  unsigned k = 0;
  for (unsigned i = 0; i < s->nstash; i++) {
    if (s->stash[i].f == f)
      close(s->stash[i].fd);
    else
      s->stash[k++] = s->stash[i];
  }
  s->nstash = k;
}

/* ---- Buffers, wakeup, setup ---- */

static void ur_recycle(gaio_watcher *w) {
  struct uring_state *s = state_of(w);
  s->bufs_empty = 0; /* also after a late -ENOBUFS that raced with the previous recycle */
  if (s->nused == 0) return;
  int mask = io_uring_buf_ring_mask(s->nbufs);
  for (unsigned i = 0; i < s->nused; i++)
    io_uring_buf_ring_add(s->br, w->swap + (size_t)s->used[i] * w->read_max,
                          (unsigned)w->read_max, s->used[i], mask, (int)i);
  io_uring_buf_ring_advance(s->br, (int)s->nused);
  s->nused = 0;
}

static void ur_wakeup(gaio_watcher *w) {
  uint64_t one = 1;
  ssize_t rc = write(state_of(w)->evfd, &one, sizeof(one));
  (void)rc; /* EAGAIN: the counter is saturated, a wakeup is pending anyway */
}

/* Nothing to register: requests carry their own fd. What epoll refuses (regular files and
 * directories: -EPERM) is refused here too, so that both backends accept the same fds. */
static int ur_attach(gaio_watcher *w, int fd, uint32_t gen) {
  (void)w, (void)gen;
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ? -EPERM : 0;
}

/* The swap buffer, cut into read_max slices (a power of two of them, as the kernel wants). Each
 * resource goes into s as soon as it exists, so that state_free() releases exactly what was
 * made, whichever step fails (the ring's mmap leaked when the calloc after it failed). */
static int setup_buffers(gaio_watcher *w, struct uring_state *s) {
  unsigned n = 1;
  while (n * 2 <= w->swap_size / w->read_max && n * 2 <= GAIO_MAX_SWAP_SLICES) n *= 2;
  s->nbufs = n;
  s->br_size = (n * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
  void *mem = mmap(NULL, s->br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return -ENOMEM;
  s->br = mem;
  s->used = gaio__calloc(n, sizeof(*s->used));
  if (s->used == NULL) return -ENOMEM;
  io_uring_buf_ring_init(s->br);
  struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = n,
                                 .bgid = BGID};
  int rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
  if (rc != 0) return rc;
  for (unsigned i = 0; i < n; i++) s->used[s->nused++] = (uint16_t)i;
  ur_recycle(w);
  return 0;
}

static void state_free(struct uring_state *s, int ring_up) {
  if (ring_up) io_uring_queue_exit(&s->ring); /* cancels what the kernel still holds */
  if (s->br != NULL) munmap(s->br, s->br_size);
  if (s->evfd >= 0) close(s->evfd);
  while (s->free_blocks != NULL) {
    struct mblock *b = s->free_blocks;
    s->free_blocks = b->next;
    free(b);
  }
  free(s->used);
  free(s->stash);
  free(s);
}

static int ur_init(gaio_watcher *w) {
  struct uring_state *s = gaio__calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->evfd = -1;
  gaio__queue_init(&s->stalled);
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  unsigned entries = gaio__fault_ring_entries(w->ring_entries); /* fault runs: a tiny ring */
  int rc = -EINVAL;
  w->one_issuer = 0;
  if (w->one_thread) {
    /* DEFER_TASKRUN: completions are finished only when the single issuer waits, with no
     * signal-like notice to it (6.1). Disabled until that thread enters (ring_start). */
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
              IORING_SETUP_R_DISABLED;
    p.cq_entries = entries * 2;
    rc = io_uring_queue_init_params(entries, &s->ring, &p);
    w->one_issuer = rc == 0; /* -EINVAL: before 6.1 */
  }
  s->started = !w->one_issuer;
  if (rc == -EINVAL) {
    /* COOP_TASKRUN: completions are finished when this thread enters the kernel, without an
     * interrupt to the thread (5.19); TASKRUN_FLAG tells liburing when such work is pending. */
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    p.cq_entries = entries * 2;
    rc = io_uring_queue_init_params(entries, &s->ring, &p);
  }
  if (rc == -EINVAL) { /* before 5.19: no COOP_TASKRUN */
    p.flags &= ~(unsigned)(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    rc = io_uring_queue_init_params(entries, &s->ring, &p);
  }
  if (rc != 0) {
    state_free(s, 0);
    return rc;
  }
  /* Timeouts as an argument of the wait (5.11), and no dropped completions (5.5). */
  if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_NODROP)) rc = -ENOSYS;
  if (rc == 0) {
    w->be_state = s;
    rc = setup_buffers(w, s);
    if (rc == -EINVAL) rc = -ENOSYS; /* no buffer rings: the kernel is too old */
  }
  if (rc == 0 && (s->evfd = eventfd(0, EFD_CLOEXEC)) < 0) rc = -errno;
  if (rc != 0) {
    w->be_state = NULL;
    state_free(s, 1);
    return rc;
  }
  arm_wakeup(s);
  return 0;
}

static void ur_destroy(gaio_watcher *w) { state_free(state_of(w), 1); }

/* Test hook (tests/gaio_timer_test.cc), loop thread: from now on the deadline timer is armed with
 * a negative time, so that the kernel refuses it (-EINVAL in its completion). Returns 0, or
 * -EINVAL when w is not on io_uring. */
int gaio__uring_refuse_timers(gaio_watcher *w);
int gaio__uring_refuse_timers(gaio_watcher *w) {
  if (w->be->init != ur_init) return -EINVAL;
  state_of(w)->timer_refuse = 1;
  return 0;
}

const struct gaio__backend gaio__backend_uring = {
    .name = "uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .attach = ur_attach,
    .detach = ur_detach,
    .cancel = ur_cancel,
    .kick = ur_kick,
    .poll = ur_poll,
    .wakeup = ur_wakeup,
    .recycle = ur_recycle,
};
