/* gaio-c RPC wire protocol v1: the frame codec (rpc/WIRE.md is the specification).
 *
 * A frame is a 24-byte little-endian header followed by body_len bytes of body. This codec only
 * reads and writes headers: it allocates nothing, copies no body, keeps no state between calls
 * and touches no global state, so every function here is safe from any thread. The parser reads
 * at most len bytes of its input, whatever they contain. */
#ifndef GAIO_RPC_FRAME_H
#define GAIO_RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Header layout. The body limits (RPC_DEFAULT_MAX_BODY, RPC_MAX_BODY_HARD,
 * RPC_MAX_ERROR_MESSAGE), the status codes (header offset 5, RESPONSE only) and
 * rpc_status_name() are in rpc/status.h, shared with rpc/rpc.h. */
enum {
  RPC_FRAME_HEADER_SIZE = 24, /* bytes of header before every body */
  RPC_MAGIC = 0x5247,         /* u16 at offset 0: bytes 0x47 'G', 0x52 'R' on the wire */
  RPC_VERSION = 1             /* u8 at offset 2 */
};

/* Frame types (header offset 3). */
enum rpc_frame_type {
  RPC_TYPE_REQUEST = 1,  /* client → server: a call; body = packed input message */
  RPC_TYPE_RESPONSE = 2, /* server → client: the call's outcome; body = output or error text */
  RPC_TYPE_CANCEL = 3,   /* client → server: abandon a call; empty body */
  RPC_TYPE_PING = 4,     /* client → server: keepalive; empty body */
  RPC_TYPE_PONG = 5,     /* server → client: answers a PING, same request_id; empty body */
  RPC_TYPE_GOAWAY = 6    /* server → client: no new calls; body = optional reason */
};

/* One decoded header. magic, version and reserved are not stored: they have one valid value.
 * body points into the parser's input (a view, never a copy); the encoder ignores it. */
typedef struct rpc_frame {
  uint8_t type;        /* enum rpc_frame_type */
  uint8_t flags;       /* RPC_FLAG_METADATA (rpc/metadata.h) or 0 */
  uint8_t status;      /* enum rpc_status for a RESPONSE, else 0 */
  uint32_t request_id; /* the call (REQUEST/RESPONSE/CANCEL), echoed value (PING/PONG), last id (GOAWAY) */
  uint32_t method_id;  /* rpc_method_id() of "package.Service/Method" for a REQUEST, else 0 */
  uint32_t timeout_us; /* REQUEST: relative deadline in microseconds, 0 = none; else 0 */
  uint32_t body_len;   /* bytes of body after the header */
  const uint8_t *body; /* parser output: buf + RPC_FRAME_HEADER_SIZE */
} rpc_frame;

/* Parses the frame at the start of buf[0..len). Reads no byte at or past buf + len; buf may be
 * NULL when len is 0. Bytes after the frame (the next pipelined frame) are left alone.
 * Returns:
 *   24 + body_len  a whole frame is there: f is filled, f->body = buf + 24 (a view into buf,
 *                  valid as long as buf is).
 *   -EAGAIN        more bytes are needed. When len < 24, f is not written (the header is only
 *                  checked once all 24 bytes are there); when the header is complete and valid
 *                  but the body is not, f is filled, so f->body_len says how much to wait for.
 *   -EPROTO        the header breaks a rule of WIRE.md (magic, version, type, flags (only
 *                  RPC_FLAG_METADATA, only on a REQUEST or a RESPONSE), status,
 *                  reserved, a field that must be 0 for this type, a body on CANCEL/PING/PONG,
 *                  body_len > RPC_MAX_BODY_HARD). f is not written. The connection is unusable.
 *   -EMSGSIZE      the header is valid but body_len > max_body: f is filled (request_id, type
 *                  and body_len tell the caller what to answer and how many bytes to skip).
 *                  Reported as soon as the header is complete, before any body byte arrives.
 *   -EINVAL        f is NULL, or buf is NULL with len > 0.
 * -EPROTO wins over -EMSGSIZE, which wins over -EAGAIN. Safe from any thread. */
int rpc_frame_parse(const uint8_t *buf, size_t len, size_t max_body, rpc_frame *f);

/* Writes the 24-byte header of f to out: magic, version, f's fields, reserved 0. f->body is
 * ignored; f->body_len is written as given. No field is checked: a frame that breaks WIRE.md's
 * rules is encoded as given (and rejected by rpc_frame_parse()). Safe from any thread. */
void rpc_frame_encode(const rpc_frame *f, uint8_t out[RPC_FRAME_HEADER_SIZE]);

/* The method_id of a method: 32-bit FNV-1a (offset basis 2166136261, prime 16777619) of the
 * len bytes of full_name, "package.Service/Method" in UTF-8, no terminating NUL. full_name may
 * be NULL when len is 0 (the result is then the offset basis). Safe from any thread. */
uint32_t rpc_method_id(const char *full_name, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_RPC_FRAME_H */
