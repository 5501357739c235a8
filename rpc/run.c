/* rpc_server_run(): listen, start, wait for SIGINT, SIGTERM or rpc_server_stop(), drain. The
 * signals are taken with a signalfd while blocked, so no handler and no global state is needed
 * beyond the signal mask (and, for the call's duration, a disposition of SIG_IGN made SIG_DFL:
 * POSIX leaves it unspecified whether an ignored signal stays pending while blocked; Linux
 * keeps it when the thread it is sent to, the main thread for kill(), blocks it). */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "rpc/server_internal.h"

static const int stop_signals[] = {SIGINT, SIGTERM};
#define NSTOP ((int)(sizeof stop_signals / sizeof stop_signals[0]))

/* What rpc_server_run() changed, to put back on return. */
typedef struct run_state {
  sigset_t set;      /* SIGINT, SIGTERM */
  sigset_t old_mask; /* the calling thread's mask before the call */
  int was_ignored[NSTOP];
  int sfd;
} run_state;

/* Block the stop signals in this thread (threads it creates from now on inherit the mask), and
 * make an ignored one deliverable (see the top). Blocking comes first, so that SIG_DFL never
 * gets to end the process through this thread. */
static int signals_take(run_state *st) {
  memset(st, 0, sizeof *st);
  st->sfd = -1;
  sigemptyset(&st->set);
  for (int i = 0; i < NSTOP; i++) sigaddset(&st->set, stop_signals[i]);
  int rc = pthread_sigmask(SIG_BLOCK, &st->set, &st->old_mask); /* fails only for a bad how */
  if (rc != 0) return -rc;
  for (int i = 0; i < NSTOP; i++) {
    struct sigaction sa;
    if (sigaction(stop_signals[i], NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) {
      sa.sa_handler = SIG_DFL;
      st->was_ignored[i] = sigaction(stop_signals[i], &sa, NULL) == 0;
    }
  }
  st->sfd = signalfd(-1, &st->set, SFD_CLOEXEC | SFD_NONBLOCK);
  return st->sfd < 0 ? -errno : 0;
}

/* Take the stop signals still pending (they asked for the stop already done), then restore
 * the dispositions and the mask. */
static void signals_give_back(run_state *st) {
  if (st->sfd >= 0) {
    struct signalfd_siginfo si;
    while (read(st->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    }
    close(st->sfd);
  }
  for (int i = 0; i < NSTOP; i++) {
    if (!st->was_ignored[i]) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(stop_signals[i], &sa, NULL);
  }
  pthread_sigmask(SIG_SETMASK, &st->old_mask, NULL);
}

/* The server's stop eventfd, created by the first rpc_server_run() and closed by
 * rpc_server_destroy(). run_fd holds fd + 1, so that 0 (calloc) means none. */
static int stop_fd(rpc_server *s) {
  int have = atomic_load(&s->run_fd);
  if (have > 0) return have - 1;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return -errno;
  if (!atomic_compare_exchange_strong(&s->run_fd, &have, fd + 1)) { /* a second run at once */
    close(fd);
    return have - 1;
  }
  return fd;
}

int rpc_server_stop(rpc_server *s) {
  if (!s) return -EINVAL;
  atomic_store(&s->run_stop, 1);
  int have = atomic_load(&s->run_fd);
  if (have > 0) {
    uint64_t one = 1;
    ssize_t n = write(have - 1, &one, sizeof one); /* EAGAIN: it is awake already */
    (void)n;
  }
  return 0;
}

static void print_listeners(const rpc_server *s, const char *name) {
  const char *sep = name ? ": " : "";
  if (!name) name = "";
  for (unsigned i = 0; i < s->nlisteners; i++) {
    const rpc__srv_listener *l = &s->listeners[i];
    if (l->is_unix) {
      printf("%s%slistening on unix:%s\n", name, sep, l->path);
      continue;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    memset(&ss, 0, sizeof ss);
    int v6 = 0;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0) {
      v6 = ss.ss_family == AF_INET6;
      const void *a = v6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                         : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
      inet_ntop(ss.ss_family, a, host, sizeof host);
    }
    printf(v6 ? "%s%slistening on [%s]:%d\n" : "%s%slistening on %s:%d\n", name, sep, host,
           l->port);
  }
  fflush(stdout);
}

/* Block until a stop signal or rpc_server_stop(). Returns the signal number, 0 for a stop
 * call, or a negative errno if waiting itself failed. */
static int wait_for_stop(rpc_server *s, run_state *st, int efd) {
  struct pollfd p[2] = {{.fd = st->sfd, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
  for (;;) {
    if (atomic_load(&s->run_stop)) return 0;
    struct signalfd_siginfo si;
    ssize_t n = read(st->sfd, &si, sizeof si);
    if (n == (ssize_t)sizeof si) return (int)si.ssi_signo;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return -errno;
    if (poll(p, 2, -1) < 0 && errno != EINTR) return -errno;
  }
}

int rpc_server_run(rpc_server *s, const rpc_server_run_options *opts) {
  rpc_server_run_options o = {0};
  if (opts) o = *opts;
  if (!s || o.drain_ms > RPC_MAX_RUN_DRAIN_MS) return -EINVAL;
  int drain_ms = o.drain_ms == 0 ? RPC_DEFAULT_RUN_DRAIN_MS : o.drain_ms < 0 ? 0 : o.drain_ms;
  int rc;
  if (o.address && o.address[0] && (rc = rpc_server_listen(s, o.address)) < 0) return rc;
  int efd = stop_fd(s);
  if (efd < 0) return efd;
  run_state st;
  if ((rc = signals_take(&st)) < 0 || (rc = rpc_server_start(s)) < 0) {
    signals_give_back(&st);
    return rc;
  }
  if (o.print) print_listeners(s, o.name);
  if (o.on_started) o.on_started(o.arg, s);
  int sig = wait_for_stop(s, &st, efd);
  if (o.print) {
    printf("%s%s%s, draining for up to %d ms\n", o.name ? o.name : "", o.name ? ": " : "",
           sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "stopped", drain_ms);
    fflush(stdout);
  }
  rpc_server_shutdown(s, drain_ms);
  signals_give_back(&st);
  return sig < 0 ? sig : 0;
}
