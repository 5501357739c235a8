/* Fault injection (issue 12): one seed decides a stream of faults at the kernel interface and
 * at the allocator of //gaio and //rpc. Private to //gaio; visible to //rpc (its allocations go
 * through the wrappers below) and to the tests.
 *
 * BUILD. Compiled in only when GAIO_FAULT_INJECTION is defined (`bazel ... --config=fault`).
 * Otherwise this header is a set of macros: every wrapper is the plain call (gaio__malloc is
 * malloc, gaio__sys_read is read), GAIO__FAULT is 0 so the branches that depend on it are dead
 * code, and a normal or release build holds no fault code and no gaio__fault symbol.
 *
 * RUN. A fault build injects nothing until GAIO_FAULT_SEED is set (decimal, or hex with 0x).
 * Then GAIO_FAULT_RATE per mille of the fault points fail (default 20; at 1000 every retry
 * fails too, so an EAGAIN storm never ends and nothing progresses), with the kinds named in
 * GAIO_FAULT_KINDS (comma-separated names of gaio__fault_kind_name(), default all), and every
 * watcher gets GAIO_FAULT_RING io_uring submission queue entries (default 4; 0 keeps the
 * option) when the kind "ring" is on.
 *
 * DECISIONS. A fault point is one call of a wrapper (or of gaio__fault_pick()). The k-th point
 * of a thread is decided by r = splitmix64(splitmix64(seed) + k * golden), a pure function of
 * (seed, k): r % 1000 < rate says whether it fails, the next bits which fault (weighted among
 * the kinds that fit the point), and how short a shortened transfer is. k counts per thread,
 * from 0 in every new thread, and gaio__fault_thread_reset() restarts it (the invariant suite
 * does at the start of each test, so a test run alone with --gtest_filter sees the decisions it
 * saw in the whole run). A global counter would let the interleaving of the threads (an RPC
 * server's workers, a channel's thread, the caller) decide which thread gets which decision;
 * per thread, a thread that meets the same points in the same order gets the same faults. Real
 * sockets keep some freedom (how many bytes a read finds), so a replay is likely, not certain.
 *
 * WHAT IS INJECTED, AND WHY IT STAYS HONEST. Each fault is one the kernel could give at that
 * point, so that whatever breaks is a bug of gaio or rpc, never of the injector:
 *   - EINTR from a read, write, accept or poll: every caller retries it.
 *   - EMFILE from accept4: nothing is taken from the backlog, as with a real EMFILE.
 *   - ECONNRESET from a read, EPIPE from a write, on stream sockets only, made real and sticky
 *     by shutdown(fd, SHUT_RDWR) first: later calls on the fd and the peer see the connection
 *     end (reads find EOF, writes EPIPE) as after a reset. If the shutdown fails, no fault.
 *   - A short read or write: fewer bytes asked of the kernel (a prefix of the iovecs for a
 *     sendmsg), on stream sockets only: a datagram is never cut.
 *   - EAGAIN from a read, write or accept, with nothing done.
 *   - NULL (errno ENOMEM) from gaio__malloc, gaio__calloc, gaio__realloc.
 *   - A tiny io_uring (GAIO_FAULT_RING entries), so that the submission queue fills up.
 * Edge-triggered epoll takes a short transfer on a stream, and EAGAIN, as the kernel's word that
 * the buffer is drained or full, and waits for the next edge. After an injected one, data or
 * room is left and no edge may ever come: a hang that would be the injector's fault. So a
 * wrapper that shortens a transfer or makes up an EAGAIN sets a per-thread flag, which the
 * backend reads with gaio__fault_owed() right after the call: the fd is then owed a kick, the
 * next poll does not block, and the fd is tried again after it, as if an edge had come (a
 * spurious retry is harmless: the retried call hears the truth from the kernel). Injecting only
 * what the kernel would say at that instant instead could never make an EAGAIN storm. io_uring
 * needs no such help, since the kernel, not a wrapper, makes its calls: there the backend asks
 * gaio__fault_pick() when it prepares an operation, and an injected EAGAIN arms the readiness
 * poll it arms after a real -EAGAIN (level-triggered: it fires at once if the fd is ready), a
 * shortened length is resubmitted for the rest like any partial transfer, and a reset or EMFILE
 * completes the request as the kernel would have. */
#ifndef GAIO_FAULT_H
#define GAIO_FAULT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the injector does, counted per kind (gaio__fault_stats). */
enum gaio__fault_kind {
  GAIO__FAULT_NONE = 0,
  GAIO__FAULT_SHORT = 1,  /* a read or write moves fewer bytes */
  GAIO__FAULT_EAGAIN = 2, /* a read, write or accept says EAGAIN */
  GAIO__FAULT_EINTR = 3,  /* a read, write, accept or poll says EINTR */
  GAIO__FAULT_RESET = 4,  /* ECONNRESET on a read, EPIPE on a write, after shutdown(SHUT_RDWR) */
  GAIO__FAULT_EMFILE = 5, /* accept says EMFILE */
  GAIO__FAULT_ALLOC = 6,  /* an allocation returns NULL */
  GAIO__FAULT_RING = 7,   /* a watcher gets a tiny io_uring (counted once per watcher) */
  GAIO__FAULT_KINDS = 8
};

/* The kinds that fit each point, as masks of (1u << kind). */
#define GAIO__FAULT_BIT(kind) (1u << (kind))
#define GAIO__FAULTS_READ                                                                  \
  (GAIO__FAULT_BIT(GAIO__FAULT_SHORT) | GAIO__FAULT_BIT(GAIO__FAULT_EAGAIN) |              \
   GAIO__FAULT_BIT(GAIO__FAULT_EINTR) | GAIO__FAULT_BIT(GAIO__FAULT_RESET))
#define GAIO__FAULTS_WRITE GAIO__FAULTS_READ
/* A call that moves nothing or all: a datagram sent or received, a write to a pipe. */
#define GAIO__FAULTS_RETRY \
  (GAIO__FAULT_BIT(GAIO__FAULT_EAGAIN) | GAIO__FAULT_BIT(GAIO__FAULT_EINTR))
#define GAIO__FAULTS_ACCEPT (GAIO__FAULTS_RETRY | GAIO__FAULT_BIT(GAIO__FAULT_EMFILE))
#define GAIO__FAULTS_POLL GAIO__FAULT_BIT(GAIO__FAULT_EINTR)
/* io_uring operations: the kernel makes the call, so no EINTR is made up there. */
#define GAIO__FAULTS_KERNEL_OP(mask) ((mask) & ~GAIO__FAULT_BIT(GAIO__FAULT_EINTR))

#ifdef GAIO_FAULT_INJECTION

#define GAIO__FAULT 1

/* Decide the next fault point of this thread, among the kinds of allow (a GAIO__FAULTS_* mask)
 * that are enabled. fd is the socket of the call (-1: none); for a SHORT, *len (NULL: the
 * point moves no bytes) is shortened to 1..*len-1, and for a RESET, fd is shut down. Returns
 * the kind injected (counted), or GAIO__FAULT_NONE. */
int gaio__fault_pick(unsigned allow, int fd, size_t *len);

/* 1 if the last wrapper call of this thread returned an injected EAGAIN or short transfer (the
 * fd may still have data or room, and no epoll edge will say so); clears the flag. */
int gaio__fault_owed(void);

/* io_uring submission queue entries for a new watcher that asked for `entries`. */
unsigned gaio__fault_ring_entries(unsigned entries);

/* The system calls of the epoll backend, each one a fault point (see the top of this file). */
ssize_t gaio__sys_read(int fd, void *buf, size_t len);
ssize_t gaio__sys_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t gaio__sys_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t gaio__sys_writev(int fd, const struct iovec *iov, int cnt);
int gaio__sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int gaio__sys_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout_ms);

/* The allocator of //gaio and //rpc (free() is called directly: it cannot fail). */
void *gaio__malloc(size_t size);
void *gaio__calloc(size_t n, size_t size);
void *gaio__realloc(void *p, size_t size);

/* ---- For the tests ---- */

typedef struct gaio__fault_config {
  int on;         /* 0: inject nothing */
  uint64_t seed;
  unsigned rate;  /* per mille of the fault points, at most 1000 */
  unsigned kinds; /* mask of (1u << kind) */
  unsigned ring;  /* io_uring entries of every watcher while "ring" is on; 0: unchanged */
} gaio__fault_config;

/* The configuration in force (read from the environment at the first use). */
void gaio__fault_get(gaio__fault_config *out);
/* Replace it (no other thread may be at a fault point meanwhile). */
void gaio__fault_set(const gaio__fault_config *c);
/* Restart this thread's point counter k at 0. */
void gaio__fault_thread_reset(void);
/* paused 1: this thread's fault points inject nothing and do not count (a test's setup that
 * keeps failing at a high rate); 0: they do again. */
void gaio__fault_thread_pause(int paused);

typedef struct gaio__fault_stats {
  uint64_t points;                      /* fault points met while injecting */
  uint64_t injected[GAIO__FAULT_KINDS]; /* faults injected, by kind */
} gaio__fault_stats;

/* Counters since the start of the process, all threads. */
void gaio__fault_stats_get(gaio__fault_stats *out);
/* "short", "eagain", "eintr", "reset", "emfile", "alloc", "ring" (NULL for NONE or beyond). */
const char *gaio__fault_kind_name(int kind);

#else /* !GAIO_FAULT_INJECTION: the plain calls, nothing else */

#define GAIO__FAULT 0
#define gaio__fault_pick(allow, fd, len) ((void)(fd), (void)(len), GAIO__FAULT_NONE)
#define gaio__fault_owed() 0
#define gaio__fault_ring_entries(entries) (entries)
#define gaio__sys_read read
#define gaio__sys_recvmsg recvmsg
#define gaio__sys_sendmsg sendmsg
#define gaio__sys_writev writev
#define gaio__sys_accept4 accept4
#define gaio__sys_epoll_wait epoll_wait
#define gaio__malloc malloc
#define gaio__calloc calloc
#define gaio__realloc realloc

#endif /* GAIO_FAULT_INJECTION */

#ifdef __cplusplus
}
#endif

#endif /* GAIO_FAULT_H */
