/* gaio-c: a proactor for sockets.
 *
 * You submit whole operations ("read into this buffer", "write all of these bytes", "half-close
 * once those are written") on sockets the watcher owns, each with a context pointer. Then you
 * collect the completions in batches with gaio_wait(). You never see readiness events. The
 * thread that calls gaio_wait() runs the event loop itself, so there is no internal thread and no
 * hand-off between threads on the hot path. Two requests have no socket: a timer (gaio_timer())
 * and a user completion that any thread can hand to the loop (gaio_post()).
 *
 * THE CONTRACT (it holds for every submit call below)
 *   - A submit call returns 0 or a negative errno. If it returns < 0, no result will ever be
 *     delivered for it. If it returns 0, exactly one gaio_result is delivered for it by
 *     gaio_wait(). This also holds after gaio_free() (the result then carries -ECANCELED) and
 *     after gaio_watcher_close() (the result then carries -ESHUTDOWN).
 *   - result.error is 0, a negative errno, or GAIO_EOF. result.size is meaningful on error too:
 *     it is the partial progress of a read-full or of a write.
 *   - A deadline that passes gives -ETIMEDOUT. A zero-length buffer, or a NULL buffer for a write
 *     or a read-full, gives -EINVAL synchronously.
 *   - Requests on one fd complete in FIFO order per direction. Reads and writes proceed
 *     independently (full duplex). Connects, sends and shutdowns travel with the writes.
 *
 * OWNERSHIP OF SOCKETS
 *   gaio_attach() passes ownership of an fd to the watcher, without dup(): one fd per connection.
 *   From then on the watcher sets and keeps O_NONBLOCK, and gaio_free() or gaio_watcher_close()
 *   closes it. Until it is freed, do not read, write or close the fd yourself.
 *
 * THREADS
 *   Submit calls, gaio_attach(), gaio_free(), gaio_watcher_close() and gaio_watcher_stats() are
 *   safe from any thread. gaio_wait() is single-consumer: one thread at a time (a second
 *   concurrent caller gets -EBUSY). gaio_cancel(), gaio_timer_cancel() and gaio_detach() answer
 *   synchronously, so they belong to that same loop thread, between waits. Watchers are
 *   independent: there is no file-scope state.
 *
 * BACKENDS
 *   Two on Linux, with the same observable behaviour (one test suite runs over both):
 *   "uring" (io_uring, Linux 5.19 or later: one io_uring_enter per gaio_wait() submits every
 *   queued operation and collects the completions; NULL-buffer reads take slices of the swap
 *   buffer from a provided-buffer ring; multishot accept while several accepts are queued) and
 *   "epoll" (edge-triggered; each operation is tried at once, and waits for an edge only after
 *   EAGAIN). io_uring is chosen when it starts, else epoll; see gaio_options.backend.
 *   One difference a loop thread can see: io_uring finishes completions on the thread that
 *   submitted them to the kernel (the one in gaio_wait(), or in gaio_cancel() or
 *   gaio_watcher_destroy() when they wait for the kernel), by flagging it as a signal would. A
 *   blocking call of that thread's own that has a timeout (recv() with SO_RCVTIMEO, say) may
 *   then fail with EINTR, as after a signal: retry it, make such calls on another thread, or
 *   give the watcher a loop thread of its own (gaio_options.one_thread).
 *
 * All times are CLOCK_MONOTONIC nanoseconds; see gaio_now(). A deadline of 0 means "none".
 *
 * Internal invariants (one result per request, queue links, counters) are checked with assert():
 * on in test and debug builds (Bazel's default fastbuild), compiled out when NDEBUG is defined,
 * as Bazel's -c opt (--config=opt) does. A failed assert is a bug in gaio, never a runtime error
 * of the caller's: those are returned as negative errno values. */
#ifndef GAIO_GAIO_H
#define GAIO_GAIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gaio_watcher gaio_watcher;

/* Library error code, outside the errno range (as libuv's UV_EOF): the peer closed its side. */
#define GAIO_EOF (-4095)
/* gaio_watcher_create(): the backend named in gaio_options.backend or GAIO_BACKEND does not
 * exist here. */
#define GAIO_EBACKEND (-4094)

/* Operation codes, reported in gaio_result.op. */
enum gaio_op {
  GAIO_OP_READ = 1,      /* gaio_read / gaio_read_deadline */
  GAIO_OP_READ_FULL = 2, /* gaio_read_full */
  GAIO_OP_WRITE = 3,     /* gaio_write / gaio_write_deadline */
  GAIO_OP_ACCEPT = 4,    /* gaio_accept */
  GAIO_OP_CONNECT = 5,   /* gaio_connect */
  GAIO_OP_RECVFROM = 6,  /* gaio_recvfrom */
  GAIO_OP_SENDTO = 7,    /* gaio_sendto */
  GAIO_OP_SHUTDOWN = 8,  /* gaio_shutdown */
  GAIO_OP_TIMER = 9,     /* gaio_timer */
  GAIO_OP_POST = 10      /* gaio_post */
};

/* gaio_result.fd of a request that has no fd: a timer or a post. */
#define GAIO_NO_FD (-1)

/* gaio_result.flags: the bytes are in the watcher's swap buffer (the read was submitted with a
 * NULL buffer and got size > 0 bytes). They stay valid until the next call of gaio_wait() on this
 * watcher. A NULL-buffer read that ends without data (EOF, error, deadline) has buf NULL and no
 * flag. */
#define GAIO_RESULT_SWAP 0x1u
/* gaio_result.flags: a received datagram was longer than the buffer; size is what was kept. */
#define GAIO_RESULT_TRUNC 0x2u

/* One completion. A plain struct, filled by gaio_wait(); the caller owns the array. */
typedef struct gaio_result {
  void *ctx;      /* the context pointer given at submit, unchanged */
  void *buf;      /* the buffer given at submit, or the swap slice (GAIO_RESULT_SWAP) */
  size_t size;    /* bytes read or written, also on error (partial progress) */
  int fd;         /* the fd the request was submitted on; GAIO_NO_FD for a timer or a post */
  int op;         /* enum gaio_op */
  int error;      /* 0, a negative errno, or GAIO_EOF */
  unsigned flags; /* GAIO_RESULT_* */
  int conn_fd;    /* GAIO_OP_ACCEPT with error 0: the accepted connection, else -1 (see
                     gaio_accept() for who owns it) */
  unsigned addr_len; /* GAIO_OP_ACCEPT, GAIO_OP_RECVFROM: bytes of the peer address stored in
                        the sockaddr_storage given at submit; 0 if none was given */
} gaio_result;

/* Limits. Every limit is named here: GAIO_DEFAULT_* are the defaults of the options below,
 * GAIO_MAX_* are fixed. */
#define GAIO_DEFAULT_SWAP_SIZE (64u * 1024u)          /* swap buffer for NULL-buffer reads */
#define GAIO_DEFAULT_READ_MAX (16u * 1024u)           /* bytes per read(2) into the swap buffer */
#define GAIO_DEFAULT_MAX_EVENTS 512u                  /* readiness events taken per poll */
#define GAIO_DEFAULT_MAX_REQUESTS (1u << 20)          /* accepted requests not yet delivered */
#define GAIO_DEFAULT_MAX_WRITE_PENDING (64u << 20)    /* queued write bytes per fd */
#define GAIO_MAX_WRITE_IOV 64u                        /* queued writes coalesced per writev */
#define GAIO_DEFAULT_RING_ENTRIES 1024u               /* io_uring submission queue entries */
/* The largest swap_size, max_events and ring_entries: a larger option gives -EINVAL from
 * gaio_watcher_create(). GAIO_MAX_RING_ENTRIES is the kernel's own bound (IORING_MAX_ENTRIES). */
#define GAIO_MAX_SWAP_SIZE (1u << 30)
#define GAIO_MAX_POLL_EVENTS (1u << 20)
#define GAIO_MAX_RING_ENTRIES (1u << 15)
/* io_uring: slices of the swap buffer in the provided-buffer ring, the kernel's bound on a
 * buffer ring. The ring holds a power of two of slices, so on io_uring up to half of the swap
 * buffer (and all beyond GAIO_MAX_SWAP_SLICES * read_max) serves no read. */
#define GAIO_MAX_SWAP_SLICES 32768u
/* Bytes one read(2), write(2) or sendmsg(2) moves at most. Larger requests are served in
 * several system calls (io_uring's SQE length field is 32 bits, and the kernel moves less than
 * 2 GiB per call anyway): a read completes on its first bytes as always, a read-full or a write
 * goes on with the rest. A write on a datagram or seqpacket socket is one message and is never
 * split: beyond the socket's limit it fails as the kernel says (-EMSGSIZE). */
#define GAIO_MAX_IO_CHUNK (1u << 30)
/* The longest single wait in the kernel, in ms. A longer wait (timeout_ms, or a deadline further
 * away) is made of several; a wait with no end (timeout_ms -1, no deadline) is not cut. */
#define GAIO_MAX_POLL_MS 1000000
/* Entries of the fd table when the hard RLIMIT_NOFILE is unlimited or larger: an fd at or
 * beyond it gives -ERANGE from gaio_attach(). */
#define GAIO_MAX_FDS (1u << 22)

/* Watcher options. Zero in any field means its default, so `gaio_options o = {0};` is valid. */
typedef struct gaio_options {
  /* Size of the swap buffer that serves reads submitted with a NULL buffer. Each such read takes
   * a slice of read_max bytes (on epoll it gives back what it did not fill, rounded up to 64
   * bytes; on io_uring the kernel picks whole slices from a buffer ring); when the buffer has no
   * room for another slice, the read waits for the next gaio_wait() call, when the buffer is
   * recycled. Reads are never silently shrunk. At most GAIO_MAX_SWAP_SIZE. */
  size_t swap_size;
  /* Bytes per NULL-buffer read (clamped to swap_size). */
  size_t read_max;
  /* Readiness events taken from the kernel per poll (at most GAIO_MAX_POLL_EVENTS). */
  unsigned max_events;
  /* Accepted requests (I/O, timers, posts) that have not been delivered yet (this also bounds
   * the queued results). A submit beyond it returns -ENOBUFS synchronously. Attach and free do
   * not count. */
  unsigned max_requests;
  /* Bytes of writes queued on one fd and not yet written. A write that would exceed it completes
   * with -ENOBUFS (and writes nothing). */
  size_t max_write_pending;
  /* Backend by name: "uring" (io_uring) or "epoll" (edge-triggered epoll) on Linux. NULL or ""
   * picks the best one that starts: io_uring first, epoll when io_uring cannot start (an old
   * kernel, seccomp, the io_uring_disabled sysctl). The environment variable GAIO_BACKEND
   * overrides that automatic choice (not an explicit name). An unknown name gives GAIO_EBACKEND from
   * gaio_watcher_create(); a named backend that cannot start gives its setup error (-ENOSYS,
   * -EPERM, ...), never a silent switch to another backend. */
  const char *backend;
  /* io_uring: submission queue entries (the completion queue has twice as many), at most
   * GAIO_MAX_RING_ENTRIES. Requests beyond it are submitted in several steps of one wait;
   * nothing is refused. */
  unsigned ring_entries;
  /* Nonzero: the loop runs on one thread for the watcher's whole life. The first thread that
   * calls gaio_wait(), gaio_cancel(), gaio_timer_cancel() or gaio_detach() is the only one that
   * may call them from then on (the others get -EEXIST and nothing happens); and
   * gaio_watcher_destroy() runs on that thread too, or on any thread once a gaio_wait() there
   * has returned -ESHUTDOWN (after gaio_watcher_close()). On io_uring the kernel then keeps
   * completions for that thread until it waits (IORING_SETUP_SINGLE_ISSUER |
   * IORING_SETUP_DEFER_TASKRUN, Linux 6.1): its own blocking calls are never interrupted by them
   * (see BACKENDS). The thread rule holds on every backend; the rest is io_uring's on 6.1 or
   * later, which gaio_one_thread() tells. Submit calls stay safe from any thread. */
  int one_thread;
} gaio_options;

/* Per-watcher counters. `submitted` counts accepted submits and `completed` counts delivered
 * results, so once everything is delivered, submitted == completed. */
typedef struct gaio_stats {
  uint64_t submitted;      /* submit calls that returned 0 */
  uint64_t completed;      /* results delivered by gaio_wait() */
  uint64_t bytes_read;     /* bytes read from sockets */
  uint64_t bytes_written;  /* bytes written to sockets */
  uint64_t in_flight;      /* accepted, not yet delivered (submitted - completed) */
  uint64_t queued_results; /* completions waiting to be delivered */
  uint64_t fds;            /* fds currently owned by the watcher */
  /* Loop metrics, as libuv's uv_metrics_info: */
  uint64_t polls;          /* waits in the kernel (epoll_wait, io_uring_enter), blocking or not */
  uint64_t idle_ns;        /* time spent in the waits that could block (timeout not 0) */
  uint64_t events;         /* readiness events (epoll) or completion queue entries (io_uring)
                              those waits returned */
  uint64_t reads;          /* socket reads that moved bytes (bytes_read is their sum) */
  uint64_t writes;         /* socket writes that moved bytes (bytes_written is their sum) */
} gaio_stats;

/* Monotonic clock in nanoseconds, the time base of every deadline. Safe from any thread. */
uint64_t gaio_now(void);

/* Create a watcher. opts may be NULL (all defaults). On success stores it in *out and returns 0;
 * otherwise returns a negative errno (-EINVAL for an option out of range, -ENOMEM, or the
 * backend's setup error) and stores NULL. The caller owns the watcher and releases it with
 * gaio_watcher_destroy(). */
int gaio_watcher_create(gaio_watcher **out, const gaio_options *opts);

/* Close the watcher. Idempotent; safe from any thread, including while another thread is blocked
 * in gaio_wait() (it is woken). Afterwards every submit call, gaio_attach() and gaio_free()
 * return -ESHUTDOWN. Every request accepted before the close still gets its one result, with
 * -ESHUTDOWN unless it had already completed; gaio_wait() hands those out and then returns
 * -ESHUTDOWN. Every fd the watcher owns is closed by the loop: in the next gaio_wait() (or the
 * one in progress), or in gaio_watcher_destroy(). Memory is released by gaio_watcher_destroy(). */
void gaio_watcher_close(gaio_watcher *w);

/* Close (if not done yet) and free the watcher and all its memory. Results not yet delivered are
 * dropped. Call it exactly once, when no other thread uses the watcher any more. NULL is a no-op. */
void gaio_watcher_destroy(gaio_watcher *w);

/* Pass ownership of fd to the watcher (no dup(): the same fd is used and later closed by the
 * watcher). The fd must be pollable (a socket, a pipe, ...). Sets O_NONBLOCK. Writes to stream
 * fds are coalesced; on datagram and seqpacket sockets each write is one message. Safe from any
 * thread. Returns 0, or -EBADF (not an open fd), -EEXIST (already attached, or freed but not yet
 * closed), -EPERM (not pollable, e.g. a regular file), -ERANGE (fd beyond the table, sized from
 * the hard RLIMIT_NOFILE at create), -ENOMEM, -ESHUTDOWN. On error the caller keeps the fd. */
int gaio_attach(gaio_watcher *w, int fd);

/* Free an attached fd: every pending request on it completes with -ECANCELED, then the watcher
 * closes it. Produces no result of its own. From the call on, submits on fd return -EBADF. The
 * release itself happens, in submission order, in the next gaio_wait(); once that has returned,
 * the fd number may be reused. Safe from any thread. Returns 0, -EBADF (fd not attached, or
 * already being freed), -ENOMEM or -ESHUTDOWN. */
int gaio_free(gaio_watcher *w, int fd);

/* Queue a read of up to len bytes into buf; it completes on the first bytes received (size > 0),
 * at end of stream (GAIO_EOF, size 0), or on error. buf NULL means the watcher's swap buffer (len
 * is then ignored and the read takes up to read_max bytes; the result has GAIO_RESULT_SWAP).
 * A user buffer must stay valid and unmodified until its result is delivered. Safe from any
 * thread. Returns 0 (exactly one result will follow) or a negative errno (no result will follow):
 * -EINVAL (buf non-NULL with len 0), -EBADF (fd not attached, or being freed), -ENOBUFS
 * (max_requests reached), -ENOMEM, -ESHUTDOWN. */
int gaio_read(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx);

/* gaio_read() with an absolute deadline (gaio_now() time base; 0 = none). On expiry the result has
 * error -ETIMEDOUT and size 0. */
int gaio_read_deadline(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx,
                       uint64_t deadline);

/* Queue a read that completes only when all len bytes of buf are filled, or on EOF, error or
 * deadline; result.size then reports the bytes received so far. buf must be non-NULL and len > 0
 * (else -EINVAL). Same ownership, threads and return values as gaio_read(). */
int gaio_read_full(gaio_watcher *w, int fd, void *buf, size_t len, void *ctx, uint64_t deadline);

/* Queue a write of all len bytes of buf; it completes only when every byte is written, or on
 * error. Writes queued on one fd go out in order, coalesced into one writev where possible; on
 * sockets they use MSG_NOSIGNAL, so a closed peer gives -EPIPE, never SIGPIPE. buf must stay valid
 * and unmodified until the result is delivered. buf must be non-NULL and len > 0 (else -EINVAL).
 * Safe from any thread. Returns 0 (exactly one result will follow) or a negative errno (no result
 * will follow): -EINVAL, -EBADF, -ENOBUFS, -ENOMEM, -ESHUTDOWN. */
int gaio_write(gaio_watcher *w, int fd, const void *buf, size_t len, void *ctx);

/* gaio_write() with an absolute deadline (0 = none). On expiry the result has -ETIMEDOUT and size
 * = the bytes already written (the stream then holds a partial message). */
int gaio_write_deadline(gaio_watcher *w, int fd, const void *buf, size_t len, void *ctx,
                        uint64_t deadline);

/* Queue an accept of one connection on fd, a listening socket attached to w. The result has
 * conn_fd: the new connection, with O_NONBLOCK and O_CLOEXEC set, owned by the caller, who
 * attaches it to this or any other watcher (or closes it); it is not attached. If peer is not
 * NULL, the peer address is stored there and addr_len says how many bytes; peer must stay valid
 * until the result is delivered. Several accepts may be queued on one listener; they complete
 * in FIFO order. Errors of one accept (-EMFILE, -ECONNABORTED, ...) complete that request only;
 * the listener stays usable. With io_uring, while two or more accepts with peer NULL are queued,
 * one multishot accept serves them, and the kernel may take a few more connections than were
 * asked for (a burst arriving while the last queued accept is served): they wait inside the
 * watcher for the next gaio_accept() on that listener, and gaio_free() or gaio_detach() of the
 * listener closes them, as closing a listener drops its backlog. Accepts that ask for the peer
 * address are never served that way. Safe from any thread. Returns 0 (exactly one result will follow)
 * or -EBADF, -ENOBUFS, -ENOMEM, -ESHUTDOWN (no result). */
int gaio_accept(gaio_watcher *w, int fd, struct sockaddr_storage *peer, void *ctx);

/* What an accept result's error means for the listener (the one policy of gaio-c's servers and
 * examples). GAIO_ACCEPT_NEXT: 0, or that one connection failed before it was accepted
 * (-ECONNABORTED, -EPERM, -EPROTO, network errors, ...: accept(2) on Linux returns errors
 * pending on the new connection): accept again at once. GAIO_ACCEPT_BACKOFF: out of fds or
 * memory (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM): accepting at once would spin, so pause the
 * listener (100 ms is a good figure) and then accept again. GAIO_ACCEPT_GONE: the listener was
 * freed or the watcher closed (-ECANCELED, -ESHUTDOWN): stop. GAIO_ACCEPT_BROKEN: anything else
 * (-EINVAL after a shutdown(2) of the listener, -EBADF, ...): the listener is unusable; report
 * it and free it instead of retrying forever. Pure function, any thread. */
enum gaio_accept_verdict {
  GAIO_ACCEPT_NEXT = 0,
  GAIO_ACCEPT_BACKOFF = 1,
  GAIO_ACCEPT_GONE = 2,
  GAIO_ACCEPT_BROKEN = 3
};
int gaio_accept_verdict(int error);

/* Start a non-blocking connect of fd (a socket attached to w, not yet connected) to addr, and
 * queue a request that completes when the connection is established (error 0) or has failed
 * (-ECONNREFUSED, -ENETUNREACH, ... also when connect(2) fails at once), or on the deadline
 * (-ETIMEDOUT; 0 = none; the socket is then unusable: free it). connect(2) is called in the
 * calling thread, so addr is only read during the call. Queue reads and writes on fd after the
 * result. Safe from any thread. Returns 0 (exactly one result will follow) or -EINVAL (addr
 * NULL or addr_len 0), -EBADF, -ENOBUFS, -ENOMEM, -ESHUTDOWN (no result). */
int gaio_connect(gaio_watcher *w, int fd, const struct sockaddr *addr, socklen_t addr_len,
                 void *ctx, uint64_t deadline);

/* Queue a receive of one datagram (recvfrom(2)) into buf, up to len bytes; buf NULL means the
 * swap buffer, as for gaio_read() (len ignored, up to read_max bytes). A longer datagram is
 * truncated and flagged GAIO_RESULT_TRUNC. If from is not NULL the sender's address is stored
 * there (addr_len bytes); buf and from must stay valid until the result is delivered. A
 * zero-length datagram completes with size 0 and error 0. Deadline 0 = none, else -ETIMEDOUT.
 * Safe from any thread. Returns 0 (exactly one result will follow) or -EINVAL (buf non-NULL
 * with len 0), -EBADF, -ENOBUFS, -ENOMEM, -ESHUTDOWN (no result). */
int gaio_recvfrom(gaio_watcher *w, int fd, void *buf, size_t len,
                  struct sockaddr_storage *from, void *ctx, uint64_t deadline);

/* Queue a send of buf (len bytes) as one datagram to `to` (sendto(2); `to` NULL sends to the
 * connected peer). buf and to must stay valid until the result is delivered. Queued sends go
 * out in FIFO order, one message each. Deadline 0 = none, else -ETIMEDOUT. Safe from any
 * thread. Returns 0 (exactly one result will follow) or -EINVAL (buf NULL or len 0), -EBADF,
 * -ENOBUFS, -ENOMEM, -ESHUTDOWN (no result). */
int gaio_sendto(gaio_watcher *w, int fd, const void *buf, size_t len, const struct sockaddr *to,
                socklen_t to_len, void *ctx, uint64_t deadline);

/* Queue a half-close of fd's write side: once every write queued before it on fd has completed,
 * shutdown(fd, SHUT_WR), so the peer reads every byte written and then end of stream. It travels
 * in fd's write queue (FIFO with writes, sends and connects) and runs after the writes before it
 * whatever their outcome: a write that failed or was cancelled does not hold it back. The result
 * has size 0 and error 0, the error of shutdown(2) (-ENOTCONN, -ENOTSOCK for a pipe, ...), or,
 * if it had not run yet, -ECANCELED (gaio_free(), gaio_cancel()) or -ESHUTDOWN (watcher closed).
 * Reads on fd go on: a server half-closes, then reads until GAIO_EOF before it frees fd, so that
 * closing does not reset the connection. Writes queued after it fail with the socket's error
 * (-EPIPE), never SIGPIPE. Safe from any thread. Returns 0 (exactly one result will follow) or
 * -EBADF (fd not attached, or being freed), -ENOBUFS (max_requests reached), -ENOMEM,
 * -ESHUTDOWN (no result). */
int gaio_shutdown(gaio_watcher *w, int fd, void *ctx);

/* Queue a timer that completes at deadline (absolute, gaio_now() time base). Its result has op
 * GAIO_OP_TIMER, fd GAIO_NO_FD, size 0 and error 0 when it fires (reaching the deadline is what
 * a timer is for, so it is not -ETIMEDOUT), -ECANCELED after gaio_timer_cancel(), or -ESHUTDOWN
 * if the watcher is closed first. It never fires early: gaio_now() >= deadline when
 * gaio_wait() returns it; it may fire late by the poll's resolution (whole milliseconds, rounded
 * up) and by scheduling. A deadline already past fires in the next gaio_wait(), without blocking.
 * Timers share the deadline heap of the I/O deadlines: O(log n), FIFO among equal deadlines, no
 * allocation beyond the request. A gaio_wait(-1) wakes for it, also when another thread submits
 * it while the loop sleeps. Counts against max_requests until delivered. Safe from any thread.
 * Returns 0 (exactly one result will follow) or -EINVAL (deadline 0, which means "none" for
 * every other request), -ENOBUFS, -ENOMEM, -ESHUTDOWN (no result). */
int gaio_timer(gaio_watcher *w, void *ctx, uint64_t deadline);

/* Queue a user completion: ctx comes back in a result with op GAIO_OP_POST, fd GAIO_NO_FD, size
 * 0 and error 0, delivered by the gaio_wait() in progress (a sleeping one is woken) or the next.
 * This hands work to the loop thread from any thread, as libuv's uv_async_send() does, but posts
 * are never coalesced: each accepted post has its own result, and the posts of one thread come
 * back in the order they were made. A post completes when the loop takes it in, so it cannot be
 * cancelled; one still queued when gaio_watcher_close() is called completes with -ESHUTDOWN,
 * like every request accepted before the close (one taken in already keeps error 0). Counts
 * against max_requests until delivered. Safe from any thread. Returns 0 (exactly one result will
 * follow) or -ENOBUFS (max_requests reached), -ENOMEM, -ESHUTDOWN (no result). */
int gaio_post(gaio_watcher *w, void *ctx);

/* Cancel the oldest pending request on fd whose context pointer is ctx. Returns 0 when it was
 * still pending: its one result then carries -ECANCELED (with size = the bytes already
 * transferred). Returns -ENOENT when no request on fd with that ctx is pending: it has
 * completed already (its own result is delivered or queued, and nothing more will come), or
 * there never was one. The answer is exact on every backend: with io_uring the call waits for
 * the kernel's verdict on a request it holds. Loop-thread only: call it from the thread that
 * calls gaio_wait() (between calls), or when no thread is in gaio_wait() (else -EBUSY). Also
 * -EBADF (fd not attached), -ENOMEM, -ESHUTDOWN. Timers have gaio_timer_cancel(). */
int gaio_cancel(gaio_watcher *w, int fd, void *ctx);

/* Cancel the oldest pending timer (by submission) whose context pointer is ctx. Returns 0 when
 * it was still pending: its one result then carries -ECANCELED. Returns -ENOENT when no timer
 * with that ctx is pending: it has fired already (its result is delivered or queued, and nothing
 * more will come), or there never was one. A timer is pending until a gaio_wait() sees its
 * deadline pass. The answer is exact and immediate (no kernel holds a timer). Requests on fds
 * and posts are never touched. A call of its own rather than gaio_cancel(w, -1, ctx): -1 is the
 * usual failed fd, and gaio_cancel() must keep answering -EBADF for it. Loop-thread only, like
 * gaio_cancel() (else -EBUSY). Also -ESHUTDOWN. */
int gaio_timer_cancel(gaio_watcher *w, void *ctx);

/* Give fd back to the caller without closing it: every pending request on it completes with
 * -ECANCELED (results delivered by the next gaio_wait(); a request that had already finished in
 * the kernel keeps its own result), the watcher stops watching it, and O_NONBLOCK is restored
 * to what it was at gaio_attach(). (A listener detached on io_uring loses the connections a
 * multishot accept took beyond the accepts queued: see gaio_accept().) When it returns 0 the fd is the caller's, to read, write,
 * close or attach again. Loop-thread only, like gaio_cancel() (else -EBUSY). Also -EBADF (not
 * attached, or being freed), -ESHUTDOWN. */
int gaio_detach(gaio_watcher *w, int fd);

/* Pin the calling thread (typically the one that will call gaio_wait()) to one CPU. cpu is
 * checked against the set this thread may run on (sched_getaffinity). Returns 0, -EINVAL (cpu
 * negative, beyond CPU_SETSIZE or not in the allowed set), or the error of sched_setaffinity(2).
 * Affects only the calling thread. */
int gaio_pin_thread(int cpu);

/* Wait up to timeout_ms (-1: forever, 0: don't block) for at least one result, then return every
 * result that is ready, up to max, in out[0..n). Results left over stay queued for the next call.
 * Calling it invalidates the swap bytes of the previous call's results. Single consumer: one
 * thread at a time. Returns n >= 0 (0 on timeout), -EINVAL (out NULL or max <= 0), -EBUSY
 * (another thread is in gaio_wait(), gaio_cancel() or gaio_detach()), -ESHUTDOWN (closed and
 * every result delivered), or an error of the kernel interface (the negative errno of
 * epoll_wait(2) or io_uring_enter(2): -ENOMEM, -EBADR when io_uring dropped completions, ...).
 * Such an error never hides results, nor is it hidden by them: when results are ready as it
 * happens, the call returns them and holds the error; the following calls return the results
 * still queued (without waiting), then the error, once. One kind lasts: when io_uring fails
 * while an fd is being released and cannot take back what the kernel holds for it, that fd's
 * requests complete as usual but the kernel may still use their buffers, and every later call
 * returns the error. Keep those buffers and destroy the watcher. */
int gaio_wait(gaio_watcher *w, gaio_result *out, int max, int timeout_ms);

/* Read the counters. Safe from any thread; values read while the watcher works are a snapshot of
 * each counter, not of all of them at one instant. */
void gaio_watcher_stats(gaio_watcher *w, gaio_stats *out);

/* The name of the backend in use: "uring" or "epoll". The string is static. */
const char *gaio_backend_name(const gaio_watcher *w);

/* 1 if the watcher was made with gaio_options.one_thread and its backend holds the kernel side
 * to that thread too (io_uring on Linux 6.1 or later), else 0. Any thread. */
int gaio_one_thread(const gaio_watcher *w);

/* A message for an error code of this API: GAIO_EOF or a negative errno. Static string. */
const char *gaio_strerror(int error);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_GAIO_H */
