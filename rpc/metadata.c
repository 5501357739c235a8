/* The metadata codec of rpc/metadata.h. Layout: rpc/WIRE.md section 13. */
#include "rpc/metadata.h"

#include <errno.h>
#include <string.h>

static uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned load16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

int rpc_metadata_key_ok(const char *key, size_t len) {
  if (key == NULL || len == 0 || len > RPC_METADATA_MAX_KEY) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* The entry at p[0..left): its size, or 0 if it does not fit or its key is bad. */
static size_t entry_at(const uint8_t *p, size_t left, rpc_md *e) {
  if (left < RPC_METADATA_ENTRY_HEADER) return 0;
  size_t klen = p[0], vlen = load16(p + 1);
  size_t size = RPC_METADATA_ENTRY_HEADER + klen + vlen;
  if (size > left) return 0;
  e->key = (const char *)p + RPC_METADATA_ENTRY_HEADER;
  e->key_len = klen;
  e->value = p + RPC_METADATA_ENTRY_HEADER + klen;
  e->value_len = vlen;
  return rpc_metadata_key_ok(e->key, klen) ? size : 0;
}

long rpc_metadata_parse(const uint8_t *body, size_t body_len, size_t max_bytes,
                        unsigned max_entries, rpc_metadata *md) {
  if (md == NULL || (body == NULL && body_len > 0)) return -EINVAL;
  if (body_len < RPC_METADATA_PREFIX) return -EPROTO;
  size_t len = load32(body);
  if (len > body_len - RPC_METADATA_PREFIX) return -EPROTO;
  if (len > max_bytes) return -EMSGSIZE;
  const uint8_t *p = body + RPC_METADATA_PREFIX;
  unsigned count = 0;
  for (size_t pos = 0; pos < len; count++) {
    rpc_md e;
    size_t n = entry_at(p + pos, len - pos, &e);
    if (n == 0) return -EPROTO;
    if (count == max_entries) return -EMSGSIZE;
    pos += n;
  }
  md->data = p;
  md->len = len;
  md->count = count;
  return (long)(RPC_METADATA_PREFIX + len);
}

int rpc_metadata_next(const rpc_metadata *md, size_t *pos, rpc_md *e) {
  if (md == NULL || *pos >= md->len) return 0;
  size_t n = entry_at(md->data + *pos, md->len - *pos, e);
  if (n == 0) return 0; /* not from rpc_metadata_parse() */
  *pos += n;
  return 1;
}

int rpc_metadata_get(const rpc_metadata *md, const char *key, size_t key_len, rpc_md *e) {
  size_t pos = 0;
  while (rpc_metadata_next(md, &pos, e))
    if (e->key_len == key_len && memcmp(e->key, key, key_len) == 0) return 1;
  return 0;
}

size_t rpc_metadata_size(const rpc_md *e, size_t n) {
  size_t size = RPC_METADATA_PREFIX;
  for (size_t i = 0; i < n; i++) {
    if (!rpc_metadata_key_ok(e[i].key, e[i].key_len) || e[i].value_len > RPC_METADATA_MAX_VALUE ||
        (e[i].value == NULL && e[i].value_len > 0))
      return 0;
    size += RPC_METADATA_ENTRY_HEADER + e[i].key_len + e[i].value_len;
  }
  return size > UINT32_MAX ? 0 : size;
}

long rpc_metadata_encode_entry(const rpc_md *e, uint8_t *out, size_t out_len) {
  size_t size = rpc_metadata_size(e, 1);
  if (size == 0) return -EINVAL;
  size -= RPC_METADATA_PREFIX;
  if (out == NULL || out_len < size) return -ENOSPC;
  out[0] = (uint8_t)e->key_len;
  out[1] = (uint8_t)e->value_len;
  out[2] = (uint8_t)(e->value_len >> 8);
  memcpy(out + RPC_METADATA_ENTRY_HEADER, e->key, e->key_len);
  if (e->value_len) memcpy(out + RPC_METADATA_ENTRY_HEADER + e->key_len, e->value, e->value_len);
  return (long)size;
}

long rpc_metadata_encode(const rpc_md *e, size_t n, uint8_t *out, size_t out_len) {
  size_t size = rpc_metadata_size(e, n);
  if (size == 0) return -EINVAL;
  if (out == NULL || out_len < size) return -ENOSPC;
  size_t len = size - RPC_METADATA_PREFIX;
  out[0] = (uint8_t)len;
  out[1] = (uint8_t)(len >> 8);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 24);
  size_t pos = RPC_METADATA_PREFIX;
  for (size_t i = 0; i < n; i++) pos += (size_t)rpc_metadata_encode_entry(&e[i], out + pos, size - pos);
  return (long)size;
}
