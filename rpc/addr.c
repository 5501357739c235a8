/* Addresses: "host:port", "[v6]:port" and "unix:/path". See internal.h. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "rpc/internal.h"

/* ---- Addresses and messages -------------------------------------------------------------- */

int rpc__parse_addr(const char *s, size_t len, struct sockaddr_storage *ss, socklen_t *sl) {
  memset(ss, 0, sizeof *ss);
  if (len > 5 && memcmp(s, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t plen = len - 5;
    if (plen == 0 || plen >= sizeof un->sun_path) return -EINVAL;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, s + 5, plen);
    *sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    return 0;
  }
  char host[256], port[16];
  const char *colon = NULL;
  for (size_t i = len; i > 0; i--)
    if (s[i - 1] == ':') {
      colon = s + i - 1;
      break;
    }
  if (!colon) return -EINVAL;
  size_t hl = (size_t)(colon - s), pl = len - hl - 1;
  const char *h = s;
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (hl == 0 || hl >= sizeof host || pl == 0 || pl >= sizeof port) return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = 0;
  memcpy(port, colon + 1, pl);
  port[pl] = 0;
  /* getaddrinfo takes any number and keeps its low 16 bits (":99999" became port 34463). */
  unsigned long pv = 0;
  for (size_t i = 0; i < pl; i++) {
    if (port[i] < '0' || port[i] > '9') return -EINVAL;
    pv = pv * 10 + (unsigned long)(port[i] - '0');
    if (pv > RPC__MAX_PORT) return -EINVAL;
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return -EINVAL;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sl = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}
