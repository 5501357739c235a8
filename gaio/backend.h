/* The backend table: the one seam between the portable core (gaio.c) and a kernel interface.
 * Each backend is one file defining one `const struct gaio__backend`; the build picks which
 * files exist per OS, and backends_<os>.c lists them in order of preference. */
#ifndef GAIO_BACKEND_H
#define GAIO_BACKEND_H

#include <stdint.h>

struct gaio_watcher;
struct gaio__fd;
struct gaio__req;

struct gaio__backend {
  const char *name;
  /* Set up the backend's state in w->be. Returns 0 or a negative errno (nothing to undo). */
  int (*init)(struct gaio_watcher *w);
  /* Release what init set up. Called once, after every fd is released. */
  void (*destroy)(struct gaio_watcher *w);
  /* Start watching fd; gen tags its events so that events of an earlier fd with the same number
   * are recognised as stale. Any thread, under the watcher lock. Returns 0 or a negative errno. */
  int (*attach)(struct gaio_watcher *w, int fd, uint32_t gen);
  /* Stop watching f (loop thread), before it is closed or handed back. Requests of f that the
   * kernel holds are settled first: each one either completes with its own outcome or is left
   * in its queue, no longer in the kernel, for the core to complete with the release error. */
  void (*detach)(struct gaio_watcher *w, struct gaio__fd *f);
  /* r, queued on its fd, must finish with error (-ECANCELED, -ETIMEDOUT). If the kernel does not
   * hold r, complete it now (gaio__complete). Otherwise ask the kernel to cancel it and complete
   * it when the kernel answers: with error if the cancel took, with r's own outcome if r
   * finished first. Returns 1 if r is still pending in the kernel, else 0. Loop thread. */
  int (*cancel)(struct gaio_watcher *w, struct gaio__req *r, int error);
  /* The queues of f changed (new requests, or a head removed): make what progress is possible
   * now, without blocking. Loop thread. */
  void (*kick)(struct gaio_watcher *w, struct gaio__fd *f);
  /* Wait up to timeout_ms (-1 forever) for kernel events and make progress on them. When
   * timeout_ms > 0, until is the CLOCK_MONOTONIC time (ns) it stands for, not rounded to whole
   * ms (a deadline or the caller's timeout); else 0. Loop thread. Returns 0 or a negative
   * errno. */
  int (*poll)(struct gaio_watcher *w, int timeout_ms, uint64_t until);
  /* Make a concurrent or the next poll return promptly. Any thread. */
  void (*wakeup)(struct gaio_watcher *w);
  /* Optional. The swap buffer is free again: the results that pointed into it were delivered
   * and a new gaio_wait() began. Loop thread. */
  void (*recycle)(struct gaio_watcher *w);
};

/* NULL-terminated, best first. Defined by backends_<os>.c. */
extern const struct gaio__backend *const gaio__backends[];

#endif /* GAIO_BACKEND_H */
