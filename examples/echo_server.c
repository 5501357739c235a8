/* echo_server: a TCP echo server on one gaio watcher.
 *
 *   echo_server [-p port] [-a address] [-b backend]
 *               (defaults: port 0, i.e. any free one; 127.0.0.1; gaio's choice of backend)
 *
 * Two threads: the main thread runs the watcher's loop (gaio_wait), which also accepts: the
 * listening socket is attached to the watcher with accepts queued on it, and each accepted
 * connection is attached to the same watcher with a first gaio_read. A signal thread turns
 * SIGINT/SIGTERM into gaio_watcher_close(). -b picks the backend ("uring" or "epoll"); without
 * it gaio picks one, and the GAIO_BACKEND environment variable overrides that choice. The echo
 * logic itself is in echo_service.c. Try it with:
 *
 *   echo_server -p 7000     and, in another terminal,     nc 127.0.0.1 7000 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "examples/echo_service.h"
#include "examples/example_util.h"

/* Runs in the signal thread: close the watcher. Closing wakes the loop in gaio_wait(), which
 * then hands out -ESHUTDOWN for every pending accept, read and write, and returns -ESHUTDOWN
 * itself once they are all delivered. The watcher closes the listening socket too. */
static void stop(void *arg) {
  echo_service *echo = arg;
  gaio_watcher_close(echo->w);
}

static const char *const flags[] = {EX_USAGE_PORT, EX_USAGE_ADDRESS, EX_USAGE_BACKEND, NULL};
static const ex_usage usage = {"[-p port] [-a address] [-b uring|epoll]", flags};

int main(int argc, char **argv) {
  ex_init(argv[0]);
  const char *addr = "127.0.0.1", *backend = NULL;
  long port = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "p:a:b:h", ex_help_option, NULL)) != -1) {
    if (opt == 'p' && ex_parse_long('p', optarg, 0, 65535, &port) == 0) continue;
    if (opt == 'a') {
      addr = optarg;
      continue;
    }
    if (opt == 'b') {
      backend = optarg;
      continue;
    }
    ex_usage_exit(&usage, opt == 'h' ? 0 : 2);
  }
  if (optind != argc) ex_usage_exit(&usage, 2);

  /* Before any thread exists, so that every thread inherits the blocked signals. */
  ex_signals sig;
  if (ex_signals_block(&sig) != 0) return 1;

  /* The watcher first, so that a bad -b fails before "listening on" is printed. */
  echo_service echo;
  if (echo_service_init(&echo, backend) != 0) return 1;
  int lfd = ex_listen(addr, (int)port, 0);
  if (lfd >= 0 && ex_print_listening(lfd) < 0) {
    close(lfd);
    lfd = -1;
  }
  /* echo_service_listen owns lfd: the watcher closes it, or it is closed on error. */
  if (lfd < 0 || echo_service_listen(&echo, lfd) != 0) {
    echo_service_destroy(&echo);
    return 1;
  }
  printf("%s: backend %s; stop with Ctrl-C\n", ex_prog(), gaio_backend_name(echo.w));
  fflush(stdout);

  /* Last, once everything stop() touches exists. Without it, stop at once: the loop below
   * then only drains. */
  int failed = ex_signals_start(&sig, stop, &echo) != 0;
  if (failed) stop(&echo);

  int rc = echo_service_run(&echo); /* until stop() closes the watcher */

  ex_signals_join(&sig);
  printf("%s: %llu connections served, %llu ended with an error, %llu failed accepts\n",
         ex_prog(), (unsigned long long)echo.listener.accepted,
         (unsigned long long)atomic_load(&echo.errors),
         (unsigned long long)echo.listener.errors);
  ex_print_stats(ex_prog(), echo.w);
  echo_service_destroy(&echo);
  return rc == 0 && !failed ? 0 : 1;
}
