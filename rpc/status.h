/* gaio-c RPC: status codes, their names and the body limits. Included by rpc/rpc.h, where a
 * user reads them, and by the wire codec rpc/frame.h: one definition for both. Include
 * rpc/rpc.h rather than this file. */
#ifndef GAIO_RPC_STATUS_H
#define GAIO_RPC_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: gRPC's canonical codes, same numbers (on the wire: a RESPONSE's header offset 5).
 * A call's outcome is one of these; rpc.h says which one each failure gives. */
enum rpc_status {
  RPC_STATUS_OK = 0,
  RPC_STATUS_CANCELLED = 1,
  RPC_STATUS_UNKNOWN = 2,
  RPC_STATUS_INVALID_ARGUMENT = 3,
  RPC_STATUS_DEADLINE_EXCEEDED = 4,
  RPC_STATUS_NOT_FOUND = 5,
  RPC_STATUS_ALREADY_EXISTS = 6,
  RPC_STATUS_PERMISSION_DENIED = 7,
  RPC_STATUS_RESOURCE_EXHAUSTED = 8,
  RPC_STATUS_FAILED_PRECONDITION = 9,
  RPC_STATUS_ABORTED = 10,
  RPC_STATUS_OUT_OF_RANGE = 11,
  RPC_STATUS_UNIMPLEMENTED = 12,
  RPC_STATUS_INTERNAL = 13,
  RPC_STATUS_UNAVAILABLE = 14,
  RPC_STATUS_DATA_LOSS = 15,
  RPC_STATUS_UNAUTHENTICATED = 16
};

/* Limits of a message body (one frame's, WIRE.md section 7). */
enum {
  RPC_DEFAULT_MAX_BODY = 4 << 20, /* default largest body (rpc_server_options.max_body,
                                     rpc_channel_options.max_body) */
  RPC_MAX_BODY_HARD = 64 << 20,   /* largest max_body; a larger body_len is malformed */
  RPC_MAX_ERROR_MESSAGE = 1024    /* bytes of an error message or GOAWAY reason; longer ones
                                     are truncated */
};

/* The gRPC name of a status code ("OK", "CANCELLED", ..., "UNAUTHENTICATED"), or
 * "UNKNOWN_STATUS" for any value outside 0..16. A static string: never free it. */
const char *rpc_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_RPC_STATUS_H */
