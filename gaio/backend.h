/* The backend table: the one seam between the portable core (gaio.c) and a kernel interface.
 * Each backend is one file defining one `const struct gaio__backend`; the build picks which
 * files exist per OS, and backends_<os>.c lists them in order of preference. */
#ifndef GAIO_BACKEND_H
#define GAIO_BACKEND_H

#include <stdint.h>

struct gaio_watcher;
struct gaio__fd;

struct gaio__backend {
  const char *name;
  /* Set up the backend's state in w->be. Returns 0 or a negative errno (nothing to undo). */
  int (*init)(struct gaio_watcher *w);
  /* Release what init set up. Called once, after every fd is released. */
  void (*destroy)(struct gaio_watcher *w);
  /* Start watching fd; gen tags its events so that events of an earlier fd with the same number
   * are recognised as stale. Any thread, under the watcher lock. Returns 0 or a negative errno. */
  int (*attach)(struct gaio_watcher *w, int fd, uint32_t gen);
  /* Stop watching fd (loop thread), before it is closed or handed back. */
  void (*detach)(struct gaio_watcher *w, int fd);
  /* The queues of f changed (new requests, or a head removed): make what progress is possible
   * now, without blocking. Loop thread. */
  void (*kick)(struct gaio_watcher *w, struct gaio__fd *f);
  /* Wait up to timeout_ms (-1 forever) for kernel events and make progress on them. Loop
   * thread. Returns 0 or a negative errno. */
  int (*poll)(struct gaio_watcher *w, int timeout_ms);
  /* Make a concurrent or the next poll return promptly. Any thread. */
  void (*wakeup)(struct gaio_watcher *w);
};

/* NULL-terminated, best first. Defined by backends_<os>.c. */
extern const struct gaio__backend *const gaio__backends[];

#endif /* GAIO_BACKEND_H */
