/* "dns:///" targets with c-ares, stepped from the channel loop (see resolver.h for why a
 * timer and poll(..., 0) rather than gaio requests). */
#include "rpc/resolver.h"

#include <ares.h>
#include <ares_nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

/* One SRV target being resolved to its addresses. */
struct srv_target {
  rpc__dns *r;
  unsigned weight;
};

struct rpc__dns {
  ares_channel ac;
  char name[RPC__DNS_MAX_NAME + 1];
  char port[8];            /* "name:port" targets */
  int srv;                 /* "_service._proto.name" */
  unsigned running;        /* c-ares queries whose callback is still to come */
  int active;              /* a resolution is running */
  uint32_t ttl;            /* the smallest TTL seen by the running resolution */
  char why[128];           /* the running resolution's first error */
  rpc__resolved next[RPC__DNS_MAX_ADDRS]; /* being collected */
  unsigned nnext;
  rpc__resolved done[RPC__DNS_MAX_ADDRS]; /* the last ended resolution */
  unsigned ndone;
  uint32_t done_ttl;
  char done_why[128];
  struct srv_target targets[RPC__DNS_MAX_ADDRS];
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_rc;

static void library_init(void) { library_rc = ares_library_init(ARES_LIB_INIT_ALL); }

/* "name:port" or "_service._proto.name" into r. */
static int parse_target(rpc__dns *r, const char *t) {
  size_t len = strlen(t);
  const char *colon = strrchr(t, ':');
  if (len > 0 && t[0] == '_' && !colon) {
    if (len > RPC__DNS_MAX_NAME) return -EINVAL;
    memcpy(r->name, t, len + 1);
    r->srv = 1;
    return 0;
  }
  if (!colon || colon == t || (size_t)(colon - t) > RPC__DNS_MAX_NAME) return -EINVAL;
  size_t pl = len - (size_t)(colon - t) - 1;
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (pl == 0 || pl >= sizeof r->port || *end || port <= 0 || port > 65535) return -EINVAL;
  memcpy(r->name, t, (size_t)(colon - t));
  r->name[colon - t] = 0;
  memcpy(r->port, colon + 1, pl + 1);
  return 0;
}

int rpc__dns_new(rpc__dns **out, const char *target, const char *server) {
  *out = NULL;
  pthread_once(&library_once, library_init);
  if (library_rc != ARES_SUCCESS) return -ENOMEM;
  rpc__dns *r = gaio__calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  int rc = parse_target(r, target);
  if (rc < 0) {
    free(r);
    return rc;
  }
  struct ares_options o;
  memset(&o, 0, sizeof o);
  o.timeout = RPC__DNS_QUERY_TIMEOUT_MS;
  o.tries = RPC__DNS_QUERY_TRIES;
  o.lookups = server ? "b" : "fb"; /* a server named by the channel is asked, not /etc/hosts */
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
  int ar = ares_init_options(&r->ac, &o, mask);
  if (ar != ARES_SUCCESS) {
    free(r);
    return ar == ARES_ENOMEM ? -ENOMEM : -EINVAL;
  }
  if (server && ares_set_servers_ports_csv(r->ac, server) != ARES_SUCCESS) {
    ares_destroy(r->ac);
    free(r);
    return -EINVAL;
  }
  r->done_ttl = UINT32_MAX;
  snprintf(r->done_why, sizeof r->done_why, "not resolved yet");
  *out = r;
  return 0;
}

void rpc__dns_free(rpc__dns *r) {
  if (!r) return;
  ares_destroy(r->ac); /* running queries' callbacks run now with ARES_EDESTRUCTION */
  free(r);
}

const char *rpc__dns_name(const rpc__dns *r) { return r->name; }

static void note_error(rpc__dns *r, const char *what, int status) {
  if (!r->why[0]) snprintf(r->why, sizeof r->why, "%s %.80s: %s", what, r->name, ares_strerror(status));
}

/* Keep one address (once: a name listed twice by SRV targets gives one endpoint). */
static void add_addr(rpc__dns *r, const struct sockaddr *sa, socklen_t len, unsigned weight) {
  if (len > sizeof(struct sockaddr_storage)) return;
  for (unsigned i = 0; i < r->nnext; i++)
    if (r->next[i].addr_len == len && memcmp(&r->next[i].addr, sa, len) == 0) return;
  if (r->nnext == RPC__DNS_MAX_ADDRS) return;
  rpc__resolved *e = &r->next[r->nnext++];
  memset(e, 0, sizeof *e);
  memcpy(&e->addr, sa, len);
  e->addr_len = len;
  e->weight = weight ? weight : 1;
}

/* The last query answered: the collected list becomes the result (an empty one is a failure,
 * which keeps nothing: the channel keeps its last good list). */
static void finish(rpc__dns *r) {
  r->active = 0;
  memcpy(r->done, r->next, r->nnext * sizeof r->next[0]);
  r->ndone = r->nnext;
  r->done_ttl = r->ttl;
  if (r->nnext == 0 && !r->why[0]) snprintf(r->why, sizeof r->why, "%.80s: no address", r->name);
  snprintf(r->done_why, sizeof r->done_why, "%s", r->nnext ? "" : r->why);
}

static void query_done(rpc__dns *r) {
  if (--r->running == 0) finish(r);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai) {
  (void)timeouts;
  struct srv_target *t = arg;
  rpc__dns *r = t->r;
  if (status == ARES_EDESTRUCTION) return;
  if (status != ARES_SUCCESS) note_error(r, "resolving", status);
  for (struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
    if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
    add_addr(r, n->ai_addr, n->ai_addrlen, t->weight);
    if (n->ai_ttl >= 0 && (uint32_t)n->ai_ttl < r->ttl) r->ttl = (uint32_t)n->ai_ttl;
  }
  if (ai) ares_freeaddrinfo(ai);
  query_done(r);
}

static void lookup(rpc__dns *r, const char *name, const char *port, struct srv_target *t) {
  struct ares_addrinfo_hints h;
  memset(&h, 0, sizeof h);
  h.ai_family = AF_UNSPEC;
  h.ai_socktype = SOCK_STREAM;
  h.ai_flags = ARES_AI_NUMERICSERV;
  r->running++;
  ares_getaddrinfo(r->ac, name, port, &h, on_addrinfo, t); /* may call back at once */
}

/* The end of the domain name at p (labels, ending in a zero length or a compression pointer),
 * or NULL when it runs past end. */
static const unsigned char *skip_name(const unsigned char *p, const unsigned char *end) {
  while (p < end) {
    if (*p == 0) return p + 1;
    if ((*p & 0xC0) == 0xC0) return p + 2 <= end ? p + 2 : NULL;
    p += 1 + *p;
  }
  return NULL;
}

/* The smallest TTL of the answer records of type `type` in a raw DNS response (RFC 1035 4.1),
 * or UINT32_MAX when it has none or does not parse. c-ares 1.18 parses SRV records without
 * their TTL, hence this walk. */
static uint32_t answer_min_ttl(const unsigned char *abuf, int alen, unsigned type) {
  uint32_t ttl = UINT32_MAX;
  if (!abuf || alen < HFIXEDSZ) return ttl;
  const unsigned char *p = abuf + HFIXEDSZ, *end = abuf + alen;
  unsigned qd = (unsigned)(abuf[4] << 8 | abuf[5]), an = (unsigned)(abuf[6] << 8 | abuf[7]);
  for (unsigned i = 0; i < qd && p; i++)
    if ((p = skip_name(p, end)) != NULL) p = p + QFIXEDSZ <= end ? p + QFIXEDSZ : NULL;
  for (unsigned i = 0; i < an && p; i++) {
    if ((p = skip_name(p, end)) == NULL || p + RRFIXEDSZ > end) break;
    unsigned rtype = (unsigned)(p[0] << 8 | p[1]);
    uint32_t rttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    unsigned rdlen = (unsigned)(p[8] << 8 | p[9]);
    p += RRFIXEDSZ;
    if (p + rdlen > end) break;
    p += rdlen;
    if (rtype == type && rttl < ttl) ttl = rttl;
  }
  return ttl;
}

/* SRV answer: the records of the lowest priority are looked up (RFC 2782: lower is preferred;
 * the others are not used while these answer), each with its weight. */
static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen) {
  (void)timeouts;
  rpc__dns *r = arg;
  if (status == ARES_EDESTRUCTION) return;
  struct ares_srv_reply *srv = NULL;
  if (status == ARES_SUCCESS) status = ares_parse_srv_reply(abuf, alen, &srv);
  if (status != ARES_SUCCESS) note_error(r, "SRV", status);
  uint32_t srv_ttl = status == ARES_SUCCESS ? answer_min_ttl(abuf, alen, T_SRV) : UINT32_MAX;
  if (srv_ttl < r->ttl) r->ttl = srv_ttl; /* bounds the next resolution, as A/AAAA TTLs do */
  unsigned best = 65536;
  for (struct ares_srv_reply *s = srv; s; s = s->next)
    if (s->priority < best) best = s->priority;
  unsigned k = 0;
  r->running++; /* held while the lookups start: one of them may end at once */
  for (struct ares_srv_reply *s = srv; s && k < RPC__DNS_MAX_ADDRS; s = s->next) {
    if (s->priority != best) continue;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->port);
    r->targets[k] = (struct srv_target){r, s->weight};
    lookup(r, s->host, port, &r->targets[k++]);
  }
  if (srv) ares_free_data(srv);
  query_done(r); /* the hold */
  query_done(r); /* the SRV query */
}

int rpc__dns_start(rpc__dns *r) {
  if (r->active) return -EBUSY;
  r->active = 1;
  r->nnext = 0;
  r->ttl = UINT32_MAX;
  r->why[0] = 0;
  r->running = 1; /* held until the query is out: its callback may run at once */
  if (r->srv) {
    r->running++;
    ares_query(r->ac, r->name, C_IN, T_SRV, on_srv, r);
  } else {
    r->targets[0] = (struct srv_target){r, 1};
    lookup(r, r->name, r->port, &r->targets[0]);
  }
  query_done(r);
  return 0;
}

int rpc__dns_step(rpc__dns *r) {
  if (!r->active) return 0;
  ares_socket_t socks[ARES_GETSOCK_MAXNUM];
  struct pollfd pfd[ARES_GETSOCK_MAXNUM];
  /* Bits tested as unsigned: ARES_GETSOCK_WRITABLE() shifts 1 into an int's sign bit. */
  unsigned bits = (unsigned)ares_getsock(r->ac, socks, ARES_GETSOCK_MAXNUM);
  nfds_t n = 0;
  for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
    short ev = (short)((((bits >> i) & 1u) ? POLLIN : 0) |
                       (((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u) ? POLLOUT : 0));
    if (ev) pfd[n++] = (struct pollfd){socks[i], ev, 0};
  }
  int ready = n ? poll(pfd, n, 0) : 0; /* never waits: the loop's timer paces the steps */
  for (nfds_t i = 0; ready > 0 && i < n && r->active; i++) {
    if (!pfd[i].revents) continue;
    int rd = pfd[i].revents & (POLLIN | POLLERR | POLLHUP);
    ares_process_fd(r->ac, rd ? pfd[i].fd : ARES_SOCKET_BAD,
                    (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
  }
  if (r->active) ares_process_fd(r->ac, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
  return r->active;
}

unsigned rpc__dns_result(const rpc__dns *r, const rpc__resolved **list, uint32_t *ttl_s,
                         const char **error) {
  *list = r->done;
  *ttl_s = r->done_ttl;
  *error = r->ndone ? NULL : r->done_why;
  return r->ndone;
}
