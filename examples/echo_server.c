/* echo_server: a TCP echo server on one gaio watcher.
 *
 *   echo_server [-p port] [-a address]      (defaults: port 0, i.e. any free one; 127.0.0.1)
 *
 * Three threads: the main thread runs the watcher's loop (gaio_wait), an acceptor thread takes
 * connections with a blocking accept4() and hands each one to the watcher (gaio_attach, then a
 * first gaio_read), and a signal thread turns SIGINT/SIGTERM into gaio_watcher_close(). The echo
 * logic itself is in echo_service.c. Try it with:
 *
 *   echo_server -p 7000     and, in another terminal,     nc 127.0.0.1 7000 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "examples/echo_service.h"
#include "examples/example_util.h"

typedef struct server {
  echo_service echo;
  ex_acceptor acceptor;
} server;

/* Runs in the signal thread: stop accepting, and close the watcher. Closing wakes the loop in
 * gaio_wait(), which then hands out -ESHUTDOWN for every pending read and write, and returns
 * -ESHUTDOWN itself once they are all delivered. */
static void stop(void *arg) {
  server *srv = arg;
  ex_acceptor_stop(&srv->acceptor);
  gaio_watcher_close(srv->echo.w);
}

static void usage(void) {
  fprintf(stderr, "usage: %s [-p port] [-a address]\n", ex_prog());
  exit(2);
}

int main(int argc, char **argv) {
  ex_init(argv[0]);
  const char *addr = "127.0.0.1";
  long port = 0;
  int opt;
  while ((opt = getopt(argc, argv, "p:a:h")) != -1) {
    if (opt == 'p' && ex_parse_long('p', optarg, 0, 65535, &port) == 0) continue;
    if (opt == 'a') {
      addr = optarg;
      continue;
    }
    usage();
  }
  if (optind != argc) usage();

  /* Before any thread exists, so that every thread inherits the blocked signals. */
  ex_signals sig;
  if (ex_signals_block(&sig) != 0) return 1;

  int lfd = ex_listen(addr, (int)port, 0);
  if (lfd < 0) return 1;
  if (ex_print_listening(lfd) < 0) {
    close(lfd);
    return 1;
  }

  server srv;
  if (echo_service_init(&srv.echo) != 0) {
    close(lfd);
    return 1;
  }
  printf("%s: backend %s; stop with Ctrl-C\n", ex_prog(), gaio_backend_name(srv.echo.w));
  fflush(stdout);

  if (ex_acceptor_start(&srv.acceptor, lfd, echo_service_adopt, &srv.echo) != 0) {
    close(lfd);
    echo_service_destroy(&srv.echo);
    return 1;
  }
  /* Last, once everything stop() touches exists. Without it, stop at once: the loop below
   * then only drains. */
  int failed = ex_signals_start(&sig, stop, &srv) != 0;
  if (failed) stop(&srv);

  int rc = echo_service_run(&srv.echo); /* until stop() closes the watcher */

  ex_signals_join(&sig);
  ex_acceptor_join(&srv.acceptor);
  printf("%s: %llu connections served, %llu ended with an error\n", ex_prog(),
         (unsigned long long)atomic_load(&srv.acceptor.accepted),
         (unsigned long long)atomic_load(&srv.echo.errors));
  ex_print_stats(ex_prog(), srv.echo.w);
  echo_service_destroy(&srv.echo);
  return rc == 0 && !failed ? 0 : 1;
}
