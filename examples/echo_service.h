/* The echo service shared by echo_server, reuseport_echo and echo_demo: one watcher, one loop
 * thread that runs gaio_wait(), and one listening socket on which the loop accepts through gaio
 * (an ex_listener keeps EX_ACCEPTS_QUEUED accepts queued; no acceptor thread).
 *
 * Each connection has one buffer and one request in flight at a time: read into the buffer,
 * write those bytes back, read again. So when a result reports an error or the end of the
 * stream, no other request of that connection is pending, and its memory can go at once.
 * Results tell accepts from connection requests by their op (GAIO_OP_ACCEPT). */
#ifndef GAIO_EXAMPLES_ECHO_SERVICE_H
#define GAIO_EXAMPLES_ECHO_SERVICE_H

#include <stdatomic.h>
#include <stddef.h>

#include "examples/example_util.h"
#include "gaio/gaio.h"

/* Bytes read (and so echoed) per request; also the per-connection memory. The size sets the
 * speed of a busy connection: each request costs a read and a write, so 64 KiB (a whole
 * loopback segment burst, the size tests/bench/epoll_echo reads) moves a stream at the speed of
 * the hand-written epoll server, where 16 KiB reached only 0.70x of it (tests/bench/results/
 * 2026-12-02-perf). For many idle connections, trade it back down: the buffer is allocated
 * with the connection, though its pages are only touched by the bytes read into it. */
#define ECHO_BUF_SIZE (64u * 1024u)

typedef struct echo_service {
  gaio_watcher *w;
  ex_listener listener; /* loop-thread state; listener.accepted counts the connections */
  int listening;        /* echo_service_listen() succeeded */
  atomic_ullong errors; /* connections that ended with an error other than EOF */
  int quiet;            /* don't print connection or accept errors (still counted) */
} echo_service;

/* Create the service's watcher on the named backend ("uring", "epoll"; NULL: gaio's automatic
 * choice, which honours GAIO_BACKEND). Returns 0 or a negative errno (reported). */
int echo_service_init(echo_service *s, const char *backend);

/* Accept on lfd, a listening socket, which the service's watcher now owns (it is closed with
 * the watcher, or here on error): accepts are queued on it and re-armed by the loop, and each
 * accepted connection is echoed. Set s->quiet before. Call once, before echo_service_run() (or
 * from the loop thread). Returns 0 or a negative errno (reported). */
int echo_service_listen(echo_service *s, int lfd);

/* Run the loop in the calling thread until the watcher is closed (gaio_watcher_close() from
 * another thread) and every result is delivered. Returns 0, or the error that stopped the loop
 * early (the watcher is then closed too). */
int echo_service_run(echo_service *s);

/* Destroy the watcher. Call after echo_service_run() returned. */
void echo_service_destroy(echo_service *s);

#endif /* GAIO_EXAMPLES_ECHO_SERVICE_H */
