/* Helpers shared by the gaio-c examples. See example_util.h. */
#include "examples/example_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "example";

void ex_init(const char *argv0) {
  if (argv0 == NULL || argv0[0] == '\0') return;
  const char *slash = strrchr(argv0, '/');
  prog = slash != NULL ? slash + 1 : argv0;
}

const char *ex_prog(void) { return prog; }

int ex_err(const char *what, int error) {
  fprintf(stderr, "%s: %s: %s\n", prog, what, gaio_strerror(error));
  return error;
}

int ex_parse_long(char flag, const char *text, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "%s: -%c: '%s' is not a number in [%ld, %ld]\n", prog, flag, text, min, max);
    return -EINVAL;
  }
  *out = v;
  return 0;
}

/* ---- Sockets ---- */

static int set_int_opt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

int ex_listen(const char *addr, int port, unsigned flags) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC,
      .ai_socktype = SOCK_STREAM,
      .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
  };
  struct addrinfo *ai;
  char service[16];
  snprintf(service, sizeof(service), "%d", port);
  int rc = getaddrinfo(addr, service, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "%s: address '%s': %s\n", prog, addr, gai_strerror(rc));
    return -EINVAL;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc = ex_err("socket", -errno);
    freeaddrinfo(ai);
    return rc;
  }
  /* SO_REUSEADDR: a restarted server can bind while old connections sit in TIME_WAIT. */
  if ((rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) != 0)
    ex_err("setsockopt(SO_REUSEADDR)", rc);
  else if ((flags & EX_REUSEPORT) && (rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) != 0)
    ex_err("setsockopt(SO_REUSEPORT)", rc);
  else if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    rc = ex_err("bind", -errno);
  else if (listen(fd, SOMAXCONN) != 0)
    rc = ex_err("listen", -errno);
  freeaddrinfo(ai);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return fd;
}

int ex_connect(const char *addr, int port) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC,
      .ai_socktype = SOCK_STREAM,
      .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
  };
  struct addrinfo *ai;
  char service[16];
  snprintf(service, sizeof(service), "%d", port);
  int rc = getaddrinfo(addr, service, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "%s: address '%s': %s\n", prog, addr, gai_strerror(rc));
    return -EINVAL;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    rc = ex_err("socket", -errno);
  else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    rc = ex_err("connect", -errno);
  else if ((rc = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1)) != 0)
    ex_err("setsockopt(TCP_NODELAY)", rc);
  freeaddrinfo(ai);
  if (rc != 0) {
    if (fd >= 0) close(fd);
    return rc;
  }
  return fd;
}

int ex_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -EAFNOSUPPORT;
}

int ex_print_listening(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return ex_err("getsockname", -errno);
  const void *a = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                           : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
  inet_ntop(ss.ss_family, a, host, sizeof(host));
  int port = ex_local_port(fd);
  if (port < 0) return ex_err("getsockname", port);
  printf(ss.ss_family == AF_INET6 ? "%s: listening on [%s]:%d\n" : "%s: listening on %s:%d\n",
         prog, host, port);
  fflush(stdout);
  return port;
}

void ex_print_stats(const char *label, gaio_watcher *w) {
  gaio_stats st;
  gaio_watcher_stats(w, &st);
  printf("%s: submitted %" PRIu64 ", completed %" PRIu64 ", read %" PRIu64 " B, written %" PRIu64
         " B, in flight %" PRIu64 ", fds %" PRIu64 "\n",
         label, st.submitted, st.completed, st.bytes_read, st.bytes_written, st.in_flight,
         st.fds);
}

/* ---- The acceptor thread ---- */

static void pause_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void *acceptor_main(void *arg) {
  ex_acceptor *a = arg;
  while (!atomic_load(&a->stopping)) {
    int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      int err = -errno;
      if (atomic_load(&a->stopping)) break;
      if (err == -EINTR || err == -ECONNABORTED) continue;
      ex_err("accept4", err);
      /* Out of fds (EMFILE, ENFILE) or memory: back off instead of spinning, then retry. */
      if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM) {
        pause_ms(100);
        continue;
      }
      break;
    }
    /* Echo and push traffic is small writes: don't let Nagle hold them back for an ACK. */
    int rc = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    if (rc != 0) ex_err("setsockopt(TCP_NODELAY)", rc);
    rc = a->fn(a->arg, fd);
    if (rc == -ESHUTDOWN) break;
    if (rc == 0) atomic_fetch_add(&a->accepted, 1);
  }
  return NULL;
}

int ex_acceptor_start(ex_acceptor *a, int lfd, ex_accept_fn fn, void *arg) {
  a->lfd = lfd;
  a->fn = fn;
  a->arg = arg;
  a->started = 0;
  atomic_init(&a->stopping, 0);
  atomic_init(&a->accepted, 0);
  int rc = pthread_create(&a->thread, NULL, acceptor_main, a);
  if (rc != 0) return ex_err("pthread_create(acceptor)", -rc);
  a->started = 1;
  return 0;
}

void ex_acceptor_stop(ex_acceptor *a) {
  atomic_store(&a->stopping, 1);
  /* On Linux, shutdown() of a listening socket wakes a thread blocked in accept() on it (EINVAL);
   * closing the fd would not, and would let the number be reused under the blocked thread. */
  shutdown(a->lfd, SHUT_RDWR);
}

void ex_acceptor_join(ex_acceptor *a) {
  ex_acceptor_stop(a);
  if (a->started) pthread_join(a->thread, NULL);
  a->started = 0;
  close(a->lfd);
  a->lfd = -1;
}

/* ---- Signals ---- */

static void *signals_main(void *arg) {
  ex_signals *s = arg;
  int sig = 0;
  if (sigwait(&s->set, &sig) != 0 || atomic_load(&s->done)) return NULL;
  fprintf(stderr, "%s: %s, stopping\n", prog, sig == SIGINT ? "SIGINT" : "SIGTERM");
  s->on_stop(s->arg);
  return NULL;
}

int ex_signals_block(ex_signals *s) {
  s->started = 0;
  atomic_init(&s->done, 0);
  sigemptyset(&s->set);
  sigaddset(&s->set, SIGINT);
  sigaddset(&s->set, SIGTERM);
  int rc = pthread_sigmask(SIG_BLOCK, &s->set, NULL);
  return rc == 0 ? 0 : ex_err("pthread_sigmask", -rc);
}

int ex_signals_start(ex_signals *s, void (*on_stop)(void *arg), void *arg) {
  s->on_stop = on_stop;
  s->arg = arg;
  int rc = pthread_create(&s->thread, NULL, signals_main, s);
  if (rc != 0) return ex_err("pthread_create(signals)", -rc);
  s->started = 1;
  return 0;
}

void ex_signals_join(ex_signals *s) {
  if (!s->started) return;
  s->started = 0;
  /* If no signal came, wake sigwait() with one that only the signal thread sees; `done` tells it
   * to return without calling on_stop. If it already returned, the signal is simply dropped. */
  atomic_store(&s->done, 1);
  pthread_kill(s->thread, SIGTERM);
  pthread_join(s->thread, NULL);
}
