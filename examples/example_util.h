/* Helpers shared by the gaio-c examples: listening sockets, accepting through gaio (a listener
 * that keeps accepts queued on a watcher), the backend flag, flag parsing (and, from usage.h,
 * -h/--help), SIGINT/SIGTERM handling and printing the counters.
 * Not part of the library. Every function reports its own errors on stderr, prefixed with the
 * program name given to ex_init(), and returns 0 or a negative errno. */
#ifndef GAIO_EXAMPLES_EXAMPLE_UTIL_H
#define GAIO_EXAMPLES_EXAMPLE_UTIL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "examples/usage.h"
#include "gaio/gaio.h"

/* Remember the program name (the basename of argv[0]) for messages. Call first in main(). */
void ex_init(const char *argv0);

/* The program name given to ex_init(). */
const char *ex_prog(void);

/* Print "<prog>: <what>: <gaio_strerror(error)>" on stderr. Returns error, for `return ex_err()`. */
int ex_err(const char *what, int error);

/* Parse a decimal integer in [min, max] for the command-line flag -flag. On error prints why and
 * returns -EINVAL. */
int ex_parse_long(char flag, const char *text, long min, long max, long *out);

/* ex_listen() flags. */
#define EX_REUSEPORT 0x1u /* SO_REUSEPORT: several sockets share the port, the kernel balances */

/* A listening TCP socket (CLOEXEC, SO_REUSEADDR) bound to the numeric address addr (IPv4 or
 * IPv6) and port (0: the kernel picks one). Returns the fd or a negative errno. */
int ex_listen(const char *addr, int port, unsigned flags);

/* A blocking TCP connection (CLOEXEC, TCP_NODELAY) to the numeric address addr and port.
 * Returns the fd or a negative errno (reported). */
int ex_connect(const char *addr, int port);

/* The local port of a bound socket, or a negative errno. */
int ex_local_port(int fd);

/* Print "<prog>: listening on <addr>:<port>" (the port actually bound) on stdout, flushed, so
 * that scripts can read it. Returns the port or a negative errno. */
int ex_print_listening(int fd);

/* Print the watcher's counters on stdout, prefixed with label. */
void ex_print_stats(const char *label, gaio_watcher *w);

/* ---- Accepting through gaio ----
 *
 * An ex_listener keeps EX_ACCEPTS_QUEUED gaio_accept() requests queued on a listening socket
 * attached to a watcher, so that a burst of connections never waits for the loop to submit the
 * next accept, and re-arms each one as its result is delivered. It is loop-thread state: every
 * call below belongs to the thread that runs gaio_wait() on that watcher (ex_listener_start()
 * may also come before that loop starts). The accepts carry the listener as ctx, so a result
 * with op GAIO_OP_ACCEPT and ctx == the listener is one of its. No peer address is asked for,
 * which lets the io_uring backend serve the queued accepts with one multishot accept. */

#define EX_ACCEPTS_QUEUED 16u       /* accepts kept queued on a listener */
#define EX_ACCEPT_ERRORS_IN_ROW 64u /* resource errors (EMFILE...) in a row before a pause */
#define EX_ACCEPT_PAUSE_MS 100      /* how long accepting pauses after that many */

typedef struct ex_listener {
  gaio_watcher *w;
  int fd;                 /* the listening socket, owned by w */
  int open;               /* 0 once the listener is gone (freed, watcher closed, broken) */
  int quiet;              /* don't print accept errors (still counted) */
  unsigned queued;        /* accepts submitted and not yet delivered */
  unsigned errors_in_row; /* resource errors since the last accepted connection */
  uint64_t paused_until;  /* gaio_now() time to resume accepting; 0: not paused */
  uint64_t accepted;      /* connections handed to the caller */
  uint64_t errors;        /* accepts that failed for a reason worth counting */
} ex_listener;

/* Attach lfd, a listening socket, to w (which then owns and closes it) and queue the accepts.
 * Returns 0, or a negative errno: if the attach fails, lfd is closed here; if no accept can be
 * queued for a reason other than a lack of resources (which pauses, see below), the listener is
 * already gone (-ESHUTDOWN: w was closed). */
int ex_listener_start(ex_listener *l, gaio_watcher *w, int lfd, int quiet);

/* Take one of l's accept results. Returns the new connection (O_NONBLOCK, O_CLOEXEC and
 * TCP_NODELAY set, not attached), which the caller now owns and must attach or close, or the
 * result's negative error, which is handled here: -ECONNABORTED and the other per-connection
 * errors of accept(2) are skipped silently; -EMFILE, -ENFILE, -ENOBUFS and -ENOMEM are counted
 * and printed, and after every EX_ACCEPT_ERRORS_IN_ROW of them in a row accepting pauses for
 * EX_ACCEPT_PAUSE_MS (see ex_listener_timeout()); -ECANCELED and -ESHUTDOWN mean the listener
 * is gone; anything else is reported, and the listener is freed. Unless gone or paused, a new
 * accept takes the delivered one's place. */
int ex_listener_on_result(ex_listener *l, const gaio_result *r);

/* Call before each gaio_wait(): ends a pause whose time has come (queueing the accepts again)
 * and returns the longest timeout, in ms, that does not oversleep the pause: -1 when not
 * paused. */
int ex_listener_timeout(ex_listener *l);

/* Set TCP_NODELAY on a connected socket (echo and push traffic is small writes: Nagle would
 * hold them back for an ACK). Returns 0 or a negative errno (reported). */
int ex_set_nodelay(int fd);

/* gaio_watcher_create() with backend as opts->backend (opts may be NULL: defaults). backend
 * NULL keeps gaio's automatic choice, which honours the GAIO_BACKEND environment variable.
 * Reports a failure in words (an unknown backend name, a backend that cannot start here).
 * Returns 0 or a negative errno, as gaio_watcher_create(). */
int ex_watcher_create(gaio_watcher **out, const gaio_options *opts, const char *backend);

/* SIGINT and SIGTERM, taken by a dedicated thread with sigwait(). on_stop() then runs in that
 * thread, an ordinary thread and not a signal handler, so it may call anything, for example
 * gaio_watcher_close(), which wakes the thread blocked in gaio_wait().
 *
 * Two steps: ex_signals_block() first in main(), before any thread exists, so that every thread
 * inherits the mask; ex_signals_start() once everything on_stop() touches is set up. A signal
 * that comes in between stays pending until the signal thread takes it. */
typedef struct ex_signals {
  sigset_t set;
  pthread_t thread;
  int started;
  void (*on_stop)(void *arg);
  void *arg;
  atomic_int done;
} ex_signals;

/* Block SIGINT and SIGTERM in the calling thread (and the threads it starts later). */
int ex_signals_block(ex_signals *s);

/* Start the signal thread, which calls on_stop(arg) on the first SIGINT or SIGTERM. */
int ex_signals_start(ex_signals *s, void (*on_stop)(void *arg), void *arg);

/* Make the signal thread return (without calling on_stop if no signal came) and wait for it.
 * A no-op if it was not started. */
void ex_signals_join(ex_signals *s);

#endif /* GAIO_EXAMPLES_EXAMPLE_UTIL_H */
