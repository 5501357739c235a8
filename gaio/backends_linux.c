/* The backends built on Linux, best first: io_uring when the kernel lets it start, else epoll. */
#include "gaio/backend.h"

extern const struct gaio__backend gaio__backend_uring;
extern const struct gaio__backend gaio__backend_epoll;

const struct gaio__backend *const gaio__backends[] = {&gaio__backend_uring, &gaio__backend_epoll,
                                                      0};
