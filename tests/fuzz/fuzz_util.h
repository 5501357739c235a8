/* Helpers of the fuzz targets that drive //rpc through real sockets (server_fuzz.c,
 * client_fuzz.c): a check that aborts with a message (libFuzzer reports the abort as a crash
 * and keeps the input), a monotonic clock, a private directory for unix sockets, a growable byte
 * buffer and socket I/O bounded in time. Test-only; not thread-safe unless stated. */
#ifndef GAIO_TESTS_FUZZ_FUZZ_UTIL_H
#define GAIO_TESTS_FUZZ_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* An invariant of the target: when cond is false, print where, the condition and the printf
 * message, and abort. Any thread. */
#define FUZZ_CHECK(cond, ...)                                   \
  do {                                                          \
    if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t fuzz_now_ms(void);

/* Sleep for us microseconds. */
void fuzz_sleep_us(long us);

/* Create a fresh directory /tmp/gaio_fuzz_XXXXXX into dir (at least 32 bytes): short enough for
 * sun_path, which TEST_TMPDIR is not, and private to this process. Returns 0 or -errno. */
int fuzz_tmpdir(char *dir, size_t len);

/* Bytes received or to send. Zero-initialise; fuzz_buf_free() when done. */
typedef struct fuzz_buf {
  uint8_t *p;
  size_t len, cap;
} fuzz_buf;

/* Append n bytes (p may be NULL when n is 0). Returns 0 or -ENOMEM. */
int fuzz_buf_add(fuzz_buf *b, const void *p, size_t n);
/* Drop the first n bytes. */
void fuzz_buf_drop(fuzz_buf *b, size_t n);
void fuzz_buf_free(fuzz_buf *b);

/* A unix stream socket listening at path (backlog 64), non-blocking, CLOEXEC. Returns the fd
 * or -errno. */
int fuzz_unix_listen(const char *path);

/* A unix stream socket connected to path, non-blocking, CLOEXEC. Returns the fd or -errno. */
int fuzz_unix_connect(const char *path);

/* Wait until fd is readable (or has an error or EOF), up to deadline (fuzz_now_ms() time).
 * Returns 1 when readable, 0 on timeout. */
int fuzz_wait_readable(int fd, int64_t deadline_ms);

/* Send the n bytes of p on the non-blocking socket fd, and meanwhile receive into in whatever
 * the peer sends (a peer that stops reading while its replies are not read must not deadlock
 * us). Returns 0 when all is sent, -EPIPE or -ECONNRESET (the peer closed; the rest is not
 * sent), another -errno, or -ETIMEDOUT at deadline_ms. in may be NULL: nothing is read. */
int fuzz_send_all(int fd, const uint8_t *p, size_t n, fuzz_buf *in, int64_t deadline_ms);

/* Receive into in until the peer's end of stream (returns 1), a reset or other error (-errno),
 * deadline_ms (-ETIMEDOUT), or until enough(in, arg) says so (returns 0; enough may be NULL). */
int fuzz_recv(int fd, fuzz_buf *in, int64_t deadline_ms, int (*enough)(const fuzz_buf *, void *),
              void *arg);

/* Receive what is already there without waiting, into in (NULL: discard). Returns 1 at end of
 * stream, 0 otherwise (nothing more for now, or an error). */
int fuzz_recv_now(int fd, fuzz_buf *in);

#endif /* GAIO_TESTS_FUZZ_FUZZ_UTIL_H */
