/* Helpers shared by the benchmark programs. See bench_util.h. */
#include "tests/bench/bench_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int bench_parse_long(const char *flag, const char *text, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "%s: '%s' is not a number in [%ld, %ld]\n", flag, text, min, max);
    return -EINVAL;
  }
  *out = v;
  return 0;
}

int bench_parse_seconds(const char *flag, const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0) || v > 86400.0) {
    fprintf(stderr, "%s: '%s' is not a number of seconds in [0, 86400]\n", flag, text);
    return -EINVAL;
  }
  *out = v;
  return 0;
}

const char *bench_flag_value(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "%s: needs a value\n", argv[*i]);
    return NULL;
  }
  *i += 1;
  return argv[*i];
}

int bench_addr_flag(bench_addr *a, int argc, char **argv, int *i) {
  const char *flag = argv[*i];
  int is_host = strcmp(flag, "--host") == 0, is_port = strcmp(flag, "--port") == 0;
  int is_unix = strcmp(flag, "--unix") == 0;
  if (!is_host && !is_port && !is_unix) return 0;
  const char *v = bench_flag_value(argc, argv, i);
  if (v == NULL) return -EINVAL;
  if (is_host) a->host = v;
  if (is_unix) {
    if (strlen(v) == 0 || strlen(v) > BENCH_UNIX_PATH_MAX) {
      fprintf(stderr, "--unix: path must have 1 to %u bytes\n", BENCH_UNIX_PATH_MAX);
      return -EINVAL;
    }
    a->unix_path = v;
  }
  if (is_port) {
    long port;
    if (bench_parse_long(flag, v, 0, 65535, &port) != 0) return -EINVAL;
    a->port = (int)port;
  }
  return 1;
}

int bench_sockaddr(const bench_addr *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (a->unix_path != NULL) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    un->sun_family = AF_UNIX;
    if (strlen(a->unix_path) >= sizeof(un->sun_path)) return -EINVAL;
    strcpy(un->sun_path, a->unix_path);
    return (int)sizeof(*un);
  }
  const char *host = a->host != NULL ? a->host : "127.0.0.1";
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)a->port);
    return (int)sizeof(*in4);
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)a->port);
    return (int)sizeof(*in6);
  }
  fprintf(stderr, "--host: '%s' is not a numeric IPv4 or IPv6 address\n", host);
  return -EINVAL;
}

static int set_int_opt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

static int report(const char *what, int err) {
  fprintf(stderr, "%s: %s\n", what, strerror(-err));
  return err;
}

int bench_listen(const bench_addr *a, int reuseport, int nonblock) {
  struct sockaddr_storage ss;
  int len = bench_sockaddr(a, &ss);
  if (len < 0) return len;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return report("socket", -errno);
  int rc = 0;
  if (a->unix_path != NULL) {
    unlink(a->unix_path); /* a stale socket file from an earlier run would make bind fail */
  } else if ((rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) != 0) {
    report("setsockopt(SO_REUSEADDR)", rc);
  } else if (reuseport && (rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) != 0) {
    report("setsockopt(SO_REUSEPORT)", rc);
  }
  if (rc == 0 && bind(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0) rc = report("bind", -errno);
  /* A backlog beyond net.core.somaxconn is capped by the kernel: ask for the most. */
  if (rc == 0 && listen(fd, 65535) != 0) rc = report("listen", -errno);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return fd;
}

int bench_print_bound(int fd, const bench_addr *a) {
  if (a->unix_path != NULL) {
    printf("%s\n", a->unix_path);
    fflush(stdout);
    return 0;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return report("getsockname", -errno);
  int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  printf("%d\n", port);
  fflush(stdout);
  return port;
}

int bench_nodelay(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
  if (ss.ss_family == AF_UNIX) return 0;
  return set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

int bench_pin_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0 || cpu >= CPU_SETSIZE) return report("pin cpu", -EINVAL);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return report("sched_setaffinity", -errno);
  return 0;
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long bench_rss_kib(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return -errno;
  long kib = -ENOENT;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

long bench_fd_count(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", pid);
  DIR *d = opendir(path);
  if (d == NULL) return -errno;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

int bench_epoll_setup(const bench_addr *a, int *ep, int *lfd, int *sfd, size_t *max_fds) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  *max_fds = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  *sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  *ep = epoll_create1(EPOLL_CLOEXEC);
  *lfd = bench_listen(a, 0, 1);
  if (*sfd < 0 || *ep < 0 || *lfd < 0) return -1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = *lfd};
  struct epoll_event sev = {.events = EPOLLIN, .data.fd = *sfd};
  if (epoll_ctl(*ep, EPOLL_CTL_ADD, *lfd, &ev) != 0 ||
      epoll_ctl(*ep, EPOLL_CTL_ADD, *sfd, &sev) != 0)
    return -1;
  return bench_print_bound(*lfd, a) < 0 ? -1 : 0;
}
