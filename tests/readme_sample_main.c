/* Runs the usage example of README.md (extracted by the readme_sample genrule) against 20
 * clients on every backend that starts here, checking each echoed byte, so that the code users
 * copy first keeps compiling and working. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gaio/gaio.h"

void echo_loop(gaio_watcher *w, int lfd); /* README.md */

struct run {
  gaio_watcher *w;
  int lfd;
};

static void *loop(void *arg) {
  struct run *r = arg;
  echo_loop(r->w, r->lfd);
  return NULL;
}

/* One client: send a line, read it back whole. Returns 1 when the bytes match. */
static int echo_once(const struct sockaddr_in *a, int k) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof *a) != 0) return 0;
  char msg[64], got[64];
  int len = snprintf(msg, sizeof msg, "hello %d from the README", k);
  size_t n = 0;
  if (write(c, msg, (size_t)len) != len) len = -1;
  while (len > 0 && n < (size_t)len) {
    ssize_t r = read(c, got + n, sizeof got - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(c);
  return len > 0 && n == (size_t)len && memcmp(got, msg, n) == 0;
}

static int run_backend(const char *name) {
  gaio_options o = {0};
  o.backend = name;
  struct run r;
  int rc = gaio_watcher_create(&r.w, &o);
  if (rc == -ENOSYS || rc == -EPERM) {
    printf("%s: cannot start here (%s), skipped\n", name, gaio_strerror(rc));
    return 0;
  }
  if (rc != 0) return 1;
  r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (r.lfd < 0 || bind(r.lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(r.lfd, 64) != 0 ||
      getsockname(r.lfd, (struct sockaddr *)&a, &l) != 0)
    return 1;
  pthread_t th;
  if (pthread_create(&th, NULL, loop, &r) != 0) return 1;
  int ok = 0;
  for (int k = 0; k < 20; k++) ok += echo_once(&a, k);
  gaio_watcher_close(r.w);
  pthread_join(th, NULL);
  gaio_watcher_destroy(r.w);
  printf("%s: %d of 20 clients echoed\n", name, ok);
  return ok == 20 ? 0 : 1;
}

int main(void) { return run_backend("uring") | run_backend("epoll"); }
