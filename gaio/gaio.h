/* gaio-c: a proactor for sockets.
 *
 * You submit whole operations ("read into this buffer", "write all of these bytes") on sockets
 * the watcher owns, each with a context pointer. Then you collect the completions in batches with
 * gaio_wait(). You never see readiness events. The thread that calls gaio_wait() runs the event
 * loop itself, so there is no internal thread and no hand-off between threads on the hot path.
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
 *     independently (full duplex).
 *
 * OWNERSHIP OF SOCKETS
 *   gaio_attach() passes ownership of an fd to the watcher, without dup(): one fd per connection.
 *   From then on the watcher sets and keeps O_NONBLOCK, and gaio_free() or gaio_watcher_close()
 *   closes it. Until it is freed, do not read, write or close the fd yourself.
 *
 * THREADS
 *   Submit calls, gaio_attach(), gaio_free(), gaio_watcher_close() and gaio_watcher_stats() are
 *   safe from any thread. gaio_wait() is single-consumer: one thread at a time (a second
 *   concurrent caller gets -EBUSY). Watchers are independent: there is no file-scope state.
 *
 * All times are CLOCK_MONOTONIC nanoseconds; see gaio_now(). A deadline of 0 means "none". */
#ifndef GAIO_GAIO_H
#define GAIO_GAIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gaio_watcher gaio_watcher;

/* Library error code, outside the errno range (as libuv's UV_EOF): the peer closed its side. */
#define GAIO_EOF (-4095)

/* Operation codes, reported in gaio_result.op. */
enum gaio_op {
  GAIO_OP_READ = 1,      /* gaio_read / gaio_read_deadline */
  GAIO_OP_READ_FULL = 2, /* gaio_read_full */
  GAIO_OP_WRITE = 3      /* gaio_write / gaio_write_deadline */
};

/* gaio_result.flags: the bytes are in the watcher's swap buffer (the read was submitted with a
 * NULL buffer and got size > 0 bytes). They stay valid until the next call of gaio_wait() on this
 * watcher. A NULL-buffer read that ends without data (EOF, error, deadline) has buf NULL and no
 * flag. */
#define GAIO_RESULT_SWAP 0x1u

/* One completion. A plain struct, filled by gaio_wait(); the caller owns the array. */
typedef struct gaio_result {
  void *ctx;      /* the context pointer given at submit, unchanged */
  void *buf;      /* the buffer given at submit, or the swap slice (GAIO_RESULT_SWAP) */
  size_t size;    /* bytes read or written, also on error (partial progress) */
  int fd;         /* the fd the request was submitted on */
  int op;         /* enum gaio_op */
  int error;      /* 0, a negative errno, or GAIO_EOF */
  unsigned flags; /* GAIO_RESULT_* */
} gaio_result;

/* Limits and their defaults. Every limit is named here; every one is an option below. */
#define GAIO_DEFAULT_SWAP_SIZE (64u * 1024u)          /* swap buffer for NULL-buffer reads */
#define GAIO_DEFAULT_READ_MAX (16u * 1024u)           /* bytes per read(2) into the swap buffer */
#define GAIO_DEFAULT_MAX_EVENTS 512u                  /* readiness events taken per poll */
#define GAIO_DEFAULT_MAX_REQUESTS (1u << 20)          /* accepted requests not yet delivered */
#define GAIO_DEFAULT_MAX_WRITE_PENDING (64u << 20)    /* queued write bytes per fd */
#define GAIO_MAX_WRITE_IOV 64u                        /* queued writes coalesced per writev */

/* Watcher options. Zero in any field means its default, so `gaio_options o = {0};` is valid. */
typedef struct gaio_options {
  /* Size of the swap buffer that serves reads submitted with a NULL buffer. Each such read takes
   * a slice of read_max bytes; when the buffer has no room for another slice, the read waits for
   * the next gaio_wait() call, when the buffer is recycled. Reads are never silently shrunk. */
  size_t swap_size;
  /* Bytes per NULL-buffer read (clamped to swap_size). */
  size_t read_max;
  /* Readiness events taken from the kernel per poll. */
  unsigned max_events;
  /* Accepted I/O requests that have not been delivered yet (this also bounds the queued
   * results). A submit beyond it returns -ENOBUFS synchronously. Attach and free do not count. */
  unsigned max_requests;
  /* Bytes of writes queued on one fd and not yet written. A write that would exceed it completes
   * with -ENOBUFS (and writes nothing). */
  size_t max_write_pending;
  /* Backend by name: NULL or "" picks the best one available; the environment variable
   * GAIO_BACKEND overrides that automatic choice (not an explicit name). "epoll" is the only one
   * in this build. An unknown name gives -EINVAL from gaio_watcher_create(); a known backend that
   * cannot start gives its setup error, never a silent switch to another backend. */
  const char *backend;
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

/* Wait up to timeout_ms (-1: forever, 0: don't block) for at least one result, then return every
 * result that is ready, up to max, in out[0..n). Results left over stay queued for the next call.
 * Calling it invalidates the swap bytes of the previous call's results. Single consumer: one
 * thread at a time. Returns n >= 0 (0 on timeout), -EINVAL (out NULL or max <= 0), -EBUSY
 * (another thread is in gaio_wait()), or -ESHUTDOWN (closed and every result delivered). */
int gaio_wait(gaio_watcher *w, gaio_result *out, int max, int timeout_ms);

/* Read the counters. Safe from any thread; values read while the watcher works are a snapshot of
 * each counter, not of all of them at one instant. */
void gaio_watcher_stats(gaio_watcher *w, gaio_stats *out);

/* The name of the backend in use ("epoll"). The string is static. */
const char *gaio_backend_name(const gaio_watcher *w);

/* A message for an error code of this API: GAIO_EOF or a negative errno. Static string. */
const char *gaio_strerror(int error);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_GAIO_H */
