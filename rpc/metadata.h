/* gaio-c RPC wire protocol: call metadata (rpc/WIRE.md section 13), the codec.
 *
 * A REQUEST may carry headers and a RESPONSE trailers: key/value pairs in one block at the
 * start of the body, marked by the RPC_FLAG_METADATA bit of the header's flags. Keys are 1..255
 * bytes of [a-z0-9._-]; values are 0..65535 bytes, binary-safe. Like rpc/frame.h this codec
 * allocates nothing and keeps no state: parsed metadata is a view into the body it came from,
 * and every function is safe from any thread. */
#ifndef GAIO_RPC_METADATA_H
#define GAIO_RPC_METADATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RPC_FLAG_METADATA 0x01u /* header flags bit: the body starts with a metadata block */

enum {
  RPC_METADATA_PREFIX = 4,                 /* u32 little-endian: bytes of the entries after it */
  RPC_METADATA_ENTRY_HEADER = 3,           /* per entry: u8 key length, u16 value length */
  RPC_METADATA_MAX_KEY = 255,              /* bytes of a key (at least 1) */
  RPC_METADATA_MAX_VALUE = 65535,          /* bytes of a value */
  RPC_DEFAULT_MAX_METADATA_BYTES = 8192,   /* default limit of a receiver: entry bytes per frame
                                              (the prefix aside), as gRPC's 8 KiB */
  RPC_DEFAULT_MAX_METADATA_ENTRIES = 64    /* default limit of a receiver: entries per frame */
};

/* One entry: key (key_len bytes, not NUL-terminated in a parsed view) and value. */
typedef struct rpc_md {
  const char *key;
  size_t key_len;
  const void *value;
  size_t value_len;
} rpc_md;

/* Parsed metadata: a view of the entries (data[0..len), count of them). {NULL, 0, 0} is empty. */
typedef struct rpc_metadata {
  const uint8_t *data;
  size_t len;
  unsigned count;
} rpc_metadata;

/* 1 if the len bytes of key are a valid key (1..255 bytes of a-z, 0-9, '.', '_', '-'), else 0. */
int rpc_metadata_key_ok(const char *key, size_t len);

/* Parse the block at the start of body[0..body_len) of a frame with RPC_FLAG_METADATA. Returns
 * the bytes it takes (prefix + entries: the message or error text starts there), -EPROTO (the
 * block is malformed: shorter than its prefix says, an entry past its end, a bad key),
 * -EMSGSIZE (valid so far but over max_bytes of entries or max_entries entries: the rest is
 * not looked at) or -EINVAL (md NULL). On success md views body. */
long rpc_metadata_parse(const uint8_t *body, size_t body_len, size_t max_bytes,
                        unsigned max_entries, rpc_metadata *md);

/* Iterate: *pos starts at 0; fills e with the next entry and returns 1, or returns 0 at the end. */
int rpc_metadata_next(const rpc_metadata *md, size_t *pos, rpc_md *e);

/* The first entry with this key (key_len bytes): fills e and returns 1, else 0. */
int rpc_metadata_get(const rpc_metadata *md, const char *key, size_t key_len, rpc_md *e);

/* Bytes of the block (prefix included) holding the n entries e, or 0 when an entry is invalid
 * (a bad key, a value over RPC_METADATA_MAX_VALUE, a NULL value with value_len > 0). n == 0
 * gives RPC_METADATA_PREFIX: an empty block is valid, though senders omit it (no flag). */
size_t rpc_metadata_size(const rpc_md *e, size_t n);

/* Write the block of the n entries e to out (out_len bytes). Returns the bytes written, or
 * -EINVAL (an invalid entry) or -ENOSPC (out too small). */
long rpc_metadata_encode(const rpc_md *e, size_t n, uint8_t *out, size_t out_len);

/* Write one entry (no prefix) to out: for builders that append entries and write the prefix
 * once they are done. Returns the bytes written, -EINVAL (invalid entry) or -ENOSPC. */
long rpc_metadata_encode_entry(const rpc_md *e, uint8_t *out, size_t out_len);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_RPC_METADATA_H */
