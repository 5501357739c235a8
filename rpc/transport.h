/* The transport under a connection: plain or TLS. A plain connection has no session (NULL):
 * the socket's bytes go straight to and from the frame codec. A TLS connection has an
 * rpc__tls session (tls.c): OpenSSL on BIOs over the session's own buffers, driven from the
 * loop's completions.
 *   in:  gaio reads ciphertext into rpc__tls_rbuf(); rpc__tls_feed() hands it to OpenSSL and
 *        moves the handshake on; rpc__tls_recv() gives the plaintext, which the connection's
 *        receive buffer and the codec take as if it came from the socket.
 *   out: rpc__tls_seal() turns a buffer of frames into a buffer of records (plus whatever the
 *        handshake has to send), which is written with gaio like any other.
 * Nothing blocks; the loop's thread is the only one to touch a session. Private to //rpc. */
#ifndef GAIO_RPC_TRANSPORT_H
#define GAIO_RPC_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"

#define RPC__TLS_READ_CHUNK (17u * 1024u) /* first ciphertext bytes per gaio read: a record */
#define RPC__TLS_READ_MAX (256u * 1024u)  /* the most: a busy connection's reads grow to it */
#define RPC__TLS_RECORD_MAX 16384u        /* plaintext bytes of a TLS record */
#define RPC__TLS_KEEP_MAX (2u << 20)      /* a written buffer of records up to this is reused */
#define RPC__TLS_ERROR_MAX 200u           /* bytes of a session's error message */

typedef struct rpc__tls_ctx rpc__tls_ctx; /* a server's or channel's settings (SSL_CTX) */
typedef struct rpc__tls rpc__tls;         /* one connection's session */

/* Settings from the options (files are read here). Returns 0, -EINVAL, -ENOENT (a file
 * missing), -EBADMSG (a certificate, key or CA that does not load; a key that does not match),
 * -ENOMEM. Free with rpc__tls_ctx_free() (NULL: no-op) after every session is freed. */
int rpc__tls_server_ctx(rpc__tls_ctx **out, const rpc_tls_server_options *o);
int rpc__tls_client_ctx(rpc__tls_ctx **out, const rpc_tls_client_options *o);
void rpc__tls_ctx_free(rpc__tls_ctx *x);
/* A server's handshake timeout in ms, and its refusals so far (with the last reason copied
 * into why, why_len bytes, when why is not NULL). Any thread. */
int rpc__tls_ctx_handshake_ms(const rpc__tls_ctx *x);
unsigned long rpc__tls_ctx_refusals(rpc__tls_ctx *x, char *why, size_t why_len);
/* Count a refused connection with its reason (what the server would log). Any thread. */
void rpc__tls_ctx_refused(rpc__tls_ctx *x, const char *why);

/* A session. host (client only) is the endpoint's host, verified and sent as SNI unless the
 * options name another. A server session counts against max_handshakes until its handshake
 * ends. Returns 0, -EBUSY (max_handshakes in progress), -ENOMEM. */
int rpc__tls_new(rpc__tls **out, rpc__tls_ctx *x, const char *host);
void rpc__tls_free(rpc__tls *t);

/* Where the next ciphertext read goes: *len bytes at the returned pointer, valid until
 * rpc__tls_feed(). The room grows while reads fill it, and shrinks back when they do not. */
uint8_t *rpc__tls_rbuf(rpc__tls *t, size_t *len);
/* n bytes were read into rpc__tls_rbuf(). Returns 1 when the handshake has just completed, 0,
 * or -EPROTO (the handshake failed or the peer sent an alert: rpc__tls_error() says why). */
int rpc__tls_feed(rpc__tls *t, size_t n);
/* Plaintext received: up to len bytes into p. Returns the count (> 0), 0 (none for now),
 * GAIO_EOF (the peer's close_notify) or -EPROTO (rpc__tls_error() says why). */
long rpc__tls_recv(rpc__tls *t, uint8_t *p, size_t len);
/* Encrypt *b (a buffer of frames, consumed; NULL: none) and replace it with a buffer of the
 * ciphertext to send (the handshake's own output included; kind, conn and coalesced copied),
 * or NULL when there is nothing to send. Plaintext given before the handshake is done, or
 * after a failure, is dropped. Returns 0, -EPROTO (the session failed), -ENOMEM. */
int rpc__tls_seal(rpc__tls *t, rpc__wbuf **b);
/* Encrypt len bytes at p (frames; not kept) into the records the next rpc__tls_seal() gives,
 * so that a batch of replies leaves in one buffer. Dropped before the handshake is done or
 * after a failure. Returns 0, -EPROTO (the session failed now), -ENOMEM. */
int rpc__tls_push(rpc__tls *t, const uint8_t *p, size_t len);
/* The graceful end of our side: queue the close_notify alert after the records queued so far,
 * into what the next rpc__tls_seal() gives (the caller then writes it before its half-close or
 * close). It does not wait for the peer's close_notify. Once per session: later calls, and
 * calls before the handshake is done or after a failure, queue nothing. Plaintext given after
 * it is dropped. Returns 0, -EPROTO (the session failed now), -ENOMEM. */
int rpc__tls_close_notify(rpc__tls *t);
size_t rpc__tls_queued(const rpc__tls *t); /* bytes of records waiting for rpc__tls_seal() */
/* A buffer from rpc__tls_seal(), written: kept for the next records (NULL is returned), or
 * given back to be freed by the caller (one is kept already, or it is above
 * RPC__TLS_KEEP_MAX). Reusing it saves the page faults of a fresh large buffer per batch. */
rpc__wbuf *rpc__tls_recycle(rpc__tls *t, rpc__wbuf *b);
int rpc__tls_ready(const rpc__tls *t);    /* the handshake is done */
int rpc__tls_partial(const rpc__tls *t);  /* ciphertext of an incomplete record is waiting */
const char *rpc__tls_error(const rpc__tls *t); /* why it failed ("" when it did not) */
/* The peer's verified identity, into p's tls fields (strings owned by the session). */
void rpc__tls_peer(const rpc__tls *t, rpc_peer *p);

#endif /* GAIO_RPC_TRANSPORT_H */
