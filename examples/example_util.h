/* Helpers shared by the gaio-c examples: listening sockets, a blocking acceptor thread that hands
 * connections to a watcher, flag parsing, SIGINT/SIGTERM handling and printing the counters.
 * Not part of the library. Every function reports its own errors on stderr, prefixed with the
 * program name given to ex_init(), and returns 0 or a negative errno. */
#ifndef GAIO_EXAMPLES_EXAMPLE_UTIL_H
#define GAIO_EXAMPLES_EXAMPLE_UTIL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

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

/* Takes ownership of fd, a freshly accepted connection: hands it to a watcher (gaio_attach and
 * a first submit), or closes it. Returns 0, or a negative errno (-ESHUTDOWN stops the acceptor). */
typedef int (*ex_accept_fn)(void *arg, int fd);

/* A thread that blocks in accept4() and passes each connection (CLOEXEC, TCP_NODELAY) to fn.
 * gaio has no accept operation yet, so the examples accept on a plain thread; gaio's submit
 * calls are safe from any thread, so the handoff needs no lock of its own. */
typedef struct ex_acceptor {
  int lfd;
  ex_accept_fn fn;
  void *arg;
  pthread_t thread;
  int started;
  atomic_int stopping;
  atomic_ullong accepted; /* connections handed to fn */
} ex_acceptor;

/* Start accepting on the listening socket lfd, which the acceptor now owns. */
int ex_acceptor_start(ex_acceptor *a, int lfd, ex_accept_fn fn, void *arg);

/* Make the acceptor thread return. Safe from any thread, idempotent, does not wait. */
void ex_acceptor_stop(ex_acceptor *a);

/* Stop, wait for the thread and close the listening socket. Call once. */
void ex_acceptor_join(ex_acceptor *a);

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
