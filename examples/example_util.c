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

int ex_set_nodelay(int fd) {
  int rc = set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  return rc == 0 ? 0 : ex_err("setsockopt(TCP_NODELAY)", rc);
}

int ex_watcher_create(gaio_watcher **out, const gaio_options *opts, const char *backend) {
  gaio_options o = {0};
  if (opts != NULL) o = *opts;
  o.backend = backend;
  int rc = gaio_watcher_create(out, &o);
  if (rc == 0) return 0;
  const char *env = getenv("GAIO_BACKEND");
  if (backend != NULL && rc == GAIO_EBACKEND)
    fprintf(stderr, "%s: unknown backend '%s' (use uring or epoll)\n", prog, backend);
  else if (backend != NULL)
    fprintf(stderr, "%s: backend '%s' cannot start: %s\n", prog, backend, gaio_strerror(rc));
  else if (env != NULL && env[0] != '\0')
    fprintf(stderr, "%s: gaio_watcher_create (GAIO_BACKEND=%s): %s\n", prog, env,
            gaio_strerror(rc));
  else
    ex_err("gaio_watcher_create", rc);
  return rc;
}

/* ---- Accepting through gaio ---- */

/* Stop accepting for EX_ACCEPT_PAUSE_MS: the queued accepts are delivered and not re-armed.
 * Only the first pause of a run of errors is printed, so that a long shortage of fds prints
 * three lines (first error, pause, recovery) rather than one per pause. */
static void listener_pause(ex_listener *l, int error) {
  if (l->paused_until != 0) return;
  l->paused_until = gaio_now() + (uint64_t)EX_ACCEPT_PAUSE_MS * 1000000u;
  if (!l->quiet && l->errors_in_row <= EX_ACCEPT_ERRORS_IN_ROW)
    fprintf(stderr, "%s: accept: %s (%u in a row), pausing accepts for %d ms at a time\n",
            prog, gaio_strerror(error), l->errors_in_row, EX_ACCEPT_PAUSE_MS);
}

/* Give up on a broken listener: free it, which cancels its queued accepts (-ECANCELED). */
static void listener_break(ex_listener *l, const char *what, int error) {
  if (!l->open) return;
  l->open = 0;
  fprintf(stderr, "%s: %s on listener fd %d: %s; no longer accepting\n", prog, what, l->fd,
          gaio_strerror(error));
  int rc = gaio_free(l->w, l->fd);
  if (rc != 0 && rc != -ESHUTDOWN) ex_err("gaio_free(listener)", rc);
}

/* Queue accepts until EX_ACCEPTS_QUEUED are pending, unless gone or paused. */
static int listener_fill(ex_listener *l) {
  while (l->open && l->paused_until == 0 && l->queued < EX_ACCEPTS_QUEUED) {
    int rc = gaio_accept(l->w, l->fd, NULL, l);
    if (rc == 0) {
      l->queued++;
      continue;
    }
    if (rc == -ENOBUFS || rc == -ENOMEM) { /* max_requests reached, or memory: try later */
      l->errors++;
      listener_pause(l, rc);
    } else if (rc == -ESHUTDOWN || rc == -EBADF) { /* closed, or freed */
      l->open = 0;
    } else {
      listener_break(l, "gaio_accept", rc);
    }
    return rc;
  }
  return 0;
}

int ex_listener_start(ex_listener *l, gaio_watcher *w, int lfd, int quiet) {
  *l = (ex_listener){.w = w, .fd = lfd, .open = 1, .quiet = quiet};
  int rc = gaio_attach(w, lfd);
  if (rc != 0) {
    l->open = 0;
    close(lfd); /* on error the caller (here) keeps the fd */
    return rc == -ESHUTDOWN ? rc : ex_err("gaio_attach(listener)", rc);
  }
  rc = listener_fill(l);
  return l->open || l->queued > 0 ? 0 : rc;
}

int ex_listener_on_result(ex_listener *l, const gaio_result *r) {
  l->queued--;
  int error = r->error;
  if (error == 0 && r->conn_fd < 0) error = -EBADF; /* not expected; never pass on a bad fd */
  if (error == 0) {
    if (!l->quiet && l->errors_in_row >= EX_ACCEPT_ERRORS_IN_ROW)
      fprintf(stderr, "%s: accepting again, after %u failed accepts in a row\n", prog,
              l->errors_in_row);
    l->accepted++;
    l->errors_in_row = 0;
    ex_set_nodelay(r->conn_fd);
    listener_fill(l);
    return r->conn_fd;
  }
  switch (gaio_accept_verdict(error)) {
    case GAIO_ACCEPT_NEXT:
      break;
    case GAIO_ACCEPT_BACKOFF:
      l->errors++;
      /* Printed once per run of them: the pause message tells how it went on. */
      if (!l->quiet && l->errors_in_row == 0) ex_err("accept", error);
      if (++l->errors_in_row % EX_ACCEPT_ERRORS_IN_ROW == 0) listener_pause(l, error);
      break;
    case GAIO_ACCEPT_GONE:
      l->open = 0;
      break;
    default: /* GAIO_ACCEPT_BROKEN */
      l->errors++;
      listener_break(l, "accept", error);
      break;
  }
  listener_fill(l);
  return error;
}

int ex_listener_timeout(ex_listener *l) {
  if (l->paused_until == 0) return -1;
  uint64_t now = gaio_now();
  if (now < l->paused_until) return (int)((l->paused_until - now + 999999u) / 1000000u);
  l->paused_until = 0; /* errors_in_row goes on: a success resets it */
  listener_fill(l);
  return l->paused_until == 0 ? -1 : EX_ACCEPT_PAUSE_MS;
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
