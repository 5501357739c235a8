/* io_uring backend (liburing). The kernel holds the head request of each direction of each fd:
 * one SQE for the head read (or accept, or receive), one for the head writes (queued stream
 * writes go out together as one sendmsg, up to GAIO_MAX_WRITE_IOV), so FIFO order per
 * direction holds. A shutdown at the head of the writes takes no SQE: it runs in the loop. SQEs
 * are queued by kicks and submitted by the next poll together with the wait for completions:
 * one io_uring_enter per wait. Deadlines stay in the core's heap; the poll waits with a timeout
 * argument (IORING_FEAT_EXT_ARG), so a deadline costs no SQE, and an expired request that the
 * kernel holds is cancelled by its user_data.
 *
 * NULL-buffer reads use a provided-buffer ring over the watcher's swap buffer: the kernel picks
 * a read_max slice only when data arrives, so idle connections hold no buffer. Slices come back
 * to the ring when a new gaio_wait() begins and no result points into the swap buffer any more;
 * a read that finds the ring empty (-ENOBUFS) waits for that, as on epoll.
 *
 * An operation that answers -EAGAIN (a non-socket fd opened O_NONBLOCK, for instance) is
 * retried after a one-shot readiness poll. Needs Linux 5.19 (buffer rings, cancel by fd);
 * init fails, and the automatic choice falls back to epoll, on anything older. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gaio/internal.h"

/* user_data: a request pointer (requests are 8-aligned), with the low bits saying what the SQE
 * is for. 0 marks SQEs whose completion needs nothing (cancels). */
#define UD_OP 0u   /* the request's operation */
#define UD_POLL 1u /* a readiness poll for the request, after EAGAIN */
#define UD_WAKE 2u /* the wakeup eventfd read (no request) */
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
};

static struct uring_state *state_of(gaio_watcher *w) { return w->be_state; }

static gaio__req *head_of(gaio__queue *q) {
  return gaio__queue_empty(q) ? NULL : gaio__container_of(gaio__queue_head(q), gaio__req, link);
}

/* ---- SQEs ---- */

/* An SQE, flushing the submission queue to the kernel when it is full. */
static struct io_uring_sqe *sqe_get(struct uring_state *s) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
  if (sqe == NULL) {
    io_uring_submit(&s->ring);
    sqe = io_uring_get_sqe(&s->ring);
  }
  return sqe; /* NULL only if the kernel took none: the caller retries at the next kick */
}

static void arm_wakeup(struct uring_state *s) {
  struct io_uring_sqe *sqe = sqe_get(s);
  if (sqe == NULL) return;
  io_uring_prep_read(sqe, s->evfd, &s->evbuf, sizeof(s->evbuf), 0);
  io_uring_sqe_set_data64(sqe, UD_WAKE);
}

static struct mblock *block_get(struct uring_state *s) {
  struct mblock *b = s->free_blocks;
  if (b != NULL) {
    s->free_blocks = b->next;
  } else if ((b = malloc(sizeof(*b))) == NULL) {
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

/* Queue the SQE of the head read-side request r. Returns 0, or -1 if it could not be queued
 * now (no SQE or no memory: the fd is kicked again later). */
static int submit_read(gaio_watcher *w, gaio__fd *f, gaio__req *r) {
  struct uring_state *s = state_of(w);
  if ((r->flags & GAIO__REQ_SWAP) && s->bufs_empty) {
    gaio__defer(w, f);
    return 0;
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
  size_t want = r->len - r->done;
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
    io_uring_prep_recv(sqe, f->fd, NULL, (size_t)w->read_max, 0);
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
  if (head->op == GAIO_OP_WRITE && (message || head->link.next == &f->wq ||
                                    gaio__container_of(head->link.next, gaio__req, link)->op !=
                                        GAIO_OP_WRITE)) {
    /* One write alone: no msghdr needed. */
    struct io_uring_sqe *sqe = sqe_get(s);
    if (sqe == NULL) return -1;
    if (f->state & GAIO__FD_SOCK)
      io_uring_prep_send(sqe, f->fd, head->buf + head->done, head->len - head->done,
                         MSG_NOSIGNAL);
    else
      io_uring_prep_write(sqe, f->fd, head->buf + head->done, (unsigned)(head->len - head->done),
                          (uint64_t)-1);
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
  size_t cnt = 0, max = message ? 1 : GAIO_MAX_WRITE_IOV;
  for (gaio__queue *q = gaio__queue_head(&f->wq); q != &f->wq && cnt < max; q = q->next) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    if (r->op != GAIO_OP_WRITE && cnt > 0) break; /* a connect, sendto or shutdown: alone */
    b->iov[cnt].iov_base = r->buf + r->done;
    b->iov[cnt++].iov_len = r->len - r->done;
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
    struct stashed *n = realloc(s->stash, cap * sizeof(*n));
    if (n == NULL) return -1;
    s->stash = n;
    s->stash_cap = cap;
  }
  s->stash[s->nstash++] = (struct stashed){f, fd};
  return 0;
}

static void accepts_done(gaio_watcher *w, gaio__fd *f, int res, uint32_t cflags) {
  struct uring_state *s = state_of(w);
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

static void ur_kick(gaio_watcher *w, gaio__fd *f) {
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
  if (again) { /* out of SQEs or memory: retry after the next poll, not in this round */
    gaio__queue_remove(&f->kick_link);
    gaio__queue_push(&state_of(w)->stalled, &f->kick_link);
  }
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
      gaio__count(&w->bytes_read, (uint64_t)res);
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
    gaio__count(&w->bytes_read, (uint64_t)res);
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

/* Spread n written bytes over the requests of one sendmsg, completing those fully written; the
 * rest are no longer held by the kernel. */
static void writes_advance(gaio_watcher *w, gaio__fd *f, unsigned cnt, size_t n) {
  for (unsigned i = 0; i < cnt; i++) {
    gaio__req *r = head_of(&f->wq);
    size_t take = r->len - r->done < n ? r->len - r->done : n;
    r->done += take;
    n -= take;
    r->flags &= (uint8_t)~GAIO__REQ_KERNEL;
    if (r->done == r->len) {
      gaio__complete(w, r, 0);
    } else if (r->flags & GAIO__REQ_CANCEL) {
      gaio__complete(w, r, r->error);
    } else {
      /* The rest of the group stays queued behind an unfinished write: unmark it too. */
      gaio__queue *q = &r->link;
      for (unsigned j = i + 1; j < cnt && (q = q->next) != &f->wq; j++)
        gaio__container_of(q, gaio__req, link)->flags &= (uint8_t)~GAIO__REQ_KERNEL;
      break;
    }
  }
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
    gaio__count(&w->bytes_written, (uint64_t)res);
    if (head->op == GAIO_OP_SENDTO) res = (int)(head->len - head->done); /* one datagram */
    writes_advance(w, f, cnt, (size_t)res);
    return;
  }
  /* Nothing was written: release the group, then settle the head. */
  gaio__queue *q = &head->link;
  for (unsigned j = 1; j < cnt && (q = q->next) != &f->wq; j++) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    r->flags &= (uint8_t)~GAIO__REQ_KERNEL;
    if (r->flags & GAIO__REQ_CANCEL) {
      q = q->prev;
      gaio__complete(w, r, r->error);
    }
  }
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
  if (ud == UD_WAKE) {
    arm_wakeup(state_of(w));
    return;
  }
  if ((ud & UD_MASK) == UD_ACCEPTS) {
    accepts_done(w, (gaio__fd *)(uintptr_t)(ud & ~(uint64_t)UD_MASK), res, cflags);
    return;
  }
  gaio__req *r = (gaio__req *)(uintptr_t)(ud & ~(uint64_t)UD_MASK);
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
}

static int ur_poll(gaio_watcher *w, int timeout_ms) {
  struct uring_state *s = state_of(w);
  struct io_uring_cqe *cqe = NULL;
  int rc;
  if (!gaio__queue_empty(&s->stalled) && (timeout_ms < 0 || timeout_ms > 1)) timeout_ms = 1;
  if (timeout_ms == 0) {
    rc = io_uring_submit_and_get_events(&s->ring); /* also runs pending completion work */
  } else if (timeout_ms < 0) {
    rc = io_uring_submit_and_wait(&s->ring, 1);
  } else {
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
  }
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) return rc;
  reap(w);
  while (!gaio__queue_empty(&s->stalled))
    gaio__kick(w, gaio__container_of(gaio__queue_head(&s->stalled), gaio__fd, kick_link));
  return 0;
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
  /* A write held as part of a sendmsg is cancelled through the group's head. */
  gaio__req *target = r;
  if (gaio__is_write_op(r->op)) target = head_of(&r->f->wq);
  uint64_t ud = (uint64_t)(uintptr_t)target | ((target->flags & GAIO__REQ_POLL) ? UD_POLL : UD_OP);
  struct io_uring_sqe *sqe = sqe_get(state_of(w));
  while (sqe == NULL) { /* the queue is full and the kernel is busy: make room */
    io_uring_submit_and_wait(&state_of(w)->ring, 1);
    reap(w);
    if (!(r->flags & GAIO__REQ_KERNEL)) return 0;
    sqe = sqe_get(state_of(w));
  }
  io_uring_prep_cancel64(sqe, ud, 0);
  io_uring_sqe_set_data64(sqe, 0);
  return 1;
}

static int held(gaio__fd *f) {
  gaio__req *r = head_of(&f->rq), *q = head_of(&f->wq);
  return (f->state & FD_MULTISHOT) || (r != NULL && (r->flags & GAIO__REQ_KERNEL)) || (q != NULL && (q->flags & GAIO__REQ_KERNEL));
}

static void ur_detach(gaio_watcher *w, gaio__fd *f) {
  struct uring_state *s = state_of(w);
  struct io_uring_sqe *sqe = held(f) ? sqe_get(s) : NULL;
  while (held(f) && sqe == NULL) {
    io_uring_submit_and_wait(&s->ring, 1);
    reap(w);
    sqe = sqe_get(s);
  }
  if (sqe != NULL) {
    io_uring_prep_cancel_fd(sqe, f->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 0);
  }
  while (held(f)) {
    int rc = io_uring_submit_and_wait(&s->ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) break;
    reap(w);
  }
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

/* The swap buffer, cut into read_max slices (a power of two of them, as the kernel wants). */
static int setup_buffers(gaio_watcher *w, struct uring_state *s) {
  unsigned n = 1;
  while (n * 2 <= w->swap_size / w->read_max && n * 2 <= 32768) n *= 2;
  s->nbufs = n;
  s->used = calloc(n, sizeof(*s->used));
  s->br_size = (n * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
  void *mem = mmap(NULL, s->br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (s->used == NULL || mem == MAP_FAILED) return -ENOMEM;
  s->br = mem;
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
  struct uring_state *s = calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->evfd = -1;
  gaio__queue_init(&s->stalled);
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  /* COOP_TASKRUN: completions are finished when this thread enters the kernel, without an
   * interrupt to the thread (5.19); TASKRUN_FLAG tells liburing when such work is pending. */
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  p.cq_entries = w->ring_entries * 2;
  int rc = io_uring_queue_init_params(w->ring_entries, &s->ring, &p);
  if (rc == -EINVAL) { /* before 5.19: no COOP_TASKRUN */
    p.flags &= ~(unsigned)(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    rc = io_uring_queue_init_params(w->ring_entries, &s->ring, &p);
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
