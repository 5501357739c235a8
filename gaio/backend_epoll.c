/* Edge-triggered epoll backend. Each fd is registered once, for both directions, when it is
 * attached. The loop tries the syscall first and waits for an edge only after EAGAIN (or a short
 * read/write on a stream, which means the kernel buffer was drained or filled: any later change
 * raises a new edge, since epoll_wait already consumed the previous one). In fault runs an
 * injected EAGAIN or short transfer promises no such edge: the fd is owed a kick instead, right
 * after the next poll, which does not block (gaio/fault.h). */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gaio/fault.h"
#include "gaio/internal.h"

/* Event data: fd in the low 32 bits, generation in the high 32. The wakeup eventfd uses a tag
 * no fd can have. */
#define WAKE_TAG UINT64_MAX

/* Fault runs: an injected EAGAIN or short transfer blocked the fd; its next kick unblocks it. */
#define FD_OWED GAIO__FD_BE1

struct epoll_state {
  int epfd;
  int evfd;
  unsigned max_events;
  gaio__queue owed; /* fault runs: FD_OWED fds to kick after the next poll, by kick_link */
  struct epoll_event events[];
};

static struct epoll_state *state_of(gaio_watcher *w) { return w->be_state; }

static int ep_init(gaio_watcher *w) {
  struct epoll_state *s = gaio__malloc(sizeof(*s) + w->max_events * sizeof(struct epoll_event));
  if (s == NULL) return -ENOMEM;
  s->max_events = w->max_events;
  gaio__queue_init(&s->owed);
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = WAKE_TAG};
  if (s->epfd < 0 || s->evfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) != 0) {
    int rc = -errno;
    if (s->epfd >= 0) close(s->epfd);
    if (s->evfd >= 0) close(s->evfd);
    free(s);
    return rc;
  }
  w->be_state = s;
  return 0;
}

static void ep_destroy(gaio_watcher *w) {
  struct epoll_state *s = state_of(w);
  close(s->evfd);
  close(s->epfd);
  free(s);
}

static int ep_attach(gaio_watcher *w, int fd, uint32_t gen) {
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
      .data.u64 = (uint64_t)gen << 32 | (uint32_t)fd,
  };
  return epoll_ctl(state_of(w)->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static void ep_detach(gaio_watcher *w, gaio__fd *f) {
  /* Explicit, although close() would drop the registration: a dup of the fd elsewhere (or a
   * detached fd) keeps the open file description, and with it the registration, alive. */
  epoll_ctl(state_of(w)->epfd, EPOLL_CTL_DEL, f->fd, NULL);
}

/* The kernel never holds a request here: the syscalls are made and finished in the loop. */
static int ep_cancel(gaio_watcher *w, gaio__req *r, int error) {
  assert(!(r->flags & GAIO__REQ_KERNEL));
  gaio__complete(w, r, error);
  return 0;
}

static gaio__req *head_of(gaio__queue *q) {
  return gaio__container_of(gaio__queue_head(q), gaio__req, link);
}

/* The last call said the fd is drained or full (EAGAIN, or a short transfer on a stream): wait
 * for an edge. If the fault injector made that up, no edge may come (fault.h): the fd is owed a
 * kick, and its next kick, whatever brings it, unblocks it. One is due already if f is on a
 * kick list (the core's, or the deferred reads'); else f waits on the owed list, which the next
 * poll does not block for and kicks after. Moving f off the core's list instead lost the owed
 * kick when a completion put f back there before the poll. */
static void block(gaio_watcher *w, gaio__fd *f, uint16_t bit) {
  f->state |= bit;
  if (GAIO__FAULT && gaio__fault_owed()) {
    f->state |= FD_OWED;
    if (!gaio__queue_linked(&f->kick_link)) gaio__queue_push(&state_of(w)->owed, &f->kick_link);
  }
}

/* recvmsg(2) of one datagram into r; the sender's address goes where the caller asked. A
 * zero-length datagram is a result of size 0, not an end of stream (except on a stream). */
static ssize_t recv_datagram(gaio__fd *f, gaio__req *r) {
  struct iovec iov = {.iov_base = r->buf, .iov_len = r->len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (r->u.sock.addr != NULL) {
    msg.msg_name = r->u.sock.addr;
    msg.msg_namelen = sizeof(struct sockaddr_storage);
  }
  ssize_t n = gaio__sys_recvmsg(f->fd, &msg, 0);
  if (n < 0) return n;
  r->u.sock.addr_len = r->u.sock.addr ? msg.msg_namelen : 0;
  if (msg.msg_flags & MSG_TRUNC) r->flags |= GAIO__REQ_TRUNC;
  return n;
}

/* One accept4(2) for the head accept request. Returns 0 to go on with the queue, 1 to stop. */
static int accept_once(gaio_watcher *w, gaio__fd *f, gaio__req *r) {
  socklen_t len = sizeof(struct sockaddr_storage);
  int fd = gaio__sys_accept4(f->fd, r->u.sock.addr, r->u.sock.addr ? &len : NULL,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    r->u.sock.conn_fd = fd;
    r->u.sock.addr_len = r->u.sock.addr ? len : 0;
    gaio__complete(w, r, 0);
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    block(w, f, GAIO__FD_RD_BLOCKED);
    return 1;
  }
  if (errno != EINTR) gaio__complete(w, r, -errno); /* this accept only: the listener lives */
  return 0;
}

/* One read attempt for the head request r. Returns 0 to go on with the queue, 1 to stop. */
static int read_once(gaio_watcher *w, gaio__fd *f, gaio__req *r) {
  if (r->flags & GAIO__REQ_SWAP) {
    r->buf = gaio__swap_take(w);
    if (r->buf == NULL) {
      gaio__defer(w, f);
      return 1;
    }
    r->len = w->read_max;
  }
  /* At most GAIO_MAX_IO_CHUNK per call (the kernel stops short of 2 GiB anyway): then a short
   * read means what it says below, that the socket is drained. */
  size_t want = r->len - r->done;
  if (want > GAIO_MAX_IO_CHUNK) want = GAIO_MAX_IO_CHUNK;
  ssize_t n;
  if (r->op == GAIO_OP_RECVFROM) {
    n = recv_datagram(f, r);
    if (n > 0 || (n == 0 && !(f->state & GAIO__FD_STREAM))) {
      gaio__count_read(w, (uint64_t)n);
      r->done = (size_t)n;
      if (n == 0 && (r->flags & GAIO__REQ_SWAP)) {
        gaio__swap_return(w, r->buf);
        r->buf = NULL;
      } else if (r->flags & GAIO__REQ_SWAP) {
        gaio__swap_trim(w, r->buf, (size_t)n);
      }
      gaio__complete(w, r, 0);
      return 0;
    }
  } else {
    n = gaio__sys_read(f->fd, r->buf + r->done, want);
  }
  if (n > 0) {
    gaio__count_read(w, (uint64_t)n);
    r->done += (size_t)n;
    if (r->flags & GAIO__REQ_SWAP) gaio__swap_trim(w, r->buf, r->done);
    int drained = (size_t)n < want && (f->state & (GAIO__FD_STREAM | GAIO__FD_HUP)) ==
                                          GAIO__FD_STREAM;
    if (r->op == GAIO_OP_READ_FULL && r->done < r->len) {
      if (!drained) return 0;
      block(w, f, GAIO__FD_RD_BLOCKED); /* drained: wait for more */
      return 1;
    }
    gaio__complete(w, r, 0);
    if (drained) {
      block(w, f, GAIO__FD_RD_BLOCKED);
      return 1;
    }
    return 0;
  }
  int err = n == 0 ? GAIO_EOF : -errno;
  if (r->flags & GAIO__REQ_SWAP) {
    gaio__swap_return(w, r->buf);
    r->buf = NULL;
  }
  if (err == -EAGAIN || err == -EWOULDBLOCK) {
    block(w, f, GAIO__FD_RD_BLOCKED);
    return 1;
  }
  if (err != -EINTR) gaio__complete(w, r, err);
  return 0;
}

static void run_reads(gaio_watcher *w, gaio__fd *f) {
  while (!(f->state & GAIO__FD_RD_BLOCKED) && !gaio__queue_empty(&f->rq)) {
    gaio__req *r = head_of(&f->rq);
    if (r->op == GAIO_OP_ACCEPT ? accept_once(w, f, r) : read_once(w, f, r)) break;
  }
}

/* The head of the write queue is a connect started by gaio_connect(). Has it finished? A poll
 * with no timeout answers without consuming the edge-triggered event; an unfinished connect
 * then waits for EPOLLOUT. Returns 0 to go on with the queue, 1 to stop. */
static int connect_once(gaio_watcher *w, gaio__fd *f, gaio__req *r) {
  struct pollfd p = {.fd = f->fd, .events = POLLOUT};
  if (poll(&p, 1, 0) == 0) {
    f->state |= GAIO__FD_WR_BLOCKED;
    return 1;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  /* A socket that is not connected yet reports POLLHUP, and epoll may have seen it at attach:
   * that hang-up was not the peer's. */
  if (err == 0) f->state &= (uint16_t)~GAIO__FD_HUP;
  gaio__complete(w, r, -err);
  return 0;
}

/* Spread n written bytes over the queued writes, completing those fully written. */
static void writes_advance(gaio_watcher *w, gaio__fd *f, size_t n) {
  while (n > 0) {
    assert(!gaio__queue_empty(&f->wq)); /* the kernel wrote no more than the iovecs held */
    gaio__req *r = head_of(&f->wq);
    size_t take = r->len - r->done < n ? r->len - r->done : n;
    r->done += take;
    n -= take;
    if (r->done == r->len) gaio__complete(w, r, 0);
  }
}

/* Queued writes on a stream go out together: one sendmsg/writev per batch of up to
 * GAIO_MAX_WRITE_IOV. On datagram and seqpacket sockets every write is its own message. */
static void run_writes(gaio_watcher *w, gaio__fd *f) {
  struct iovec iov[GAIO_MAX_WRITE_IOV];
  int message = (f->state & (GAIO__FD_SOCK | GAIO__FD_STREAM)) == GAIO__FD_SOCK;
  while (!gaio__queue_empty(&f->wq)) {
    gaio__req *head = head_of(&f->wq);
    if (head->op == GAIO_OP_SHUTDOWN) {
      /* It needs no buffer space, so it runs even when blocked: a blocked write before it may
       * have been cancelled or timed out, and no edge need ever come. The writes after it try
       * afresh (a shut socket fails them at once; EAGAIN blocks them again). */
      gaio__shutdown_run(w, head);
      f->state &= (uint16_t)~GAIO__FD_WR_BLOCKED;
      continue;
    }
    if (f->state & GAIO__FD_WR_BLOCKED) break;
    if (head->op == GAIO_OP_CONNECT) {
      if (connect_once(w, f, head)) break;
      continue;
    }
    /* A sendto is one message with its own address; so is every write on a datagram socket. */
    int one = message || head->op == GAIO_OP_SENDTO;
    size_t max_iov = one ? 1 : GAIO_MAX_WRITE_IOV;
    size_t cnt = 0, total = 0;
    /* A stream batch carries at most GAIO_MAX_IO_CHUNK bytes, so that a short write means a full
     * buffer (the kernel would stop short of 2 GiB by itself). Only the last iovec is ever cut,
     * so the bytes written are a prefix of the batch, as writes_advance assumes. A message is
     * never cut. */
    for (gaio__queue *q = gaio__queue_head(&f->wq);
         q != &f->wq && cnt < max_iov && total < GAIO_MAX_IO_CHUNK; q = q->next) {
      gaio__req *r = gaio__container_of(q, gaio__req, link);
      if (r->op != GAIO_OP_WRITE && cnt > 0) break; /* a connect, sendto or shutdown: alone */
      size_t len = r->len - r->done;
      if (!one && len > GAIO_MAX_IO_CHUNK - total) len = GAIO_MAX_IO_CHUNK - total;
      iov[cnt].iov_base = r->buf + r->done;
      iov[cnt].iov_len = len;
      total += iov[cnt++].iov_len;
    }
    ssize_t n;
    if (f->state & GAIO__FD_SOCK) {
      struct msghdr msg = {.msg_iov = iov, .msg_iovlen = cnt};
      if (head->op == GAIO_OP_SENDTO) {
        msg.msg_name = head->u.sock.addr;
        msg.msg_namelen = head->u.sock.addr_len;
      }
      n = gaio__sys_sendmsg(f->fd, &msg, MSG_NOSIGNAL); /* a closed peer: EPIPE, not SIGPIPE */
    } else {
      n = gaio__sys_writev(f->fd, iov, (int)cnt);
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        block(w, f, GAIO__FD_WR_BLOCKED);
      } else if (errno != EINTR) {
        gaio__complete(w, head_of(&f->wq), -errno);
      }
      continue;
    }
    gaio__count_write(w, (uint64_t)n);
    writes_advance(w, f, (size_t)n);
    if ((size_t)n < total && !(f->state & GAIO__FD_HUP)) block(w, f, GAIO__FD_WR_BLOCKED);
  }
}

static void ep_kick(gaio_watcher *w, gaio__fd *f) {
  if (GAIO__FAULT && (f->state & FD_OWED)) /* as if an edge had come for both directions */
    f->state &= (uint16_t)~(FD_OWED | GAIO__FD_RD_BLOCKED | GAIO__FD_WR_BLOCKED);
  run_reads(w, f);
  run_writes(w, f);
}

static void drain_wakeup(struct epoll_state *s) {
  uint64_t v;
  while (read(s->evfd, &v, sizeof(v)) > 0) {
  }
}

/* Fault runs: the fds owed a kick get it, from the core's kick list, after this poll. */
static void kick_owed(gaio_watcher *w, struct epoll_state *s) {
  while (!gaio__queue_empty(&s->owed))
    gaio__kick(w, gaio__container_of(gaio__queue_head(&s->owed), gaio__fd, kick_link));
}

static int ep_poll(gaio_watcher *w, int timeout_ms, uint64_t until) {
  /* epoll_wait's own timeout. (A timerfd holding the earliest deadline, as the io_uring backend
   * holds it, made no difference here: 1.001x on the one-CPU RPC ping-pong, 10 pairs.) */
  (void)until;
  struct epoll_state *s = state_of(w);
  int owed = GAIO__FAULT && !gaio__queue_empty(&s->owed);
  int n = gaio__sys_epoll_wait(s->epfd, s->events, (int)s->max_events, owed ? 0 : timeout_ms);
  if (owed) kick_owed(w, s);
  if (n < 0) return errno == EINTR ? 0 : -errno;
  gaio__count(&w->events, (uint64_t)n);
  for (int i = 0; i < n; i++) {
    uint64_t tag = s->events[i].data.u64;
    uint32_t ev = s->events[i].events;
    if (tag == WAKE_TAG) {
      drain_wakeup(s);
      continue;
    }
    gaio__fd *f = gaio__fd_event(w, (int)(uint32_t)tag, (uint32_t)(tag >> 32));
    if (f == NULL) continue; /* stale: the fd was freed, maybe reused, since it was queued */
    /* ERR and HUP wake both directions; the syscalls then report the socket's error. */
    if (ev & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) f->state |= GAIO__FD_HUP;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) f->state &= (uint16_t)~GAIO__FD_RD_BLOCKED;
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) f->state &= (uint16_t)~GAIO__FD_WR_BLOCKED;
    ep_kick(w, f);
  }
  return 0;
}

static void ep_wakeup(gaio_watcher *w) {
  uint64_t one = 1;
  /* EAGAIN means the counter is saturated: a wakeup is pending anyway. */
  ssize_t rc = write(state_of(w)->evfd, &one, sizeof(one));
  (void)rc;
}

const struct gaio__backend gaio__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .attach = ep_attach,
    .detach = ep_detach,
    .cancel = ep_cancel,
    .kick = ep_kick,
    .poll = ep_poll,
    .wakeup = ep_wakeup,
};
