/* Fuzz target of the frame parser (rpc/frame.h) and of the metadata block parser
 * (rpc/metadata.h): reads the input as a server reads a connection, frame after frame, with
 * several max_body values, checks the parser's contract on every step, and parses the metadata
 * block of every whole frame that has one, with several limits. An invariant that fails aborts,
 * which libFuzzer reports as a crash. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/metadata.h"
#include "tests/fuzz/fuzz_target.h"

#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "frame_fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                                \
    }                                                                                         \
  } while (0)

/* 0 and 16 make -EMSGSIZE common; the default and "no limit" leave only the hard cap. */
static const size_t max_bodies[] = {0, 16, RPC_DEFAULT_MAX_BODY, SIZE_MAX};

/* Every header byte is validated, so a parsed header must re-encode to the input bytes. */
static void check_header(const uint8_t *p, const rpc_frame *f) {
  uint8_t again[RPC_FRAME_HEADER_SIZE];

  rpc_frame_encode(f, again);
  CHECK(memcmp(again, p, RPC_FRAME_HEADER_SIZE) == 0);
  CHECK(f->body == p + RPC_FRAME_HEADER_SIZE);
  CHECK(f->body_len <= (uint32_t)RPC_MAX_BODY_HARD);
  CHECK(f->type >= RPC_TYPE_REQUEST && f->type <= RPC_TYPE_GOAWAY);
  CHECK(f->flags == 0 || (f->flags == RPC_FLAG_METADATA &&
                          (f->type == RPC_TYPE_REQUEST || f->type == RPC_TYPE_RESPONSE)));
}

/* A parsed block views the body, its entries are valid and fill it, and encoding them again
 * gives the same bytes: nothing in a block is left unchecked. Limits are enforced exactly. */
static void check_metadata(const uint8_t *body, size_t len, size_t max_bytes, unsigned max_entries) {
  rpc_metadata md;
  long used = rpc_metadata_parse(body, len, max_bytes, max_entries, &md);
  if (used < 0) {
    CHECK(used == -EPROTO || used == -EMSGSIZE);
    return;
  }
  CHECK((size_t)used == RPC_METADATA_PREFIX + md.len && (size_t)used <= len);
  CHECK(md.data == body + RPC_METADATA_PREFIX && md.len <= max_bytes && md.count <= max_entries);
  rpc_md e[RPC_DEFAULT_MAX_METADATA_ENTRIES];
  size_t pos = 0, n = 0;
  while (n < md.count && rpc_metadata_next(&md, &pos, &e[n])) {
    CHECK(rpc_metadata_key_ok(e[n].key, e[n].key_len));
    n++;
  }
  CHECK(n == md.count && pos == md.len);
  uint8_t again[RPC_METADATA_PREFIX + 4096];
  if ((size_t)used <= sizeof again) {
    CHECK(rpc_metadata_encode(e, n, again, sizeof again) == used);
    CHECK(memcmp(again, body, (size_t)used) == 0);
  }
}

static void check_frame(const uint8_t *p, size_t left, size_t max_body, int rc,
                        const rpc_frame *f) {
  rpc_frame g;

  CHECK((size_t)rc <= left);
  CHECK((size_t)rc == RPC_FRAME_HEADER_SIZE + (size_t)f->body_len);
  CHECK(f->body_len <= max_body);
  CHECK(f->body + f->body_len <= p + left); /* the body lies inside the input */
  check_header(p, f);
  if (f->flags & RPC_FLAG_METADATA) {
    check_metadata(f->body, f->body_len, 4096, RPC_DEFAULT_MAX_METADATA_ENTRIES);
    check_metadata(f->body, f->body_len, 16, 2);
  }
  /* One byte less is an incomplete frame, never another verdict. */
  CHECK(rpc_frame_parse(p, (size_t)rc - 1, max_body, &g) == -EAGAIN);
}

/* Consumes frames from data like a server: -EMSGSIZE skips the body once it is all there (the
 * server discards it), anything else that is not a frame ends the stream. */
static void run_stream(const uint8_t *data, size_t size, size_t max_body) {
  size_t off = 0;

  for (;;) {
    size_t left = size - off;
    const uint8_t *p = left > 0 ? data + off : NULL; /* no offset on a NULL data */
    rpc_frame f, untouched;
    memset(&f, 0xa5, sizeof f);
    untouched = f;
    int rc = rpc_frame_parse(p, left, max_body, &f);

    if (rc > 0) {
      check_frame(p, left, max_body, rc, &f);
      off += (size_t)rc;
      continue;
    }
    if (rc == -EAGAIN && left < RPC_FRAME_HEADER_SIZE) {
      CHECK(memcmp(&f, &untouched, sizeof f) == 0);
    } else if (rc == -EAGAIN) {
      check_header(p, &f);
      CHECK(left - RPC_FRAME_HEADER_SIZE < f.body_len && f.body_len <= max_body);
    } else if (rc == -EMSGSIZE) {
      CHECK(left >= RPC_FRAME_HEADER_SIZE);
      check_header(p, &f);
      CHECK(f.body_len > max_body);
      if (left - RPC_FRAME_HEADER_SIZE >= f.body_len) {
        off += RPC_FRAME_HEADER_SIZE + (size_t)f.body_len;
        continue;
      }
    } else {
      CHECK(rc == -EPROTO);
      CHECK(left >= RPC_FRAME_HEADER_SIZE);
      CHECK(memcmp(&f, &untouched, sizeof f) == 0);
      /* The header alone decides. */
      CHECK(rpc_frame_parse(p, RPC_FRAME_HEADER_SIZE, max_body, &f) == -EPROTO);
    }
    return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (size_t i = 0; i < sizeof max_bodies / sizeof max_bodies[0]; i++) {
    run_stream(data, size, max_bodies[i]);
  }
  return 0;
}
