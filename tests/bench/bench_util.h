/* Helpers shared by the benchmark servers and the load generator: address flags, listening
 * sockets (TCP or unix), printing the bound address for the harness, CPU pinning, /proc reads.
 * Not part of the library. Functions return 0 (or an fd) or a negative errno. */
#ifndef GAIO_TESTS_BENCH_BENCH_UTIL_H
#define GAIO_TESTS_BENCH_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "examples/usage.h"

/* Longest unix socket path we accept (sun_path is 108 bytes including the NUL). */
#define BENCH_UNIX_PATH_MAX 107u

/* Where a server listens or a client connects: TCP host:port, or a unix path when unix_path is
 * not NULL. */
typedef struct bench_addr {
  const char *host;      /* numeric IPv4/IPv6 address; default 127.0.0.1 */
  int port;              /* 0: the kernel picks (servers) */
  const char *unix_path; /* non-NULL: AF_UNIX stream socket at this path */
} bench_addr;

/* Usage lines (examples/usage.h) of the address flags: of a server, and of a client. */
#define BENCH_USAGE_HOST "--host H          numeric IPv4 or IPv6 address (default 127.0.0.1)"
#define BENCH_USAGE_PORT "--port P          TCP port (default 0: any free port, printed)"
#define BENCH_USAGE_UNIX "--unix PATH       a unix socket instead of TCP (default: TCP)"
#define BENCH_USAGE_SERVER_PORT "--port P          the server's TCP port (required with TCP)"

/* Consume one address flag at argv[*i] (--host H, --port P, --unix PATH), advancing *i past its
 * value. Returns 1 if consumed, 0 if argv[*i] is not an address flag, -EINVAL on a bad value. */
int bench_addr_flag(bench_addr *a, int argc, char **argv, int *i);

/* Parse a decimal integer in [min, max] (flag names the option, for the message). */
int bench_parse_long(const char *flag, const char *text, long min, long max, long *out);

/* Parse a non-negative decimal number of seconds (may have a fraction). */
int bench_parse_seconds(const char *flag, const char *text, double *out);

/* The value of the flag at argv[*i] (argv[*i + 1]), advancing *i; NULL with a message if absent. */
const char *bench_flag_value(int argc, char **argv, int *i);

/* Fill a sockaddr for a: returns its length, or -EINVAL. */
int bench_sockaddr(const bench_addr *a, struct sockaddr_storage *ss);

/* A listening stream socket (CLOEXEC, SO_REUSEADDR; SO_REUSEPORT if reuseport) bound to a, with
 * the largest backlog the kernel allows. A unix path is unlinked first. nonblock sets
 * O_NONBLOCK. Returns the fd or a negative errno (reported). */
int bench_listen(const bench_addr *a, int reuseport, int nonblock);

/* Print the bound address as stdout's first line, flushed: the port number for TCP, the path for
 * unix. The harness reads it. Returns the port (0 for unix) or a negative errno. */
int bench_print_bound(int fd, const bench_addr *a);

/* The setup of the hand-written epoll servers (epoll_echo, raw_epoll_echo): SIGINT and SIGTERM
 * blocked and read from *sfd (a non-blocking signalfd), an epoll instance *ep holding the
 * non-blocking listener *lfd on a (edge-triggered) and *sfd (level-triggered), the bound address
 * printed (bench_print_bound). *max_fds: the open-files limit, the size of an fd-indexed table.
 * Returns 0, or -1 with errno set (what is open stays open: the process exits). */
int bench_epoll_setup(const bench_addr *a, int *ep, int *lfd, int *sfd, size_t *max_fds);

/* TCP_NODELAY on a connected TCP socket; a no-op (0) on a unix socket. */
int bench_nodelay(int fd);

/* Pin the calling thread to cpu. Returns 0 or a negative errno (reported). */
int bench_pin_cpu(int cpu);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* VmRSS of process pid in KiB (from /proc/<pid>/status), or a negative errno. */
long bench_rss_kib(int pid);

/* Number of open fds of process pid (entries of /proc/<pid>/fd), or a negative errno. */
long bench_fd_count(int pid);

#endif /* GAIO_TESTS_BENCH_BENCH_UTIL_H */
