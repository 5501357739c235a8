/* Fault injection: the decisions, the wrappers and the counters (see fault.h). Empty unless
 * built with GAIO_FAULT_INJECTION. The configuration and the counters are per process, unlike
 * every other state of gaio: the environment that sets them is. */
#include "gaio/fault.h"

#ifdef GAIO_FAULT_INJECTION

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ull
#define DEFAULT_RATE 20u /* per mille */
#define DEFAULT_RING 4u  /* io_uring entries: a queue that fills up */
#define MAX_CUT_IOV 64u  /* a sendmsg with more iovecs is never shortened */

static const char *const kind_names[GAIO__FAULT_KINDS] = {
    NULL, "short", "eagain", "eintr", "reset", "emfile", "alloc", "ring"};

/* How often each kind is chosen, among the kinds that fit the point. */
static const unsigned kind_weight[GAIO__FAULT_KINDS] = {0, 4, 4, 2, 1, 4, 1, 0};

/* The configuration: written before any thread meets a fault point (at the first use, under
 * pthread_once, or by gaio__fault_set() from a test), read with relaxed loads. */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static atomic_int cfg_on;
static _Atomic uint64_t cfg_seed_hash;
static _Atomic uint64_t cfg_seed;
static atomic_uint cfg_rate, cfg_kinds, cfg_ring;

static _Atomic uint64_t n_points;
static _Atomic uint64_t n_injected[GAIO__FAULT_KINDS];

static _Thread_local uint64_t tl_k;   /* fault points met by this thread */
static _Thread_local int tl_owed;     /* the last wrapper call injected EAGAIN or a short count */
static _Thread_local int tl_paused;   /* gaio__fault_thread_pause() */

static uint64_t splitmix64(uint64_t x) {
  x += GOLDEN;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static unsigned parse_kinds(const char *s) {
  unsigned mask = 0;
  while (s != NULL && *s != '\0') {
    size_t n = strcspn(s, ",");
    for (int k = 1; k < GAIO__FAULT_KINDS; k++)
      if (strlen(kind_names[k]) == n && strncmp(s, kind_names[k], n) == 0) mask |= 1u << k;
    s += n;
    if (*s == ',') s++;
  }
  return mask;
}

static void store(const gaio__fault_config *c) {
  atomic_store_explicit(&cfg_seed, c->seed, memory_order_relaxed);
  atomic_store_explicit(&cfg_seed_hash, splitmix64(c->seed), memory_order_relaxed);
  atomic_store_explicit(&cfg_rate, c->rate > 1000 ? 1000 : c->rate, memory_order_relaxed);
  atomic_store_explicit(&cfg_kinds, c->kinds, memory_order_relaxed);
  atomic_store_explicit(&cfg_ring, c->ring, memory_order_relaxed);
  atomic_store_explicit(&cfg_on, c->on, memory_order_release);
}

static void read_env(void) {
  gaio__fault_config c = {0};
  const char *seed = getenv("GAIO_FAULT_SEED");
  c.on = seed != NULL && seed[0] != '\0';
  c.seed = c.on ? strtoull(seed, NULL, 0) : 0;
  const char *rate = getenv("GAIO_FAULT_RATE");
  c.rate = rate != NULL && rate[0] != '\0' ? (unsigned)strtoul(rate, NULL, 0) : DEFAULT_RATE;
  const char *kinds = getenv("GAIO_FAULT_KINDS");
  c.kinds = kinds != NULL && kinds[0] != '\0' ? parse_kinds(kinds) : ~1u;
  const char *ring = getenv("GAIO_FAULT_RING");
  c.ring = ring != NULL && ring[0] != '\0' ? (unsigned)strtoul(ring, NULL, 0) : DEFAULT_RING;
  store(&c);
}

static int active(void) {
  pthread_once(&env_once, read_env);
  return atomic_load_explicit(&cfg_on, memory_order_acquire);
}

/* Is fd a stream socket? Only they are shortened or reset (a datagram is never cut). */
static int stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  return fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

/* The kind chosen by the bits x among the kinds of mask, by weight. */
static int choose(unsigned mask, uint64_t x) {
  unsigned total = 0;
  for (int k = 1; k < GAIO__FAULT_KINDS; k++)
    if (mask & (1u << k)) total += kind_weight[k];
  if (total == 0) return GAIO__FAULT_NONE;
  unsigned at = (unsigned)(x % total);
  for (int k = 1; k < GAIO__FAULT_KINDS; k++) {
    if (!(mask & (1u << k))) continue;
    if (at < kind_weight[k]) return k;
    at -= kind_weight[k];
  }
  return GAIO__FAULT_NONE;
}

int gaio__fault_pick(unsigned allow, int fd, size_t *len) {
  if (!active() || tl_paused) return GAIO__FAULT_NONE;
  uint64_t k = tl_k++;
  atomic_fetch_add_explicit(&n_points, 1, memory_order_relaxed);
  uint64_t r = splitmix64(atomic_load_explicit(&cfg_seed_hash, memory_order_relaxed) + k * GOLDEN);
  if (r % 1000u >= atomic_load_explicit(&cfg_rate, memory_order_relaxed)) return GAIO__FAULT_NONE;
  unsigned mask = allow & atomic_load_explicit(&cfg_kinds, memory_order_relaxed);
  if (len == NULL || *len < 2) mask &= ~GAIO__FAULT_BIT(GAIO__FAULT_SHORT);
  int kind = choose(mask, (r >> 10) & 0xffffffu);
  if ((kind == GAIO__FAULT_SHORT || kind == GAIO__FAULT_RESET) && !stream_socket(fd))
    return GAIO__FAULT_NONE;
  if (kind == GAIO__FAULT_RESET && shutdown(fd, SHUT_RDWR) != 0) return GAIO__FAULT_NONE;
  if (kind == GAIO__FAULT_SHORT) *len = 1 + (size_t)((r >> 34) % (*len - 1));
  if (kind != GAIO__FAULT_NONE)
    atomic_fetch_add_explicit(&n_injected[kind], 1, memory_order_relaxed);
  return kind;
}

int gaio__fault_owed(void) {
  int owed = tl_owed;
  tl_owed = 0;
  return owed;
}

unsigned gaio__fault_ring_entries(unsigned entries) {
  if (!active() || !(atomic_load_explicit(&cfg_kinds, memory_order_relaxed) &
                     GAIO__FAULT_BIT(GAIO__FAULT_RING)))
    return entries;
  unsigned ring = atomic_load_explicit(&cfg_ring, memory_order_relaxed);
  if (ring == 0) return entries;
  atomic_fetch_add_explicit(&n_injected[GAIO__FAULT_RING], 1, memory_order_relaxed);
  return ring;
}

/* ---- The wrappers ---- */

/* The outcome of a point that moves no bytes, or of one whose fault ends the call: -1 with
 * errno set, or 0 when the real call must be made. */
static int fail_as(int kind, int reset_errno) {
  switch (kind) {
    case GAIO__FAULT_EAGAIN:
      tl_owed = 1;
      errno = EAGAIN;
      return -1;
    case GAIO__FAULT_EINTR:
      errno = EINTR;
      return -1;
    case GAIO__FAULT_RESET:
      errno = reset_errno;
      return -1;
    case GAIO__FAULT_EMFILE:
      errno = EMFILE;
      return -1;
    case GAIO__FAULT_SHORT:
      tl_owed = 1;
      return 0;
    default:
      return 0;
  }
}

ssize_t gaio__sys_read(int fd, void *buf, size_t len) {
  tl_owed = 0;
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_READ, fd, &len), ECONNRESET) < 0) return -1;
  return read(fd, buf, len);
}

/* Datagrams: never shortened, never reset. */
ssize_t gaio__sys_recvmsg(int fd, struct msghdr *msg, int flags) {
  tl_owed = 0;
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_RETRY, fd, NULL), 0) < 0) return -1;
  return recvmsg(fd, msg, flags);
}

/* A shortened sendmsg sends a prefix of the iovecs: the first `len` bytes. */
ssize_t gaio__sys_sendmsg(int fd, const struct msghdr *msg, int flags) {
  tl_owed = 0;
  size_t total = 0;
  for (size_t i = 0; i < msg->msg_iovlen; i++) total += msg->msg_iov[i].iov_len;
  size_t len = msg->msg_iovlen <= MAX_CUT_IOV ? total : 0;
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_WRITE, fd, &len), EPIPE) < 0) return -1;
  if (len >= total || len == 0) return sendmsg(fd, msg, flags);
  struct iovec cut[MAX_CUT_IOV];
  struct msghdr m = *msg;
  size_t n = 0;
  for (size_t left = len; left > 0; n++) {
    cut[n] = msg->msg_iov[n];
    if (cut[n].iov_len > left) cut[n].iov_len = left;
    left -= cut[n].iov_len;
  }
  m.msg_iov = cut;
  m.msg_iovlen = n;
  return sendmsg(fd, &m, flags);
}

/* Pipes and other non-sockets: EAGAIN and EINTR only (shortening is for stream sockets). */
ssize_t gaio__sys_writev(int fd, const struct iovec *iov, int cnt) {
  tl_owed = 0;
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_RETRY, fd, NULL), 0) < 0) return -1;
  return writev(fd, iov, cnt);
}

int gaio__sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  tl_owed = 0;
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_ACCEPT, fd, NULL), 0) < 0) return -1;
  return accept4(fd, addr, len, flags);
}

int gaio__sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms) {
  if (fail_as(gaio__fault_pick(GAIO__FAULTS_POLL, -1, NULL), 0) < 0) return -1;
  return epoll_wait(epfd, ev, max, timeout_ms);
}

void *gaio__malloc(size_t size) {
  if (gaio__fault_pick(GAIO__FAULT_BIT(GAIO__FAULT_ALLOC), -1, NULL) != GAIO__FAULT_NONE) {
    errno = ENOMEM;
    return NULL;
  }
  return malloc(size);
}

void *gaio__calloc(size_t n, size_t size) {
  if (gaio__fault_pick(GAIO__FAULT_BIT(GAIO__FAULT_ALLOC), -1, NULL) != GAIO__FAULT_NONE) {
    errno = ENOMEM;
    return NULL;
  }
  return calloc(n, size);
}

/* A failed realloc leaves p as it was, as the real one does. */
void *gaio__realloc(void *p, size_t size) {
  if (gaio__fault_pick(GAIO__FAULT_BIT(GAIO__FAULT_ALLOC), -1, NULL) != GAIO__FAULT_NONE) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, size);
}

/* ---- For the tests ---- */

void gaio__fault_get(gaio__fault_config *out) {
  pthread_once(&env_once, read_env);
  out->on = atomic_load_explicit(&cfg_on, memory_order_acquire);
  out->seed = atomic_load_explicit(&cfg_seed, memory_order_relaxed);
  out->rate = atomic_load_explicit(&cfg_rate, memory_order_relaxed);
  out->kinds = atomic_load_explicit(&cfg_kinds, memory_order_relaxed);
  out->ring = atomic_load_explicit(&cfg_ring, memory_order_relaxed);
}

void gaio__fault_set(const gaio__fault_config *c) {
  pthread_once(&env_once, read_env);
  store(c);
}

void gaio__fault_thread_reset(void) {
  tl_k = 0;
  tl_owed = 0;
}

void gaio__fault_thread_pause(int paused) { tl_paused = paused; }

void gaio__fault_stats_get(gaio__fault_stats *out) {
  out->points = atomic_load_explicit(&n_points, memory_order_relaxed);
  for (int k = 0; k < GAIO__FAULT_KINDS; k++)
    out->injected[k] = atomic_load_explicit(&n_injected[k], memory_order_relaxed);
}

const char *gaio__fault_kind_name(int kind) {
  return kind > GAIO__FAULT_NONE && kind < GAIO__FAULT_KINDS ? kind_names[kind] : NULL;
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int gaio_fault_unused_t;

#endif /* GAIO_FAULT_INJECTION */
