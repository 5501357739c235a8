/* Helpers of the socket-driven fuzz targets (see fuzz_util.h). */
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\nfuzz: ", file, line, cond);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

int64_t fuzz_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fuzz_sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int fuzz_tmpdir(char *dir, size_t len) {
  static const char tmpl[] = "/tmp/gaio_fuzz_XXXXXX";
  if (len < sizeof tmpl) return -EINVAL;
  memcpy(dir, tmpl, sizeof tmpl);
  return mkdtemp(dir) ? 0 : -errno;
}

int fuzz_buf_add(fuzz_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) cap *= 2;
    uint8_t *q = realloc(b->p, cap);
    if (!q) return -ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

void fuzz_buf_drop(fuzz_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

void fuzz_buf_free(fuzz_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static int unix_addr(const char *path, struct sockaddr_un *a) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path) return -ENAMETOOLONG;
  strcpy(a->sun_path, path);
  return 0;
}

int fuzz_unix_listen(const char *path) {
  struct sockaddr_un a;
  int rc = unix_addr(path, &a);
  if (rc < 0) return rc;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  return fd;
}

int fuzz_unix_connect(const char *path) {
  struct sockaddr_un a;
  int rc = unix_addr(path, &a);
  if (rc < 0) return rc;
  /* A blocking unix connect completes at once (it only waits while the listener's backlog is
   * full), so connect blocking, then switch to non-blocking. */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    rc = -errno;
    close(fd);
    return rc;
  }
  return fd;
}

int fuzz_wait_readable(int fd, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - fuzz_now_ms();
    if (left < 0) left = 0;
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, (int)left);
    if (n > 0) return 1;
    if (n == 0 || errno != EINTR) return 0;
  }
}

/* One non-blocking receive into in (NULL: discarded). Returns bytes, 0 at end of stream, or
 * -errno (-EAGAIN: nothing there). */
static long recv_some(int fd, fuzz_buf *in) {
  uint8_t tmp[16384];
  ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
  if (r < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  if (r > 0 && in && fuzz_buf_add(in, tmp, (size_t)r) < 0) return -ENOMEM;
  return (long)r;
}

int fuzz_send_all(int fd, const uint8_t *p, size_t n, fuzz_buf *in, int64_t deadline_ms) {
  size_t off = 0;
  int peer_done = 0; /* end of stream seen: nothing more to read */
  while (off < n) {
    ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    /* The socket buffer is full: wait for room, reading what the peer sends meanwhile. */
    int64_t left = deadline_ms - fuzz_now_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd pf = {fd, (short)(POLLOUT | (in && !peer_done ? POLLIN : 0)), 0};
    if (poll(&pf, 1, (int)left) < 0 && errno != EINTR) return -errno;
    if (in && !peer_done && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
      long r = recv_some(fd, in);
      if (r == 0) peer_done = 1;
      else if (r < 0 && r != -EAGAIN) return (int)r;
    }
  }
  return 0;
}

int fuzz_recv(int fd, fuzz_buf *in, int64_t deadline_ms, int (*enough)(const fuzz_buf *, void *),
              void *arg) {
  for (;;) {
    if (enough && enough(in, arg)) return 0;
    long r = recv_some(fd, in);
    if (r == 0) return 1;
    if (r > 0 || r == -EINTR) continue;
    if (r != -EAGAIN) return (int)r;
    if (!fuzz_wait_readable(fd, deadline_ms)) return -ETIMEDOUT;
  }
}

int fuzz_recv_now(int fd, fuzz_buf *in) {
  for (;;) {
    long r = recv_some(fd, in);
    if (r == 0) return 1;
    if (r < 0 && r != -EINTR) return 0;
  }
}
