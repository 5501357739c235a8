/* The library's own interceptors, built on the public API alone: bearer-token auth (server) and
 * W3C trace propagation (client), plus the traceparent parser they share. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "rpc/rpc.h"
#include "rpc/server_internal.h"

/* ---- Bearer tokens (RFC 6750) ----------------------------------------------------------- */

static int bearer_before(void *arg, rpc_call *call, const char **message) {
  const rpc_bearer_auth *auth = arg;
  const void *v;
  size_t len;
  const char *scheme = "Bearer ";
  size_t slen = strlen(scheme);
  if (!rpc_call_header(call, "authorization", &v, &len) || len <= slen ||
      strncasecmp(v, scheme, slen) != 0) {
    *message = "missing bearer token";
    return RPC_STATUS_UNAUTHENTICATED;
  }
  if (!auth->verify(auth->arg, (const char *)v + slen, len - slen, call)) {
    *message = "token refused";
    return RPC_STATUS_PERMISSION_DENIED;
  }
  return RPC_STATUS_OK;
}

void rpc_auth_bearer_interceptor(rpc_server_interceptor *out, const rpc_bearer_auth *auth) {
  memset(out, 0, sizeof *out);
  out->before = bearer_before;
  out->arg = (void *)auth;
}

/* ---- W3C Trace Context ----------------------------------------------------------------- */

static int hex_ok(const char *p, size_t n) {
  int nonzero = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
    nonzero |= c != '0';
  }
  return nonzero; /* all-zero ids are invalid */
}

/* traceparent = version "-" trace-id "-" parent-id "-" flags: 2, 32, 16, 2 lowercase hex
 * digits (W3C Trace Context, version 00). */
int rpc_call_trace_id(const rpc_call *c, char trace_id[33]) {
  const void *v;
  size_t len;
  if (!rpc_call_header(c, "traceparent", &v, &len) || len < 55) return -ENOENT;
  const char *p = v;
  if (p[2] != '-' || p[35] != '-' || p[52] != '-' || (len > 55 && p[55] != '-')) return -ENOENT;
  if (!hex_ok(p + 3, 32) || !hex_ok(p + 36, 16) || memcmp(p, "ff", 2) == 0) return -ENOENT;
  memcpy(trace_id, p + 3, 32);
  trace_id[32] = 0;
  return 0;
}

/* Random ids: splitmix64 over a per-thread state seeded from the clock and the thread. */
static uint64_t rnd64(void) {
  static _Thread_local uint64_t state;
  if (state == 0) state = gaio_now() ^ (uint64_t)(uintptr_t)&state ^ 0x9E3779B97F4A7C15ull;
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int trace_before(void *arg, const rpc_client_call *call, rpc_headers *h) {
  (void)arg;
  const rpc_call *parent = call->options->parent ? call->options->parent : rpc__srv_current_call();
  char trace[33];
  if (!parent || rpc_call_trace_id(parent, trace) != 0)
    snprintf(trace, sizeof trace, "%016llx%016llx", (unsigned long long)(rnd64() | 1),
             (unsigned long long)rnd64());
  char tp[56];
  snprintf(tp, sizeof tp, "00-%s-%016llx-01", trace, (unsigned long long)(rnd64() | 1));
  return rpc_headers_add(h, "traceparent", tp, 55);
}

void rpc_trace_client_interceptor(rpc_client_interceptor *out) {
  memset(out, 0, sizeof *out);
  out->before = trace_before;
}
