/* Counters, histograms, log lines and the names and messages of rpc.h's "Logs and errors" and
 * "Counters" sections. */
#include "rpc/stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "gaio/gaio.h"

void rpc__hist_record(rpc__hist *h, uint64_t us) {
  rpc__count(&h->counts[rpc_histogram_index(us)], 1);
  rpc__count(&h->count, 1);
  rpc__count(&h->sum_us, us);
  if (us > rpc__get(&h->max_us)) atomic_store_explicit(&h->max_us, us, memory_order_relaxed);
}

void rpc__hist_add_to(rpc_histogram *out, const rpc__hist *h) {
  rpc_histogram one;
  for (unsigned i = 0; i < RPC_HIST_BUCKETS; i++) one.counts[i] = rpc__get(&h->counts[i]);
  one.count = rpc__get(&h->count);
  one.sum_us = rpc__get(&h->sum_us);
  one.max_us = rpc__get(&h->max_us);
  rpc_histogram_merge(out, &one);
}

void rpc__logger_init(rpc__logger *l, rpc_log_fn fn, void *arg, int level) {
  l->fn = fn;
  l->arg = arg;
  l->level = level > 0 ? level : RPC_LOG_INFO;
}

void rpc__log(const rpc__logger *l, int level, const char *fmt, ...) {
  if (!rpc__log_on(l, level)) return;
  char line[RPC_LOG_LINE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  l->fn(l->arg, level, line);
}

void rpc__addr_text(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t n) {
  char host[INET6_ADDRSTRLEN];
  if (len > 0 && ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, n, "%s:%u", host, (unsigned)ntohs(in->sin_port));
  } else if (len > 0 && ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(out, n, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
  } else if (len > 0 && ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                      ? (size_t)len - offsetof(struct sockaddr_un, sun_path) : 0;
    plen = strnlen(un->sun_path, plen < sizeof un->sun_path ? plen : sizeof un->sun_path);
    snprintf(out, n, "unix:%.*s", (int)plen, un->sun_path);
  } else {
    snprintf(out, n, "?");
  }
}

int rpc__protocol_error_kind(const uint8_t *p, size_t len) {
  if (len < RPC_FRAME_HEADER_SIZE) return RPC_PERR_BAD_HEADER;
  if ((p[0] | p[1] << 8) != RPC_MAGIC) return RPC_PERR_BAD_MAGIC;
  if (p[2] != RPC_VERSION) return RPC_PERR_BAD_VERSION;
  if (p[3] < RPC_TYPE_REQUEST || p[3] > RPC_TYPE_GOAWAY) return RPC_PERR_BAD_TYPE;
  uint32_t body = (uint32_t)p[20] | (uint32_t)p[21] << 8 | (uint32_t)p[22] << 16 |
                  (uint32_t)p[23] << 24;
  if (body > (uint32_t)RPC_MAX_BODY_HARD) return RPC_PERR_OVERSIZE;
  return RPC_PERR_BAD_HEADER;
}

/* ---- Names and messages ------------------------------------------------------------------ */

const char *rpc_log_level_name(int level) {
  static const char *const names[] = {"?", "ERROR", "WARN", "INFO", "DEBUG"};
  return level >= RPC_LOG_ERROR && level <= RPC_LOG_DEBUG ? names[level] : "?";
}

const char *rpc_close_cause_name(int cause) {
  static const char *const names[RPC_CLOSE_CAUSES] = {"peer", "idle", "protocol_error",
                                                      "shutdown", "error"};
  return cause >= 0 && cause < RPC_CLOSE_CAUSES ? names[cause] : "?";
}

const char *rpc_protocol_error_name(int kind) {
  static const char *const names[RPC_PERR_KINDS] = {"bad_magic", "bad_version", "bad_type",
                                                    "bad_header", "oversize"};
  return kind >= 0 && kind < RPC_PERR_KINDS ? names[kind] : "?";
}

const char *rpc_endpoint_state_name(int state) {
  static const char *const names[] = {"idle", "connecting", "ready", "backoff"};
  return state >= 0 && state <= RPC_ENDPOINT_BACKOFF ? names[state] : "?";
}

const char *rpc_strerror(int err) {
  switch (err) {
    case GAIO_EBACKEND:
    case GAIO_EOF:
      return gaio_strerror(err);
    case -ENOBUFS:
      return "too many calls pending (the channel's max_pending_calls or a completion queue's "
             "limit)";
    case -EMSGSIZE:
      return "message or headers larger than the limit (max_body, metadata limits)";
    case -ESHUTDOWN:
      return "the channel or server is shutting down";
    case -EDEADLK:
      return "called on the channel's own thread (from a stub closure)";
    case -ENOSPC:
      return "too many listeners or interceptors (RPC_MAX_LISTENERS, RPC_MAX_INTERCEPTORS)";
    case -EBUSY:
      return "the server is started already (configure it before rpc_server_start())";
    default:
      return gaio_strerror(err);
  }
}
