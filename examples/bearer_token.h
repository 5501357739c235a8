/* Bearer tokens for the example RPC programs (kv_server, kv_client, rpc_echo_server, rpc_demo):
 * one token read from a file, and a check of a presented token in constant time, as the verifier
 * of rpc_auth_bearer_interceptor(). Not part of the library. */
#ifndef GAIO_EXAMPLES_BEARER_TOKEN_H
#define GAIO_EXAMPLES_BEARER_TOKEN_H

#include <stddef.h>

#include "rpc/rpc.h"

#define EX_TOKEN_MAX 512 /* bytes of a token */

typedef struct ex_token {
  char text[EX_TOKEN_MAX + 1]; /* NUL-terminated */
  size_t len;
} ex_token;

/* Read the token in the file at path: the file's bytes, less one trailing newline ("\n" or
 * "\r\n"). A token is 1..EX_TOKEN_MAX characters of RFC 6750's b64token (A-Z a-z 0-9 - . _ ~ + /,
 * then any '='), so that "Bearer <token>" is a valid authorization header. Returns 0, or the
 * -errno of open/read, -EINVAL (empty, more than one line, or another character), -E2BIG
 * (longer than EX_TOKEN_MAX). Prints nothing. */
int ex_token_read(ex_token *t, const char *path);

/* A message for an ex_token_read() error. A static string. */
const char *ex_token_strerror(int error);

/* 1 if the len bytes at p are the token, else 0. The time taken depends on len and on the
 * token's length only, never on how many leading bytes match: a client cannot find the token
 * byte by byte by timing refusals. */
int ex_token_equal(const ex_token *t, const char *p, size_t len);

/* An rpc_token_verifier: arg is the const ex_token * to compare with (ex_token_equal()). */
int ex_token_verify(void *arg, const char *token, size_t len, const rpc_call *call);

#endif /* GAIO_EXAMPLES_BEARER_TOKEN_H */
