/* The DNS resolver of "dns:///" targets (resolver.c): c-ares, stepped without blocking from the
 * channel's loop. Private to //rpc.
 *
 * gaio is a proactor: it completes reads and writes, and has no readiness API, while c-ares
 * reads and writes its own sockets. So the channel loop steps c-ares from a timer every
 * RPC__DNS_STEP_MS while a resolution is running: rpc__dns_step() polls c-ares' sockets with
 * poll(..., 0), lets c-ares read the ready ones and time out its queries, and never waits. No
 * timer runs between resolutions. A resolution takes a few steps (one DNS round trip). */
#ifndef GAIO_RPC_RESOLVER_H
#define GAIO_RPC_RESOLVER_H

#include <stdint.h>
#include <sys/socket.h>

#define RPC__DNS_STEP_MS 2          /* the channel loop steps a running resolution this often */
#define RPC__DNS_QUERY_TIMEOUT_MS 500 /* c-ares' timeout per query and server, per try */
#define RPC__DNS_QUERY_TRIES 2      /* tries per query (c-ares doubles the timeout per round) */
#define RPC__DNS_MAX_NAME 253       /* longest DNS name */
#define RPC__DNS_MAX_ADDRS 64u      /* addresses kept per resolution (= RPC_MAX_ENDPOINTS) */
#define RPC__DNS_SCHEME "dns:///"   /* targets resolved here */

/* One address of a resolution. */
typedef struct rpc__resolved {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  unsigned weight; /* the SRV record's weight (0 counts as 1); 1 for A and AAAA */
} rpc__resolved;

typedef struct rpc__dns rpc__dns;

/* A resolver for target, the text after "dns:///": "name:port" (A and AAAA records) or
 * "_service._proto.name" (SRV records: the lowest priority present, with their weights, each
 * target resolved to its A and AAAA records). server is the DNS server, "ip:port" or
 * "[ipv6]:port", or NULL for the system's (/etc/resolv.conf, and /etc/hosts first). Reads the
 * system's configuration: not for the channel thread. Returns 0, -EINVAL (bad target or server)
 * or -ENOMEM. */
int rpc__dns_new(rpc__dns **out, const char *target, const char *server);
/* Cancels a running resolution. Owner's thread. NULL is ignored. */
void rpc__dns_free(rpc__dns *r);
/* The name to check TLS certificates against (the target's name). */
const char *rpc__dns_name(const rpc__dns *r);
/* Start a resolution. Owner's thread (the channel's). Returns 0, or -EBUSY when one runs. */
int rpc__dns_start(rpc__dns *r);
/* Move the running resolution on, without blocking. Returns 1 while it runs, 0 when it has
 * ended (or none ran): rpc__dns_result() then tells how. */
int rpc__dns_step(rpc__dns *r);
/* The last ended resolution: its addresses in *list (valid until the next start), the smallest
 * TTL of its records in seconds (UINT32_MAX: none), and NULL or why it failed in *error.
 * Returns the number of addresses; 0 means it failed. */
unsigned rpc__dns_result(const rpc__dns *r, const rpc__resolved **list, uint32_t *ttl_s,
                         const char **error);

#endif /* GAIO_RPC_RESOLVER_H */
