/* The frame codec of rpc/frame.h. Rules of the header: rpc/WIRE.md. */
#include "rpc/frame.h"

#include "rpc/metadata.h"

#include <errno.h>

/* Header field offsets (WIRE.md, "Header"). */
enum {
  OFF_MAGIC = 0,
  OFF_VERSION = 2,
  OFF_TYPE = 3,
  OFF_FLAGS = 4,
  OFF_STATUS = 5,
  OFF_RESERVED = 6,
  OFF_REQUEST_ID = 8,
  OFF_METHOD_ID = 12,
  OFF_TIMEOUT_US = 16,
  OFF_BODY_LEN = 20
};

enum { STATUS_MAX = RPC_STATUS_UNAUTHENTICATED };

#define FNV32_OFFSET_BASIS 2166136261u
#define FNV32_PRIME 16777619u

/* Byte-wise little-endian access: no alignment or host byte order assumed. */
static uint16_t load16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void store32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* Which fields may be nonzero depends on the type: status only on a RESPONSE, method_id and
 * timeout_us only on a REQUEST, and CANCEL, PING and PONG carry no body. */
static int type_rules_ok(const rpc_frame *f) {
  switch (f->type) {
  case RPC_TYPE_REQUEST:
    return f->status == 0;
  case RPC_TYPE_RESPONSE:
    return f->status <= STATUS_MAX && f->method_id == 0 && f->timeout_us == 0;
  case RPC_TYPE_GOAWAY:
    return f->status == 0 && f->method_id == 0 && f->timeout_us == 0;
  case RPC_TYPE_CANCEL:
  case RPC_TYPE_PING:
  case RPC_TYPE_PONG:
    return f->status == 0 && f->method_id == 0 && f->timeout_us == 0 && f->body_len == 0;
  default:
    return 0; /* an unknown type */
  }
}

/* Decodes and checks a complete header into h. Returns 0 or -EPROTO. */
static int decode_header(const uint8_t *p, rpc_frame *h) {
  if (load16(p + OFF_MAGIC) != RPC_MAGIC || p[OFF_VERSION] != RPC_VERSION) return -EPROTO;
  if (load16(p + OFF_RESERVED) != 0) return -EPROTO;
  h->type = p[OFF_TYPE];
  h->flags = p[OFF_FLAGS];
  /* Only the metadata bit is defined, and only a REQUEST or a RESPONSE carries metadata. */
  int md_ok = h->type == RPC_TYPE_REQUEST || h->type == RPC_TYPE_RESPONSE;
  if (h->flags & ~(md_ok ? RPC_FLAG_METADATA : 0u)) return -EPROTO;
  h->status = p[OFF_STATUS];
  h->request_id = load32(p + OFF_REQUEST_ID);
  h->method_id = load32(p + OFF_METHOD_ID);
  h->timeout_us = load32(p + OFF_TIMEOUT_US);
  h->body_len = load32(p + OFF_BODY_LEN);
  h->body = p + RPC_FRAME_HEADER_SIZE;
  if (!type_rules_ok(h) || h->body_len > (uint32_t)RPC_MAX_BODY_HARD) return -EPROTO;
  return 0;
}

int rpc_frame_parse(const uint8_t *buf, size_t len, size_t max_body, rpc_frame *f) {
  rpc_frame h;
  int rc;

  if (f == NULL || (buf == NULL && len > 0)) return -EINVAL;
  if (len < RPC_FRAME_HEADER_SIZE) return -EAGAIN;
  if ((rc = decode_header(buf, &h)) < 0) return rc;
  *f = h;
  if (h.body_len > max_body) return -EMSGSIZE;
  if (len - RPC_FRAME_HEADER_SIZE < h.body_len) return -EAGAIN;
  /* At most 24 + 64 MiB: fits an int. */
  return (int)(RPC_FRAME_HEADER_SIZE + h.body_len);
}

void rpc_frame_encode(const rpc_frame *f, uint8_t out[RPC_FRAME_HEADER_SIZE]) {
  store16(out + OFF_MAGIC, RPC_MAGIC);
  out[OFF_VERSION] = RPC_VERSION;
  out[OFF_TYPE] = f->type;
  out[OFF_FLAGS] = f->flags;
  out[OFF_STATUS] = f->status;
  store16(out + OFF_RESERVED, 0);
  store32(out + OFF_REQUEST_ID, f->request_id);
  store32(out + OFF_METHOD_ID, f->method_id);
  store32(out + OFF_TIMEOUT_US, f->timeout_us);
  store32(out + OFF_BODY_LEN, f->body_len);
}

uint32_t rpc_method_id(const char *full_name, size_t len) {
  const unsigned char *p = (const unsigned char *)full_name;
  uint32_t h = FNV32_OFFSET_BASIS;

  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= FNV32_PRIME; /* unsigned: wraps modulo 2^32, as FNV-1a requires */
  }
  return h;
}

/* Indexed by code; the names are gRPC's (grpc/include/grpc/status.h, google.rpc.Code). */
static const char *const status_names[STATUS_MAX + 1] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *rpc_status_name(int status) {
  if (status < 0 || status > STATUS_MAX) return "UNKNOWN_STATUS";
  return status_names[status];
}
