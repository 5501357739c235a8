/* The portable core: submissions, the fd table, deadlines, the swap buffer, delivery and close.
 * The kernel side (readiness or completion) is behind the backend table (backend.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gaio/fault.h"
#include "gaio/internal.h"

#define REQS_PER_SLAB 256u

uint64_t gaio_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *gaio_strerror(int error) {
  if (error == 0) return "success";
  if (error == GAIO_EOF) return "end of stream";
  if (error == GAIO_EBACKEND)
    return "unknown gaio backend name (in the backend option or GAIO_BACKEND; use \"uring\" or \"epoll\")";
  if (error < 0) {
    const char *s = strerrordesc_np(-error);
    if (s != NULL) return s;
  }
  return "unknown error";
}

int gaio_accept_verdict(int error) {
  switch (-error) {
    /* accept(2), Linux: errors already pending on the new connection are returned by accept,
     * "treat them like EAGAIN by retrying"; ECONNABORTED is a connection reset while queued,
     * EPERM a firewall rule against it. */
    case 0: case ECONNABORTED: case EAGAIN: case EINTR: case EPERM: case EPROTO: case ENETDOWN:
    case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP:
    case ENETUNREACH: case ETIMEDOUT:
      return GAIO_ACCEPT_NEXT;
    case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
      return GAIO_ACCEPT_BACKOFF;
    case ECANCELED: case ESHUTDOWN:
      return GAIO_ACCEPT_GONE;
    default:
      return GAIO_ACCEPT_BROKEN;
  }
}

/* ---- Options and the backend choice ---- */

static const struct gaio__backend *backend_by_name(const char *name) {
  for (size_t i = 0; gaio__backends[i] != NULL; i++)
    if (strcmp(gaio__backends[i]->name, name) == 0) return gaio__backends[i];
  return NULL;
}

/* An explicit option wins; otherwise GAIO_BACKEND; otherwise the first that starts. */
static int backend_start(gaio_watcher *w, const char *name) {
  if (name == NULL || name[0] == '\0') name = getenv("GAIO_BACKEND");
  if (name != NULL && name[0] != '\0') {
    w->be = backend_by_name(name);
    return w->be == NULL ? GAIO_EBACKEND : w->be->init(w);
  }
  int rc = -ENOSYS;
  for (size_t i = 0; gaio__backends[i] != NULL; i++) {
    w->be = gaio__backends[i];
    rc = w->be->init(w);
    if (rc == 0) return 0;
  }
  return rc;
}

static int apply_options(gaio_watcher *w, const gaio_options *o) {
  static const gaio_options none;
  if (o == NULL) o = &none;
  w->swap_size = o->swap_size ? o->swap_size : GAIO_DEFAULT_SWAP_SIZE;
  w->read_max = o->read_max ? o->read_max : GAIO_DEFAULT_READ_MAX;
  if (w->read_max > w->swap_size) w->read_max = w->swap_size;
  w->max_events = o->max_events ? o->max_events : GAIO_DEFAULT_MAX_EVENTS;
  w->max_requests = o->max_requests ? o->max_requests : GAIO_DEFAULT_MAX_REQUESTS;
  w->max_write_pending =
      o->max_write_pending ? o->max_write_pending : GAIO_DEFAULT_MAX_WRITE_PENDING;
  w->ring_entries = o->ring_entries ? o->ring_entries : GAIO_DEFAULT_RING_ENTRIES;
  w->one_thread = o->one_thread != 0;
  if (w->swap_size > GAIO_MAX_SWAP_SIZE || w->max_events > GAIO_MAX_POLL_EVENTS ||
      w->ring_entries > GAIO_MAX_RING_ENTRIES)
    return -EINVAL;
  return 0;
}

static size_t fd_table_size(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY ||
      rl.rlim_max > GAIO_MAX_FDS)
    return GAIO_MAX_FDS;
  return (size_t)rl.rlim_max;
}

int gaio_watcher_create(gaio_watcher **out, const gaio_options *opts) {
  if (out == NULL) return -EINVAL;
  *out = NULL;
  gaio_watcher *w = gaio__calloc(1, sizeof(*w));
  if (w == NULL) return -ENOMEM;
  int rc = apply_options(w, opts);
  if (rc != 0) {
    free(w);
    return rc;
  }
  gaio__queue_init(&w->pending);
  gaio__queue_init(&w->free_reqs);
  gaio__queue_init(&w->done);
  gaio__queue_init(&w->spent);
  gaio__queue_init(&w->kicks);
  gaio__queue_init(&w->deferred);
  gaio__heap_init(&w->timers);
  for (unsigned i = 0; i < GAIO__TIMER_BUCKETS; i++) gaio__queue_init(&w->timer_q[i]);
  w->nchunks = (fd_table_size() + GAIO__FD_CHUNK - 1) / GAIO__FD_CHUNK;
  w->chunks = gaio__calloc(w->nchunks, sizeof(*w->chunks));
  w->swap = gaio__malloc(w->swap_size);
  if (w->chunks == NULL || w->swap == NULL || pthread_mutex_init(&w->lock, NULL) != 0) {
    free(w->chunks);
    free(w->swap);
    free(w);
    return -ENOMEM;
  }
  rc = backend_start(w, opts ? opts->backend : NULL);
  if (rc != 0) {
    pthread_mutex_destroy(&w->lock);
    free(w->chunks);
    free(w->swap);
    free(w);
    return rc;
  }
  *out = w;
  return 0;
}

const char *gaio_backend_name(const gaio_watcher *w) { return w->be->name; }

int gaio_one_thread(const gaio_watcher *w) { return w->one_issuer; }

/* ---- The fd table ---- */

static gaio__fd *fd_entry(gaio_watcher *w, int fd) {
  if (fd < 0 || (size_t)fd / GAIO__FD_CHUNK >= w->nchunks) return NULL;
  gaio__fd *c = atomic_load_explicit(&w->chunks[fd / GAIO__FD_CHUNK], memory_order_acquire);
  return c == NULL ? NULL : &c[fd % GAIO__FD_CHUNK];
}

/* Under the lock: the entry for fd, allocating its chunk. */
static gaio__fd *fd_entry_make(gaio_watcher *w, int fd) {
  gaio__fd *f = fd_entry(w, fd);
  if (f != NULL || (size_t)fd / GAIO__FD_CHUNK >= w->nchunks) return f;
  gaio__fd *c = gaio__calloc(GAIO__FD_CHUNK, sizeof(*c));
  if (c == NULL) return NULL;
  int base = fd - fd % (int)GAIO__FD_CHUNK;
  for (unsigned i = 0; i < GAIO__FD_CHUNK; i++) {
    gaio__queue_init(&c[i].rq);
    gaio__queue_init(&c[i].wq);
    gaio__queue_init(&c[i].kick_link);
    c[i].fd = base + (int)i;
  }
  atomic_store_explicit(&w->chunks[fd / GAIO__FD_CHUNK], c, memory_order_release);
  return &c[fd % GAIO__FD_CHUNK];
}

gaio__fd *gaio__fd_event(gaio_watcher *w, int fd, uint32_t gen) {
  gaio__fd *f = fd_entry(w, fd);
  if (f == NULL || !(f->state & GAIO__FD_LIVE) || f->gen != gen) return NULL;
  return f;
}

static int fd_owned(gaio_watcher *w, int fd) {
  gaio__fd *f = fd_entry(w, fd);
  return f == NULL ? GAIO__OWNED_NO : atomic_load_explicit(&f->owned, memory_order_relaxed);
}

static int is_io(const gaio__req *r) { return r->op < GAIO__OP_ATTACH; }

/* ---- Requests: a slab free list under the lock ---- */

/* io: an I/O request, counted against max_requests. Returns NULL when the limit is reached
 * (io) or memory is short; *rc says which. */
static gaio__req *req_alloc(gaio_watcher *w, int io, int *rc) {
  *rc = -ENOBUFS;
  if (io && w->live_reqs >= w->max_requests) return NULL;
  *rc = -ENOMEM;
  if (gaio__queue_empty(&w->free_reqs)) {
    /* A slab: one pointer-sized link to the previous slab, then the requests. */
    char *slab = gaio__calloc(1, sizeof(gaio__req) * (REQS_PER_SLAB + 1));
    if (slab == NULL) return NULL;
    *(void **)slab = w->slabs;
    w->slabs = slab;
    gaio__req *reqs = (gaio__req *)slab + 1;
    for (unsigned i = 0; i < REQS_PER_SLAB; i++) gaio__queue_push(&w->free_reqs, &reqs[i].link);
  }
  gaio__queue *q = gaio__queue_head(&w->free_reqs);
  gaio__queue_remove(q);
  if (io) w->live_reqs++;
  gaio__req *r = gaio__container_of(q, gaio__req, link);
  memset(r, 0, sizeof(*r));
  gaio__queue_init(&r->link);
  *rc = 0;
  return r;
}

/* Return the spent requests to the free list: one lock per batch. */
static void reqs_recycle(gaio_watcher *w) {
  if (gaio__queue_empty(&w->spent)) return;
  unsigned n = 0;
  for (gaio__queue *q = w->spent.next; q != &w->spent; q = q->next)
    n += (unsigned)is_io(gaio__container_of(q, gaio__req, link));
  pthread_mutex_lock(&w->lock);
  gaio__queue_move(&w->spent, &w->free_reqs);
  assert(w->live_reqs >= n); /* each I/O request is counted in once and out once */
  w->live_reqs -= n;
  pthread_mutex_unlock(&w->lock);
}

/* Queue r for the loop; wake the loop if it sleeps. Called with the lock held; unlocks. */
static void submit_locked(gaio_watcher *w, gaio__req *r) {
  gaio__queue_push(&w->pending, &r->link);
  int wake = w->sleeping && !w->wake_sent;
  if (wake) w->wake_sent = 1;
  pthread_mutex_unlock(&w->lock);
  if (wake) w->be->wakeup(w);
}

/* Under the lock: the checks every submit makes, then a request from the free list. */
static gaio__req *submit_begin(gaio_watcher *w, int op, int fd, int *rc) {
  *rc = 0;
  if (atomic_load_explicit(&w->closed, memory_order_relaxed))
    *rc = -ESHUTDOWN;
  else if (!gaio__is_core_op(op) && fd_owned(w, fd) != GAIO__OWNED_YES)
    *rc = -EBADF;
  else
    return req_alloc(w, 1, rc);
  return NULL;
}

/* Copy the request described by t into a fresh request and queue it. */
static int submit_io(gaio_watcher *w, const gaio__req *t) {
  if (w == NULL) return -EINVAL;
  pthread_mutex_lock(&w->lock);
  int rc;
  gaio__req *r = submit_begin(w, t->op, t->fd, &rc);
  if (r == NULL) {
    pthread_mutex_unlock(&w->lock);
    return rc;
  }
  gaio__queue link = r->link;
  *r = *t;
  r->link = link;
  r->seq = w->next_seq++;
  gaio__count(&w->submitted, 1);
  submit_locked(w, r);
  return 0;
}

/* A request template: the fields every operation has. */
static gaio__req req_template(int op, int fd, void *buf, size_t len, void *ctx,
                              uint64_t deadline) {
  gaio__req t;
  memset(&t, 0, sizeof(t));
  t.op = (uint8_t)op;
  t.fd = fd;
  t.buf = buf;
  t.len = len;
  t.ctx = ctx;
  t.deadline = deadline;
  t.u.sock.conn_fd = -1;
  return t;
}

int gaio_read(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx) {
  return gaio_read_deadline(w, fd, buf, len, ctx, 0);
}

int gaio_read_deadline(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx,
                       uint64_t deadline) {
  if (buf != NULL && len == 0) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_READ, fd, buf, buf ? len : 0, ctx, deadline);
  if (buf == NULL) t.flags = GAIO__REQ_SWAP;
  return submit_io(w, &t);
}

int gaio_read_full(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx, uint64_t deadline) {
  if (buf == NULL || len == 0) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_READ_FULL, fd, buf, len, ctx, deadline);
  return submit_io(w, &t);
}

int gaio_write(gaio_watcher *w, int fd, const void *buf, size_t len, void *ctx) {
  return gaio_write_deadline(w, fd, buf, len, ctx, 0);
}

int gaio_write_deadline(gaio_watcher *w, int fd, const void *buf, size_t len, void *ctx,
                        uint64_t deadline) {
  if (buf == NULL || len == 0) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_WRITE, fd, (void *)buf, len, ctx, deadline);
  return submit_io(w, &t);
}

int gaio_accept(gaio_watcher *w, int fd, struct sockaddr_storage *peer, void *ctx) {
  gaio__req t = req_template(GAIO_OP_ACCEPT, fd, NULL, 0, ctx, 0);
  t.u.sock.addr = peer;
  return submit_io(w, &t);
}

int gaio_recvfrom(gaio_watcher *w, int fd, void *buf, size_t len, struct sockaddr_storage *from,
                  void *ctx, uint64_t deadline) {
  if (buf != NULL && len == 0) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_RECVFROM, fd, buf, buf ? len : 0, ctx, deadline);
  if (buf == NULL) t.flags = GAIO__REQ_SWAP;
  t.u.sock.addr = from;
  return submit_io(w, &t);
}

int gaio_sendto(gaio_watcher *w, int fd, const void *buf, size_t len, const struct sockaddr *to,
                socklen_t to_len, void *ctx, uint64_t deadline) {
  if (buf == NULL || len == 0 || (to == NULL && to_len != 0)) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_SENDTO, fd, (void *)buf, len, ctx, deadline);
  t.u.sock.addr = (void *)to;
  t.u.sock.addr_len = to ? to_len : 0;
  return submit_io(w, &t);
}

int gaio_shutdown(gaio_watcher *w, int fd, void *ctx) {
  gaio__req t = req_template(GAIO_OP_SHUTDOWN, fd, NULL, 0, ctx, 0);
  return submit_io(w, &t);
}

/* 0 is "no deadline" everywhere else; a timer without one would never fire, so it is refused
 * rather than read as "now" (gaio_post() is the way to be called back at once). */
int gaio_timer(gaio_watcher *w, void *ctx, uint64_t deadline) {
  if (deadline == 0) return -EINVAL;
  gaio__req t = req_template(GAIO_OP_TIMER, GAIO_NO_FD, NULL, 0, ctx, deadline);
  return submit_io(w, &t);
}

int gaio_post(gaio_watcher *w, void *ctx) {
  gaio__req t = req_template(GAIO_OP_POST, GAIO_NO_FD, NULL, 0, ctx, 0);
  return submit_io(w, &t);
}

/* connect(2) runs here, in the caller's thread, so that addr need not outlive the call. The
 * request is allocated first, so that a started connect always has its result; what connect(2)
 * said travels in r->error (-EINPROGRESS: the loop waits for the outcome). */
int gaio_connect(gaio_watcher *w, int fd, const struct sockaddr *addr, socklen_t addr_len,
                 void *ctx, uint64_t deadline) {
  if (w == NULL || addr == NULL || addr_len == 0) return -EINVAL;
  pthread_mutex_lock(&w->lock);
  int rc;
  gaio__req *r = submit_begin(w, GAIO_OP_CONNECT, fd, &rc);
  pthread_mutex_unlock(&w->lock);
  if (r == NULL) return rc;
  gaio__queue link = r->link;
  *r = req_template(GAIO_OP_CONNECT, fd, NULL, 0, ctx, deadline);
  r->link = link;
  r->error = connect(fd, addr, addr_len) == 0 ? 0 : -errno;
  if (r->error == -EAGAIN) r->error = -EINPROGRESS; /* unix sockets: the backlog is full */
  pthread_mutex_lock(&w->lock);
  r->seq = w->next_seq++;
  gaio__count(&w->submitted, 1);
  submit_locked(w, r);
  return 0;
}

/* Socket type, for the loop: sockets get sendmsg(MSG_NOSIGNAL), stream sockets the short-read
 * shortcut. Anything else (a pipe) is written with writev. */
static uint32_t probe_fd_kind(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return 0;
  return GAIO__FD_SOCK | (type == SOCK_STREAM ? GAIO__FD_STREAM : 0);
}

int gaio_attach(gaio_watcher *w, int fd) {
  if (w == NULL) return -EINVAL;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  pthread_mutex_lock(&w->lock);
  int rc = 0;
  gaio__fd *f = NULL;
  gaio__req *r = NULL;
  if (atomic_load_explicit(&w->closed, memory_order_relaxed))
    rc = -ESHUTDOWN;
  else if ((size_t)fd / GAIO__FD_CHUNK >= w->nchunks)
    rc = -ERANGE;
  else if ((f = fd_entry_make(w, fd)) == NULL)
    rc = -ENOMEM;
  else if (atomic_load_explicit(&f->owned, memory_order_relaxed) != GAIO__OWNED_NO)
    rc = -EEXIST;
  else if ((r = req_alloc(w, 0, &rc)) == NULL)
    ;
  else if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
    rc = -errno;
  else if ((rc = w->be->attach(w, fd, w->next_gen + 1)) != 0 && !(fl & O_NONBLOCK))
    fcntl(fd, F_SETFL, fl); /* give it back as it came */
  if (rc != 0) {
    if (r != NULL) gaio__queue_push(&w->free_reqs, &r->link);
    pthread_mutex_unlock(&w->lock);
    return rc;
  }
  atomic_store_explicit(&f->owned, GAIO__OWNED_YES, memory_order_relaxed);
  atomic_fetch_add_explicit(&w->nfds, 1, memory_order_relaxed);
  r->op = GAIO__OP_ATTACH;
  r->fd = fd;
  r->u.attach.gen = ++w->next_gen;
  r->u.attach.kind = probe_fd_kind(fd) | ((fl & O_NONBLOCK) ? GAIO__FD_WAS_NONBLOCK : 0);
  submit_locked(w, r);
  return 0;
}

int gaio_free(gaio_watcher *w, int fd) {
  if (w == NULL) return -EINVAL;
  pthread_mutex_lock(&w->lock);
  int rc = 0;
  gaio__req *r = NULL;
  if (atomic_load_explicit(&w->closed, memory_order_relaxed))
    rc = -ESHUTDOWN;
  else if (fd_owned(w, fd) != GAIO__OWNED_YES)
    rc = -EBADF;
  else
    r = req_alloc(w, 0, &rc);
  if (rc != 0) {
    pthread_mutex_unlock(&w->lock);
    return rc;
  }
  atomic_store_explicit(&fd_entry(w, fd)->owned, GAIO__OWNED_FREEING, memory_order_relaxed);
  r->op = GAIO__OP_FREE;
  r->fd = fd;
  submit_locked(w, r);
  return 0;
}

/* ---- Loop side: completion, deadlines, swap buffer ---- */

static int deadline_less(const gaio__heap_node *a, const gaio__heap_node *b) {
  const gaio__req *x = gaio__container_of(a, gaio__req, heap);
  const gaio__req *y = gaio__container_of(b, gaio__req, heap);
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void heap_link(gaio_watcher *w, gaio__req *r) {
  assert(r->deadline != 0 && !(r->flags & GAIO__REQ_IN_HEAP));
  gaio__heap_insert(&w->timers, &r->heap, deadline_less);
  r->flags |= GAIO__REQ_IN_HEAP;
}

static void heap_unlink(gaio_watcher *w, gaio__req *r) {
  if (r->flags & GAIO__REQ_IN_HEAP) {
    assert(w->timers.n > 0);
    gaio__heap_remove(&w->timers, &r->heap, deadline_less);
    r->flags &= (uint8_t)~GAIO__REQ_IN_HEAP;
  }
}

static void kick_later(gaio_watcher *w, gaio__fd *f) {
  gaio__queue_remove(&f->kick_link);
  gaio__queue_push(&w->kicks, &f->kick_link);
}

void gaio__complete(gaio_watcher *w, gaio__req *r, int error) {
  gaio__fd *f = r->f;
  /* Exactly one result per request. r is on its fd's queue (f set), a pending timer (in its
   * bucket and in the heap), or on no queue at all (start_io and start_core finish it before
   * queueing it). A request already in the done queue has f NULL, is linked and is out of the
   * heap: completing it again would deliver a second result. */
  assert(f != NULL || r->op == GAIO_OP_TIMER ? gaio__queue_linked(&r->link) ==
                                                   (f != NULL || (r->flags & GAIO__REQ_IN_HEAP))
                                             : !gaio__queue_linked(&r->link));
  assert(r->link.next->prev == &r->link && r->link.prev->next == &r->link);
  if (f != NULL) {
    assert(f->state & GAIO__FD_LIVE); /* fd_release completes the requests, then forgets f */
    gaio__queue *q = gaio__is_write_op(r->op) ? &f->wq : &f->rq;
    if (gaio__queue_head(q) == &r->link && r->link.next != q) kick_later(w, f);
    assert(!gaio__is_write_op(r->op) || f->wbytes >= r->len);
    if (gaio__is_write_op(r->op)) f->wbytes -= r->len;
    r->f = NULL;
  }
  gaio__queue_remove(&r->link);
  heap_unlink(w, r);
  r->error = error;
  r->flags &= (uint8_t)~(GAIO__REQ_KERNEL | GAIO__REQ_CANCEL);
  if (r->flags & GAIO__REQ_SWAP && r->done > 0) w->swap_out++;
  gaio__queue_push(&w->done, &r->link);
  gaio__count(&w->queued, 1);
}

void gaio__cancel(gaio_watcher *w, gaio__req *r, int error) {
  assert(r->f != NULL); /* the backend cancels what is queued on an fd, never a core op */
  heap_unlink(w, r);
  w->be->cancel(w, r, error);
}

/* shutdown(2) never blocks: the FIN is queued behind the bytes already in the send buffer, not
 * waited for. So every backend runs it here, in the loop thread, rather than through the kernel
 * interface (which would only add a round trip). */
void gaio__shutdown_run(gaio_watcher *w, gaio__req *r) {
  gaio__complete(w, r, shutdown(r->fd, SHUT_WR) == 0 ? 0 : -errno);
}

/* slice is a slice handed out by gaio__swap_take() (for asserts; inline: unused with NDEBUG). */
static inline int swap_slice_ok(const gaio_watcher *w, const char *slice) {
  return slice >= w->swap && slice + w->read_max <= w->swap + w->swap_size;
}

char *gaio__swap_take(gaio_watcher *w) {
  if (w->swap_size - w->swap_used < w->read_max) return NULL;
  char *p = w->swap + w->swap_used;
  w->swap_used += w->read_max;
  return p;
}

void gaio__swap_trim(gaio_watcher *w, char *slice, size_t used) {
  assert(swap_slice_ok(w, slice) && used <= w->read_max);
  size_t end = (size_t)(slice - w->swap) + ((used + 63) & ~(size_t)63); /* keep 64-B alignment */
  if (slice + w->read_max == w->swap + w->swap_used && end < w->swap_used) w->swap_used = end;
}

void gaio__swap_return(gaio_watcher *w, char *slice) {
  assert(swap_slice_ok(w, slice));
  if (slice + w->read_max == w->swap + w->swap_used) w->swap_used -= w->read_max;
}

void gaio__kick(gaio_watcher *w, gaio__fd *f) { kick_later(w, f); }

void gaio__defer(gaio_watcher *w, gaio__fd *f) {
  gaio__queue_remove(&f->kick_link);
  gaio__queue_push(&w->deferred, &f->kick_link);
}

/* Start of a batch: the previous batch's swap bytes are no longer valid, so the buffer is
 * recycled unless undelivered results still point into it. Deferred reads get another go. */
static void swap_recycle(gaio_watcher *w) {
  if (w->swap_out != 0) return;
  w->swap_used = 0;
  if (w->be->recycle != NULL) w->be->recycle(w);
  while (!gaio__queue_empty(&w->deferred)) {
    gaio__fd *f = gaio__container_of(gaio__queue_head(&w->deferred), gaio__fd, kick_link);
    kick_later(w, f);
  }
}

/* Complete every pending request of f with error, then forget f. how: close the fd, or hand it
 * back (with its O_NONBLOCK flag as it was at attach), or neither (it is closed elsewhere). */
enum { RELEASE_CLOSE, RELEASE_DETACH };

static void fd_release(gaio_watcher *w, gaio__fd *f, int error, int how) {
  w->be->detach(w, f); /* first: requests the kernel holds settle before the rest complete */
  while (!gaio__queue_empty(&f->rq))
    gaio__complete(w, gaio__container_of(gaio__queue_head(&f->rq), gaio__req, link), error);
  while (!gaio__queue_empty(&f->wq))
    gaio__complete(w, gaio__container_of(gaio__queue_head(&f->wq), gaio__req, link), error);
  assert(f->wbytes == 0); /* every queued write gave its bytes back as it completed */
  gaio__queue_remove(&f->kick_link);
  int was_nonblock = f->state & GAIO__FD_WAS_NONBLOCK;
  f->state = 0;
  assert(atomic_load_explicit(&w->nfds, memory_order_relaxed) > 0);
  atomic_fetch_sub_explicit(&w->nfds, 1, memory_order_relaxed);
  if (how == RELEASE_DETACH && !was_nonblock) {
    int fl = fcntl(f->fd, F_GETFL);
    if (fl >= 0) fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  /* Disown before close(): once closed, the number can come back from accept() in another
   * thread at once, and gaio_attach() of it must not see the old owner. */
  atomic_store_explicit(&f->owned, GAIO__OWNED_NO, memory_order_release);
  if (how == RELEASE_CLOSE) close(f->fd);
}

static void start_attach(gaio_watcher *w, gaio__req *r) {
  gaio__fd *f = fd_entry(w, r->fd);
  /* gaio_attach() made the entry, and accepts an fd only once the loop has released it. */
  assert(f != NULL && !(f->state & GAIO__FD_LIVE));
  f->gen = r->u.attach.gen;
  f->state = (uint16_t)(GAIO__FD_LIVE | r->u.attach.kind);
  f->wbytes = 0;
}

/* Put an I/O request on its fd's queue, or complete it at once when it cannot go there. */
static void start_io(gaio_watcher *w, gaio__req *r, int closed) {
  gaio__fd *f = fd_entry(w, r->fd);
  if (closed) {
    gaio__complete(w, r, -ESHUTDOWN);
    return;
  }
  if (f == NULL || !(f->state & GAIO__FD_LIVE)) {
    gaio__complete(w, r, -EBADF); /* freed after this request was accepted */
    return;
  }
  if (r->op == GAIO_OP_CONNECT && r->error != -EINPROGRESS) {
    gaio__complete(w, r, r->error); /* connect(2) finished (or failed) in the submit call */
    return;
  }
  r->error = 0;
  gaio__queue *q = &f->rq;
  if (gaio__is_write_op(r->op)) {
    if (r->len > w->max_write_pending - f->wbytes) {
      gaio__complete(w, r, -ENOBUFS);
      return;
    }
    f->wbytes += r->len;
    q = &f->wq;
  }
  if (r->deadline != 0) heap_link(w, r);
  r->f = f;
  if (gaio__queue_empty(q)) kick_later(w, f);
  gaio__queue_push(q, &r->link);
}

/* The bucket of pending timers with this ctx (Fibonacci hashing of the pointer). */
static gaio__queue *timer_bucket(gaio_watcher *w, const void *ctx) {
  uint64_t h = ((uint64_t)(uintptr_t)ctx >> 3) * 0x9E3779B97F4A7C15ull;
  return &w->timer_q[h >> (64 - 10)];
}
_Static_assert(GAIO__TIMER_BUCKETS == 1u << 10, "timer_bucket() takes 10 bits");

/* A timer waits in the deadline heap (and in its timer_q bucket, which gaio_timer_cancel()
 * searches and close sweeps); a post is complete as soon as the loop takes it in. */
static void start_core(gaio_watcher *w, gaio__req *r, int closed) {
  assert(gaio__is_core_op(r->op) && r->f == NULL);
  if (closed || r->op == GAIO_OP_POST) {
    gaio__complete(w, r, closed ? -ESHUTDOWN : 0);
    return;
  }
  heap_link(w, r);
  gaio__queue_push(timer_bucket(w, r->ctx), &r->link);
}

/* Take everything submitted so far and put it where it belongs. Returns the closed flag as
 * seen under the lock, so that every request accepted before the close is handled as such. */
static int flush(gaio_watcher *w) {
  gaio__queue q;
  gaio__queue_init(&q);
  pthread_mutex_lock(&w->lock);
  gaio__queue_move(&w->pending, &q);
  w->wake_sent = 0;
  int closed = atomic_load_explicit(&w->closed, memory_order_relaxed);
  pthread_mutex_unlock(&w->lock);
  while (!gaio__queue_empty(&q)) {
    gaio__req *r = gaio__container_of(gaio__queue_head(&q), gaio__req, link);
    gaio__queue_remove(&r->link);
    if (r->op == GAIO__OP_ATTACH || r->op == GAIO__OP_FREE) {
      gaio__fd *f = fd_entry(w, r->fd);
      assert(f != NULL); /* made by gaio_attach() before either was queued */
      if (r->op == GAIO__OP_ATTACH)
        start_attach(w, r);
      else if (f->state & GAIO__FD_LIVE)
        fd_release(w, f, -ECANCELED, RELEASE_CLOSE);
      gaio__queue_push(&w->spent, &r->link);
    } else if (gaio__is_core_op(r->op)) {
      start_core(w, r, closed);
    } else {
      start_io(w, r, closed);
    }
  }
  return closed;
}

static void run_kicks(gaio_watcher *w) {
  while (!gaio__queue_empty(&w->kicks)) {
    gaio__fd *f = gaio__container_of(gaio__queue_head(&w->kicks), gaio__fd, kick_link);
    gaio__queue_remove(&f->kick_link);
    if (f->state & GAIO__FD_LIVE) w->be->kick(w, f);
  }
}

/* Finish every request whose deadline has passed (at once, or when the kernel gives it back).
 * A timer fires with error 0: reaching its deadline is its success. This runs no user code, so
 * the heap can be popped directly. */
static void expire(gaio_watcher *w, uint64_t now) {
  gaio__heap_node *n;
  while ((n = gaio__heap_min(&w->timers)) != NULL) {
    gaio__req *r = gaio__container_of(n, gaio__req, heap);
    if (r->deadline > now) break;
    if (r->op == GAIO_OP_TIMER)
      gaio__complete(w, r, 0);
    else
      gaio__cancel(w, r, -ETIMEDOUT);
    assert(!(r->flags & GAIO__REQ_IN_HEAP)); /* else this loop would never end */
  }
}

/* Carry out a close: every fd is released (its requests get -ESHUTDOWN) and closed, and every
 * pending timer gets -ESHUTDOWN. */
static void sweep(gaio_watcher *w) {
  for (unsigned i = 0; i < GAIO__TIMER_BUCKETS; i++)
    while (!gaio__queue_empty(&w->timer_q[i]))
      gaio__complete(w, gaio__container_of(gaio__queue_head(&w->timer_q[i]), gaio__req, link),
                     -ESHUTDOWN);
  for (size_t c = 0; c < w->nchunks; c++) {
    gaio__fd *chunk = atomic_load_explicit(&w->chunks[c], memory_order_acquire);
    if (chunk == NULL) continue;
    for (unsigned i = 0; i < GAIO__FD_CHUNK; i++)
      if (chunk[i].state & GAIO__FD_LIVE) fd_release(w, &chunk[i], -ESHUTDOWN, RELEASE_CLOSE);
  }
  w->swept = 1;
}

static int deliver(gaio_watcher *w, gaio_result *out, int max) {
  int n = 0;
  while (n < max && !gaio__queue_empty(&w->done)) {
    gaio__req *r = gaio__container_of(gaio__queue_head(&w->done), gaio__req, link);
    /* Completed requests left every other place (gaio__complete). */
    assert(r->f == NULL && !(r->flags & (GAIO__REQ_IN_HEAP | GAIO__REQ_KERNEL)));
    gaio__queue_remove(&r->link);
    gaio_result *res = &out[n++];
    res->ctx = r->ctx;
    res->size = r->done;
    res->fd = r->fd;
    res->op = r->op;
    res->error = r->error;
    res->flags = (r->flags & GAIO__REQ_TRUNC) ? GAIO_RESULT_TRUNC : 0;
    res->buf = r->buf;
    res->conn_fd = -1;
    res->addr_len = 0;
    if (r->op == GAIO_OP_ACCEPT || r->op == GAIO_OP_RECVFROM) {
      res->conn_fd = r->u.sock.conn_fd;
      res->addr_len = r->u.sock.addr_len;
    }
    if (r->flags & GAIO__REQ_SWAP) {
      if (r->done > 0) {
        res->flags |= GAIO_RESULT_SWAP;
        assert(w->swap_out > 0); /* counted in by gaio__complete */
        w->swap_out--;
      } else {
        res->buf = NULL;
      }
    }
    gaio__queue_push(&w->spent, &r->link);
  }
  gaio__count(&w->completed, (uint64_t)n);
  assert(atomic_load_explicit(&w->queued, memory_order_relaxed) >= (uint64_t)n);
  atomic_store_explicit(&w->queued, atomic_load_explicit(&w->queued, memory_order_relaxed) -
                                        (uint64_t)n, memory_order_relaxed);
  reqs_recycle(w);
  return n;
}

/* Poll timeout: the caller's, shortened to the next deadline (rounded up to whole ms). *end is
 * the time it stands for (0 when there is none). */
static int poll_timeout(gaio_watcher *w, uint64_t until, uint64_t now, uint64_t *end_out) {
  uint64_t end = until;
  gaio__heap_node *n = gaio__heap_min(&w->timers);
  if (n != NULL) {
    uint64_t d = gaio__container_of(n, gaio__req, heap)->deadline;
    if (end == 0 || d < end) end = d;
  }
  *end_out = end;
  if (end == 0) return -1;
  if (end <= now) return 0;
  uint64_t ms = (end - now + 999999u) / 1000000u;
  return ms > GAIO_MAX_POLL_MS ? GAIO_MAX_POLL_MS : (int)ms;
}

/* Block in the backend, unless a submission slipped in since the flush (then return 1). */
static int poll_sleep(gaio_watcher *w, int t, uint64_t end, int *err) {
  if (t != 0) {
    pthread_mutex_lock(&w->lock);
    int busy = !gaio__queue_empty(&w->pending) ||
               (atomic_load_explicit(&w->closed, memory_order_relaxed) && !w->swept);
    w->sleeping = !busy;
    pthread_mutex_unlock(&w->lock);
    if (busy) return 1;
  }
  /* Only a wait that may block is timed: a non-blocking poll is work, not idle time. */
  uint64_t t0 = t != 0 ? gaio_now() : 0;
  *err = w->be->poll(w, t, t > 0 ? end : 0);
  gaio__count(&w->polls, 1);
  if (t != 0) {
    gaio__count(&w->idle_ns, gaio_now() - t0);
    pthread_mutex_lock(&w->lock);
    w->sleeping = 0;
    pthread_mutex_unlock(&w->lock);
  }
  return 0;
}

/* One round: submissions in, progress, deadlines. */
static void advance(gaio_watcher *w) {
  if (flush(w) && !w->swept) sweep(w);
  run_kicks(w);
  expire(w, gaio_now());
  run_kicks(w);
}

/* Advance and poll until results are ready, the time is up, or the poll fails. Returns 0 or a
 * negative errno (-ESHUTDOWN, or the backend's poll error). */
static int wait_loop(gaio_watcher *w, int timeout_ms) {
  uint64_t until = timeout_ms > 0 ? gaio_now() + (uint64_t)timeout_ms * 1000000u : 0;
  int rc = 0;
  for (;;) {
    advance(w);
    int ready = !gaio__queue_empty(&w->done);
    if (!ready && w->swept) {
      rc = -ESHUTDOWN;
      break;
    }
    /* Results are ready without polling: return them, but poll at least every other batch so
     * that fds with immediate completions cannot starve the others. */
    if (ready && w->unpolled == 0) {
      w->unpolled = 1;
      break;
    }
    uint64_t now = gaio_now();
    uint64_t end = 0;
    int t = (ready || timeout_ms == 0) ? 0 : poll_timeout(w, until, now, &end);
    if (poll_sleep(w, t, end, &rc)) continue;
    w->unpolled = 0;
    if (rc != 0) break;
    advance(w);
    if (!gaio__queue_empty(&w->done) || timeout_ms == 0) break;
    if (until != 0 && gaio_now() >= until) break;
  }
  return rc;
}

/* Take the loop for this thread: -EBUSY while another thread is in it, and with
 * gaio_options.one_thread -EEXIST for any thread but the first that took it. */
static int loop_claim(gaio_watcher *w) {
  if (atomic_exchange(&w->in_wait, 1)) return -EBUSY;
  if (!w->one_thread) return 0;
  if (!w->owner_set) {
    w->owner = pthread_self();
    w->owner_set = 1;
  }
  if (pthread_equal(w->owner, pthread_self())) return 0;
  atomic_store(&w->in_wait, 0);
  return -EEXIST;
}

/* A poll error must neither hide results nor be hidden by them (gaio.h, gaio_wait): results
 * ready when it happens go out first, and the error is held until the done queue is empty. No
 * wait happens while it is held, so it is returned after exactly the results queued before it.
 * (Only a failing kernel interface reaches this; tests/fault_test.cc forces one by putting
 * another file in place of the backend's fd.) */
int gaio_wait(gaio_watcher *w, gaio_result *out, int max, int timeout_ms) {
  if (w == NULL || out == NULL || max <= 0) return -EINVAL;
  int claim = loop_claim(w);
  if (claim != 0) return claim;
  swap_recycle(w);
  int rc = w->poll_error != 0 ? 0 : wait_loop(w, timeout_ms);
  if (rc < 0 && !gaio__queue_empty(&w->done)) {
    assert(rc != -ESHUTDOWN); /* given only once every result is delivered */
    w->poll_error = rc;
    rc = 0;
  }
  if (rc == 0 && !gaio__queue_empty(&w->done)) {
    rc = deliver(w, out, max);
  } else if (rc == 0 && w->poll_error != 0) {
    rc = w->poll_error;
    w->poll_error = 0;
  }
  atomic_store(&w->in_wait, 0);
  return rc;
}

void gaio_watcher_close(gaio_watcher *w) {
  if (w == NULL) return;
  pthread_mutex_lock(&w->lock);
  int first = !atomic_exchange(&w->closed, 1);
  int wake = first && w->sleeping && !w->wake_sent;
  if (wake) w->wake_sent = 1;
  pthread_mutex_unlock(&w->lock);
  if (wake) w->be->wakeup(w);
}

void gaio_watcher_destroy(gaio_watcher *w) {
  if (w == NULL) return;
  gaio_watcher_close(w);
  if (!w->swept) advance(w);
  /* Connections accepted for results nobody will read would leak. */
  for (gaio__queue *q = w->done.next; q != &w->done; q = q->next) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    if (r->op == GAIO_OP_ACCEPT && r->u.sock.conn_fd >= 0) close(r->u.sock.conn_fd);
  }
  w->be->destroy(w);
  for (void *s = w->slabs; s != NULL;) {
    void *next = *(void **)s;
    free(s);
    s = next;
  }
  for (size_t c = 0; c < w->nchunks; c++) free(atomic_load(&w->chunks[c]));
  free(w->chunks);
  free(w->swap);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

void gaio_watcher_stats(gaio_watcher *w, gaio_stats *out) {
  memset(out, 0, sizeof(*out));
  out->submitted = atomic_load_explicit(&w->submitted, memory_order_relaxed);
  out->completed = atomic_load_explicit(&w->completed, memory_order_relaxed);
  out->bytes_read = atomic_load_explicit(&w->bytes_read, memory_order_relaxed);
  out->bytes_written = atomic_load_explicit(&w->bytes_written, memory_order_relaxed);
  out->queued_results = atomic_load_explicit(&w->queued, memory_order_relaxed);
  out->fds = atomic_load_explicit(&w->nfds, memory_order_relaxed);
  out->polls = atomic_load_explicit(&w->polls, memory_order_relaxed);
  out->idle_ns = atomic_load_explicit(&w->idle_ns, memory_order_relaxed);
  out->events = atomic_load_explicit(&w->events, memory_order_relaxed);
  out->reads = atomic_load_explicit(&w->reads, memory_order_relaxed);
  out->writes = atomic_load_explicit(&w->writes, memory_order_relaxed);
  out->in_flight = out->submitted >= out->completed ? out->submitted - out->completed : 0;
}

/* ---- Loop-thread calls outside gaio_wait(): cancel, detach ---- */

/* Take the loop as gaio_wait() does, and bring the submissions in, so that everything the
 * caller submitted before the call is seen. */
static int loop_enter(gaio_watcher *w) {
  if (w == NULL) return -EINVAL;
  int claim = loop_claim(w);
  if (claim != 0) return claim;
  if (atomic_load_explicit(&w->closed, memory_order_relaxed)) {
    atomic_store(&w->in_wait, 0);
    return -ESHUTDOWN;
  }
  flush(w);
  return 0;
}

static void loop_leave(gaio_watcher *w) { atomic_store(&w->in_wait, 0); }

/* The live entry of an fd that is attached and not being freed, or NULL. */
static gaio__fd *fd_attached(gaio_watcher *w, int fd) {
  gaio__fd *f = fd_entry(w, fd);
  if (f == NULL || !(f->state & GAIO__FD_LIVE) ||
      atomic_load_explicit(&f->owned, memory_order_relaxed) != GAIO__OWNED_YES)
    return NULL;
  return f;
}

/* The oldest request of f (either direction) with context ctx. */
static gaio__req *find_ctx(gaio__fd *f, void *ctx) {
  gaio__req *best = NULL;
  gaio__queue *qs[2] = {&f->rq, &f->wq};
  for (int i = 0; i < 2; i++) {
    for (gaio__queue *q = qs[i]->next; q != qs[i]; q = q->next) {
      gaio__req *r = gaio__container_of(q, gaio__req, link);
      if (r->ctx == ctx) {
        if (best == NULL || r->seq < best->seq) best = r;
        break; /* later ones in this queue are younger */
      }
    }
  }
  return best;
}

int gaio_cancel(gaio_watcher *w, int fd, void *ctx) {
  int rc = loop_enter(w);
  if (rc != 0) return rc;
  gaio__fd *f = fd_attached(w, fd);
  gaio__req *r = f ? find_ctx(f, ctx) : NULL;
  if (f == NULL) {
    rc = -EBADF;
  } else if (r == NULL) {
    rc = -ENOENT;
  } else {
    /* A request already being cancelled (its deadline passed) keeps that error. */
    if (!(r->flags & GAIO__REQ_CANCEL)) gaio__cancel(w, r, -ECANCELED);
    /* With io_uring the kernel's answer is on its way: poll until r is settled. The answer may
     * settle r only through a kick (r waits behind a head whose own cancel is pending, or r's
     * cancel found no free SQE and is sent by a kick), so the kicks run after every poll, as
     * gaio_wait() runs them; without them this loop waited forever. */
    while (r->f != NULL && rc == 0) {
      rc = w->be->poll(w, -1, 0);
      run_kicks(w);
    }
    if (rc == 0) rc = r->error == -ECANCELED ? 0 : -ENOENT;
  }
  loop_leave(w);
  return rc;
}

/* No kernel holds a timer, so the answer needs no round trip. A bucket is in submission order:
 * the first match is the oldest. Only timers whose ctx hashes alike are looked at, so the cost
 * does not grow with the other timers pending (an RPC server cancels one per call). */
int gaio_timer_cancel(gaio_watcher *w, void *ctx) {
  int rc = loop_enter(w);
  if (rc != 0) return rc;
  rc = -ENOENT;
  gaio__queue *b = timer_bucket(w, ctx);
  for (gaio__queue *q = b->next; q != b; q = q->next) {
    gaio__req *r = gaio__container_of(q, gaio__req, link);
    assert(r->op == GAIO_OP_TIMER && (r->flags & GAIO__REQ_IN_HEAP));
    if (r->ctx == ctx) {
      gaio__complete(w, r, -ECANCELED);
      rc = 0;
      break;
    }
  }
  loop_leave(w);
  return rc;
}

int gaio_detach(gaio_watcher *w, int fd) {
  int rc = loop_enter(w);
  if (rc != 0) return rc;
  pthread_mutex_lock(&w->lock);
  gaio__fd *f = fd_attached(w, fd);
  if (f == NULL)
    rc = -EBADF;
  else /* refuse submits from now on, as gaio_free() does */
    atomic_store_explicit(&f->owned, GAIO__OWNED_FREEING, memory_order_relaxed);
  pthread_mutex_unlock(&w->lock);
  if (f != NULL) fd_release(w, f, -ECANCELED, RELEASE_DETACH);
  loop_leave(w);
  return rc;
}

int gaio_pin_thread(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return -EINVAL;
  cpu_set_t allowed, one;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return -errno;
  if (!CPU_ISSET(cpu, &allowed)) return -EINVAL;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof(one), &one) == 0 ? 0 : -errno;
}
