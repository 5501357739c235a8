/* The backends built on Linux, best first. */
#include "gaio/backend.h"

extern const struct gaio__backend gaio__backend_epoll;

const struct gaio__backend *const gaio__backends[] = {&gaio__backend_epoll, 0};
