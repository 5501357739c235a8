/* Write buffers (whole frames handed to gaio_write) and receive buffers (bytes in, whole
 * frames out). See internal.h. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

/* ---- Write buffers ----------------------------------------------------------------------- */

rpc__wbuf *rpc__wbuf_new(size_t body_len) {
  rpc__wbuf *w = gaio__malloc(sizeof *w + RPC_FRAME_HEADER_SIZE + body_len);
  if (!w) return NULL;
  w->kind = RPC__CTX_WRITE;
  w->coalesced = 0;
  w->conn = NULL;
  w->len = w->cap = RPC_FRAME_HEADER_SIZE + body_len;
  return w;
}

rpc__wbuf *rpc__wbuf_frame(const rpc_frame *f, const void *body, size_t body_len) {
  rpc__wbuf *w = rpc__wbuf_new(body_len);
  if (!w) return NULL;
  rpc_frame h = *f;
  h.body_len = (uint32_t)body_len;
  rpc_frame_encode(&h, w->data);
  if (body_len) memcpy(w->data + RPC_FRAME_HEADER_SIZE, body, body_len);
  return w;
}

/* ---- Receive buffers --------------------------------------------------------------------- */

int rpc__rbuf_init(rpc__rbuf *b) {
  memset(b, 0, sizeof *b);
  b->data = gaio__malloc(RPC__RBUF_INITIAL);
  if (!b->data) return -ENOMEM;
  b->cap = RPC__RBUF_INITIAL;
  return 0;
}

void rpc__rbuf_free(rpc__rbuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

static int resize(rpc__rbuf *b, size_t cap) {
  uint8_t *d = gaio__realloc(b->data, cap);
  if (!d) return -ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

/* The capacity to grow to for a frame of need bytes. Room for one frame only would make every
 * read stop at a frame boundary: with large pipelined frames, one read (and one wakeup) per
 * frame. So a buffer grows to twice the frame's size rounded up to a power of two (several
 * frames per read), as long as that stays within RPC__RBUF_KEEP_MAX (what an empty buffer keeps
 * without shrinking); larger frames get exactly their size. */
static size_t grown_cap(size_t need) {
  size_t cap = RPC__RBUF_INITIAL;
  while (cap < need) cap *= 2;
  cap *= 2;
  return cap <= RPC__RBUF_KEEP_MAX ? cap : (need > RPC__RBUF_KEEP_MAX ? need : RPC__RBUF_KEEP_MAX);
}

/* Drop the first n bytes held. */
static void drop(rpc__rbuf *b, size_t n) {
  if (n < b->len) memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->scanned = b->scanned > n ? b->scanned - n : 0;
}

/* Hand the whole frames of type b->urgent found in the buffer past b->scanned to fn, starting
 * where the main parse will resume (at an oversize body being skipped, past it). Stops at the
 * first incomplete or malformed frame, and at the first frame of a type the owner does not take
 * (b->takes, e.g. a RESPONSE sent to a server): the main parse reaches it and handles it. A
 * protocol error ends the connection, and nothing past the bad frame may be acted on (WIRE.md
 * section 8). The owner says by type which frames it takes, rather than the scan asking it per
 * frame, because the scan runs ahead of the owner's state: an owner with an urgent type refuses
 * frames by type alone (the server: the client-bound types, of any size; a CANCEL or PING with a
 * body is malformed already). */
static int scan_urgent(rpc__rbuf *b, size_t max_body, rpc__frame_fn fn, void *owner) {
  size_t pos = b->skip <= b->len ? (size_t)b->skip : b->len;
  if (pos < b->scanned) pos = b->scanned;
  for (;;) {
    rpc_frame f;
    long r = rpc_frame_parse(b->data + pos, b->len - pos, max_body, &f);
    if ((r > 0 || r == -EMSGSIZE) && !(b->takes & (1u << f.type))) return 0;
    if (r == -EMSGSIZE) {
      uint64_t whole = (uint64_t)RPC_FRAME_HEADER_SIZE + f.body_len;
      if (whole > b->len - pos) return 0;
      r = (long)whole;
    } else if (r <= 0) {
      return 0;
    } else if (f.type == b->urgent) {
      int rc = fn(owner, &f, 0);
      if (rc != 0) return rc < 0 ? rc : 0; /* paused: the main parse hands it over later */
    }
    pos += (size_t)r;
    b->scanned = pos;
  }
}

int rpc__rbuf_consume(rpc__rbuf *b, size_t n, size_t max_body, rpc__frame_fn fn, void *owner) {
  b->len += n;
  assert(b->len <= b->cap);
  if (b->urgent) {
    int rc = scan_urgent(b, max_body, fn, owner);
    if (rc < 0) return rc;
  }
  size_t pos = 0;
  int rc = 0;
  for (;;) {
    if (b->skip > 0) {
      size_t k = b->len - pos < b->skip ? b->len - pos : (size_t)b->skip;
      pos += k;
      b->skip -= k;
      if (b->skip > 0) break;
    }
    rpc_frame f;
    long r = rpc_frame_parse(b->data + pos, b->len - pos, max_body, &f);
    if (r > 0) {
      /* An urgent frame before `scanned` was handed over by scan_urgent already. */
      rc = (f.type == b->urgent && pos < b->scanned) ? 0 : fn(owner, &f, 0);
      if (rc == RPC__FRAME_PAUSE) break;
      pos += (size_t)r;
    } else if (r == -EMSGSIZE) {
      rc = fn(owner, &f, 1);
      if (rc == RPC__FRAME_PAUSE) break;
      b->skip = (uint64_t)RPC_FRAME_HEADER_SIZE + f.body_len;
    } else if (r == -EAGAIN) {
      if (b->len - pos >= RPC_FRAME_HEADER_SIZE) {
        size_t need = RPC_FRAME_HEADER_SIZE + (size_t)f.body_len;
        drop(b, pos);
        pos = 0;
        if (need > b->cap && resize(b, grown_cap(need)) < 0) return -ENOMEM;
      }
      break;
    } else {
      b->bad_at = pos; /* the owner may look at the header to say what was wrong */
      return -EPROTO;
    }
    if (rc < 0) return rc;
  }
  drop(b, pos);
  /* A buffer grown for one large frame goes back to its first size once it is empty, so that
   * an idle connection does not keep megabytes. */
  if (b->len == 0 && b->cap > RPC__RBUF_KEEP_MAX) resize(b, RPC__RBUF_INITIAL);
  return rc == RPC__FRAME_PAUSE ? RPC__FRAME_PAUSE : 0;
}
