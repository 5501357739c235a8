/* The echo service shared by echo_server, reuseport_echo and echo_demo: one watcher, one loop
 * thread that runs gaio_wait(), and connections adopted from any thread (an acceptor).
 *
 * Each connection has one buffer and one request in flight at a time: read into the buffer,
 * write those bytes back, read again. So when a result reports an error or the end of the
 * stream, no other request of that connection is pending, and its memory can go at once. */
#ifndef GAIO_EXAMPLES_ECHO_SERVICE_H
#define GAIO_EXAMPLES_ECHO_SERVICE_H

#include <stdatomic.h>
#include <stddef.h>

#include "gaio/gaio.h"

/* Bytes read (and so echoed) per request; also the per-connection memory. */
#define ECHO_BUF_SIZE (16u * 1024u)

typedef struct echo_service {
  gaio_watcher *w;
  atomic_ullong errors; /* connections that ended with an error other than EOF */
  int quiet;            /* don't print connection errors (still counted) */
} echo_service;

/* Create the service's watcher (default options). Returns 0 or a negative errno. */
int echo_service_init(echo_service *s);

/* Take ownership of fd, a connected socket: attach it and submit its first read. Safe from any
 * thread (it has the ex_accept_fn shape, for ex_acceptor_start with arg = the service). Returns 0,
 * or a negative errno after closing fd (-ESHUTDOWN once the watcher is closed). */
int echo_service_adopt(void *service, int fd);

/* Run the loop in the calling thread until the watcher is closed (gaio_watcher_close() from
 * another thread) and every result is delivered. Returns 0, or the error that stopped the loop
 * early (the watcher is then closed too). */
int echo_service_run(echo_service *s);

/* Destroy the watcher. Call after echo_service_run() returned. */
void echo_service_destroy(echo_service *s);

#endif /* GAIO_EXAMPLES_ECHO_SERVICE_H */
