/* The load generator of the RPC benchmarks: unary calls of gaio.bench.Echo/Say spoken as raw
 * frames (rpc/WIRE.md), so that one client measures the //rpc server and the raw frame echo
 * server alike (both answer byte-identically).
 *
 * Each request is a REQUEST frame with method_id = rpc_method_id("gaio.bench.Echo/Say"),
 * timeout_us 0 and body = the protobuf encoding of EchoMsg{payload = size bytes} (0x0a, varint
 * length, bytes; encoded here by hand). Every connection keeps --depth calls in flight: call slot
 * k of a connection uses request ids k, k + depth, k + 2 depth, ..., so the ids in flight are
 * distinct. Every RESPONSE is checked: status 0, a request id in flight, body equal to the
 * request's body (the payload is a per-call slice of a fixed pattern).
 *
 * --metadata N (0..64) sends N small headers with every REQUEST (rpc/WIRE.md section 13: flags
 * METADATA, the block before the message): `tenant: acme`, `x-request-id: <8 hex digits, new for
 * each call>`, then `x-md-<i>: v<i>`. The block is encoded once (rpc_metadata_encode()); each
 * call only writes its request id into it. A server that answers with trailers has them skipped;
 * the message after them is checked as usual. The raw frame echo does not speak metadata (it
 * would echo the block as part of the body): use --metadata against //rpc servers only.
 *
 * --tls DIR speaks TLS (OpenSSL, non-blocking, on the same sockets) to a "tls:" listener whose
 * certificate DIR/ca.pem signs (the chain is verified, the name is not). --handshakes (with
 * --tls) measures handshakes instead: one connection at a time, each doing a full handshake,
 * one call and a close, for the duration (like `openssl s_time -new`, plus the call).
 *
 * rpc_loadgen --port P [--host H] [--conns N] [--depth D] [--size S >= 1] [--duration S]
 *             [--warmup S] [--cpu C] [--timeout S] [--metadata N] [--tls DIR [--handshakes]]
 * Prints one line: mode=rpc|handshake conns= depth= size= metadata= duration_s= reqs= req_s=
 * p50_us= p99_us= p999_us= max_us= errors=; exits 0, 1 on an error (a wrong byte, a lost
 * connection), 2 on bad flags. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "rpc/frame.h"
#include "rpc/metadata.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/hist.h"

#define METHOD "gaio.bench.Echo/Say"
#define PAT_PERIOD 65521u        /* pattern period (prime) */
#define MAX_SIZE (1u << 20)      /* --size limit */
#define MAX_DEPTH 1024           /* --depth limit */
#define MAX_CONNS 4096           /* --conns limit */
#define BODY_PREFIX_MAX 6        /* 0x0a + a varint of up to 5 bytes */
#define READ_MIN (64u << 10)     /* per-connection read buffer, at least two frames */
#define MAX_EVENTS 256           /* events per epoll_wait */
#define POLL_MS 5                /* longest epoll_wait */
#define MAX_MD RPC_DEFAULT_MAX_METADATA_ENTRIES /* --metadata limit */
#define MD_BLOCK_MAX 2048        /* bytes of the encoded headers (64 small entries fit) */
#define RID_HEX 8                /* digits of x-request-id */
#define PATH_MAX_LEN 512         /* bytes of DIR/ca.pem */
#define TLS_READ_BUF (256u << 10) /* --tls: ciphertext bytes per read() at most */
#define TLS_RECORD_SLACK 64u     /* --tls: a record's bytes beyond its plaintext, at most */

typedef struct config {
  bench_addr addr;
  long conns, depth, size, cpu, metadata;
  double duration, warmup, timeout;
  const char *tls_dir; /* --tls: NULL for plaintext */
  int handshakes;      /* --handshakes */
} config;

typedef struct slot {
  uint32_t id;     /* request id of the call in flight in this slot */
  int busy;
  uint64_t t_send; /* when it was queued */
} slot;

typedef struct lconn {
  int fd;
  SSL *ssl; /* --tls: the session on fd */
  BIO *net; /* --tls (not --handshakes): the socket's side of a BIO pair, ssl on the other */
  slot *slots;
  uint8_t *out; /* frames not yet written: out[out_head..out_len) */
  size_t out_head, out_len, out_cap;
  uint8_t *in; /* bytes received, not yet parsed */
  size_t in_len, in_cap;
} lconn;

typedef struct lg {
  config cfg;
  int ep;
  SSL_CTX *tls;
  lconn *c;
  uint32_t method_id;
  size_t prefix_len; /* 0x0a + varint(size) */
  uint8_t prefix[BODY_PREFIX_MAX];
  size_t body_len, frame_len; /* body_len: the message (replies carry it alone) */
  uint8_t md_block[MD_BLOCK_MAX]; /* the encoded headers, sent before every message */
  size_t md_len;                  /* 0: no metadata */
  size_t rid_off;                 /* offset of x-request-id's value in md_block, if any */
  size_t req_body_len;            /* md_len + body_len */
  int running;
  uint64_t t0, t1, msgs;
  long errors;
  hist h;
} lg_t;

static unsigned char pat[PAT_PERIOD + MAX_SIZE];

static void pat_init(void) {
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < PAT_PERIOD; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
    pat[i] = (unsigned char)(x >> 24);
  }
  for (size_t i = PAT_PERIOD; i < sizeof(pat); i++) pat[i] = pat[i - PAT_PERIOD];
}

/* The payload of call id on connection ci: a slice of the pattern. */
static const unsigned char *payload_of(long ci, uint32_t id) {
  return pat + ((uint64_t)ci * 7919u + (uint64_t)id * 104729u) % PAT_PERIOD;
}

static void fail(lg_t *lg, long ci, const char *why, int err) {
  if (lg->errors++ < 5)
    fprintf(stderr, "rpc_loadgen: conn %ld: %s%s%s\n", ci, why, err ? ": " : "",
            err ? strerror(err) : "");
}

/* ---- Requests ---- */

static void put_hex(uint8_t *out, uint32_t v) {
  static const char digits[] = "0123456789abcdef";
  for (int i = RID_HEX - 1; i >= 0; i--, v >>= 4) out[i] = (uint8_t)digits[v & 15];
}

static void issue(lg_t *lg, long ci, slot *s, uint64_t now) {
  lconn *c = &lg->c[ci];
  if (c->out_head > 0 && c->out_len + lg->frame_len > c->out_cap) {
    memmove(c->out, c->out + c->out_head, c->out_len - c->out_head);
    c->out_len -= c->out_head;
    c->out_head = 0;
  }
  uint8_t *p = c->out + c->out_len;
  rpc_frame f = {.type = RPC_TYPE_REQUEST,
                 .flags = lg->md_len ? RPC_FLAG_METADATA : 0,
                 .request_id = s->id,
                 .method_id = lg->method_id,
                 .body_len = (uint32_t)lg->req_body_len};
  rpc_frame_encode(&f, p);
  uint8_t *b = p + RPC_FRAME_HEADER_SIZE;
  if (lg->md_len) {
    memcpy(b, lg->md_block, lg->md_len);
    if (lg->rid_off) put_hex(b + lg->rid_off, (uint32_t)ci << 20 ^ s->id);
    b += lg->md_len;
  }
  memcpy(b, lg->prefix, lg->prefix_len);
  memcpy(b + lg->prefix_len, payload_of(ci, s->id), (size_t)lg->cfg.size);
  c->out_len += lg->frame_len;
  s->busy = 1;
  s->t_send = now;
}

/* ---- The socket, plain or TLS: -1 means "not now" (EAGAIN, or an error already counted) ---- */

static ssize_t tls_result(lg_t *lg, long ci, int r, const char *what) {
  int e = SSL_get_error(lg->c[ci].ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  char why[200];
  snprintf(why, sizeof why, "TLS %s: %s", what, ERR_reason_error_string(ERR_get_error()));
  ERR_clear_error();
  fail(lg, ci, why, 0);
  return -2;
}

static ssize_t conn_write(lg_t *lg, long ci, const uint8_t *p, size_t len) {
  lconn *c = &lg->c[ci];
  if (c->ssl) {
    int r = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (r > 0) return r;
    (void)tls_result(lg, ci, r, "write");
    return -1;
  }
  ssize_t n = write(c->fd, p, len);
  if (n < 0 && errno != EAGAIN && errno != EINTR) fail(lg, ci, "write", errno);
  return n;
}

/* Returns the count, 0 at the end of the stream, or < 0 (nothing now, or failed). */
static ssize_t conn_read_some(lg_t *lg, long ci, uint8_t *p, size_t len) {
  lconn *c = &lg->c[ci];
  while (c->net) { /* plaintext, or else ciphertext from the socket into the pair */
    int r = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (r > 0) return r;
    if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) return tls_result(lg, ci, r, "read");
    char *room;
    int n = BIO_nwrite0(c->net, &room);
    if (n <= 0) return fail(lg, ci, "TLS read: the pair is full", 0), -2;
    ssize_t got = read(c->fd, room, (size_t)n);
    if (got == 0) return 0;
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return -1;
      fail(lg, ci, "read", errno);
      return -2;
    }
    BIO_nwrite(c->net, &room, (int)got);
  }
  if (c->ssl) {
    int r = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    return r > 0 ? r : tls_result(lg, ci, r, "read");
  }
  ssize_t n = read(c->fd, p, len);
  if (n < 0 && errno != EAGAIN && errno != EINTR) {
    fail(lg, ci, "read", errno);
    return -2;
  }
  return n;
}

/* --tls: write the records waiting in c->net. Returns 0 when all are written, -1 (EAGAIN:
 * EPOLLOUT will say when to go on, or an error counted). */
static int drain_records(lg_t *lg, long ci) {
  lconn *c = &lg->c[ci];
  char *p;
  int n;
  while ((n = BIO_nread0(c->net, &p)) > 0) {
    ssize_t w = write(c->fd, p, (size_t)n);
    if (w < 0) {
      if (errno != EAGAIN && errno != EINTR) fail(lg, ci, "write", errno);
      return -1;
    }
    BIO_nread(c->net, &p, (int)w);
  }
  return 0;
}

/* Write the frames queued. Over TLS (but --handshakes) they are all sealed into records first,
 * then written with as few write()s as the plaintext path: one record per write() would cost
 * the client a system call per 16 KiB that the plaintext client does not make. */
static void flush(lg_t *lg, long ci) {
  lconn *c = &lg->c[ci];
  if (c->net && drain_records(lg, ci) < 0) return;
  while (c->out_head < c->out_len) {
    ssize_t n = conn_write(lg, ci, c->out + c->out_head, c->out_len - c->out_head);
    if (n < 0) {
      /* The pair is full (it should not be): write some records out, then go on. */
      if (c->net && BIO_ctrl_pending(c->net) > 0 && drain_records(lg, ci) == 0) continue;
      return;
    }
    c->out_head += (size_t)n;
  }
  c->out_head = c->out_len = 0;
  if (c->net) (void)drain_records(lg, ci);
}

/* ---- Responses ---- */

static int check_response(lg_t *lg, long ci, const rpc_frame *f, slot **out) {
  lconn *c = &lg->c[ci];
  if (f->type != RPC_TYPE_RESPONSE) return fail(lg, ci, "a frame other than RESPONSE", 0), -1;
  if (f->status != RPC_STATUS_OK) {
    char why[160];
    snprintf(why, sizeof why, "status %s: %.*s", rpc_status_name(f->status),
             (int)(f->body_len < 100 ? f->body_len : 100), (const char *)f->body);
    return fail(lg, ci, why, 0), -1;
  }
  slot *s = &c->slots[f->request_id % (uint32_t)lg->cfg.depth];
  if (!s->busy || s->id != f->request_id) return fail(lg, ci, "unknown request id", 0), -1;
  const uint8_t *body = f->body;
  size_t len = f->body_len;
  if (f->flags & RPC_FLAG_METADATA) { /* trailers: skip them */
    rpc_metadata md;
    long n = rpc_metadata_parse(body, len, len, RPC_DEFAULT_MAX_METADATA_ENTRIES, &md);
    if (n < 0) return fail(lg, ci, "malformed trailers", 0), -1;
    body += n;
    len -= (size_t)n;
  }
  if (len != lg->body_len || memcmp(body, lg->prefix, lg->prefix_len) != 0 ||
      memcmp(body + lg->prefix_len, payload_of(ci, s->id), (size_t)lg->cfg.size) != 0)
    return fail(lg, ci, "reply body differs from the request body", 0), -1;
  *out = s;
  return 0;
}

static int on_frames(lg_t *lg, long ci, uint64_t now) {
  lconn *c = &lg->c[ci];
  size_t pos = 0;
  rpc_frame f;
  for (;;) {
    int n = rpc_frame_parse(c->in + pos, c->in_len - pos, lg->body_len + MD_BLOCK_MAX, &f);
    if (n == -EAGAIN) break;
    if (n < 0) return fail(lg, ci, "malformed or oversized frame", 0), -1;
    slot *s;
    if (check_response(lg, ci, &f, &s) != 0) return -1;
    pos += (size_t)n;
    s->busy = 0;
    if (now >= lg->t0 && now < lg->t1) {
      hist_add(&lg->h, now - s->t_send);
      lg->msgs++;
    }
    if (lg->running) {
      s->id += (uint32_t)lg->cfg.depth;
      issue(lg, ci, s, now);
    }
  }
  memmove(c->in, c->in + pos, c->in_len - pos);
  c->in_len -= pos;
  return 0;
}

static void on_readable(lg_t *lg, long ci) {
  lconn *c = &lg->c[ci];
  for (;;) {
    ssize_t n = conn_read_some(lg, ci, c->in + c->in_len, c->in_cap - c->in_len);
    if (n == 0) return fail(lg, ci, "closed by the server", 0);
    if (n < 0) break;
    c->in_len += (size_t)n;
    if (on_frames(lg, ci, bench_now_ns()) != 0) return;
  }
  flush(lg, ci);
}

/* ---- Setup ---- */

/* The TLS settings: trust DIR/ca.pem, verify the chain (not the name: 127.0.0.1). */
static int tls_init(lg_t *lg) {
  char ca[PATH_MAX_LEN];
  snprintf(ca, sizeof ca, "%s/ca.pem", lg->cfg.tls_dir);
  static const unsigned char alpn[] = "\x08gaio-rpc";
  lg->tls = SSL_CTX_new(TLS_client_method());
  if (!lg->tls || SSL_CTX_load_verify_locations(lg->tls, ca, NULL) != 1 ||
      SSL_CTX_set_alpn_protos(lg->tls, alpn, sizeof alpn - 1) != 0) {
    fprintf(stderr, "rpc_loadgen: TLS setup with %s: %s\n", ca,
            ERR_reason_error_string(ERR_get_error()));
    return -1;
  }
  SSL_CTX_set_verify(lg->tls, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_read_ahead(lg->tls, 1); /* --handshakes: whole socket reads */
  /* A buffer of frames is written record by record and may move between tries (issue()). */
  SSL_CTX_set_mode(lg->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return 0;
}

/* A full handshake on c's blocking socket. */
static int tls_connect(lg_t *lg, lconn *c) {
  c->ssl = SSL_new(lg->tls);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1) {
    fprintf(stderr, "rpc_loadgen: TLS handshake: %s\n", ERR_reason_error_string(ERR_get_error()));
    return -1;
  }
  return 0;
}

static int conn_open(lg_t *lg, long ci) {
  lconn *c = &lg->c[ci];
  struct sockaddr_storage ss;
  int len = bench_sockaddr(&lg->cfg.addr, &ss);
  if (len < 0) return len;
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -errno;
  if (connect(c->fd, (struct sockaddr *)&ss, (socklen_t)len) != 0) return -errno;
  bench_nodelay(c->fd);
  if (lg->tls && tls_connect(lg, c) != 0) return -EPROTO; /* blocking, before the run */
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  c->slots = calloc((size_t)lg->cfg.depth, sizeof(slot));
  c->out_cap = (size_t)lg->cfg.depth * lg->frame_len;
  if (lg->tls) {
    /* After the handshake the session runs on a BIO pair, the socket being read and written
     * here, like the plaintext path: records are written in large write()s (the pair holds
     * all the frames of a flush, so SSL_write() never waits), and read TLS_READ_BUF bytes at
     * a time. OpenSSL's own read-ahead is off: with a large buffer it moves the unread rest
     * to the buffer's start at every record, which costs more than the records. */
    size_t wpair = c->out_cap + (c->out_cap / 16384u + (size_t)lg->cfg.depth + 1) * TLS_RECORD_SLACK;
    BIO *inner;
    if (BIO_new_bio_pair(&inner, wpair, &c->net, TLS_READ_BUF) != 1) return -ENOMEM;
    SSL_set_bio(c->ssl, inner, inner);
    SSL_set_read_ahead(c->ssl, 0);
  }
  c->out = malloc(c->out_cap);
  c->in_cap = 2 * lg->frame_len > READ_MIN ? 2 * lg->frame_len : READ_MIN;
  c->in = malloc(c->in_cap);
  if (c->slots == NULL || c->out == NULL || c->in == NULL) return -ENOMEM;
  for (long k = 0; k < lg->cfg.depth; k++) c->slots[k].id = (uint32_t)k;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)ci};
  return epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev) == 0 ? 0 : -errno;
}

static void encode_prefix(lg_t *lg) {
  uint64_t v = (uint64_t)lg->cfg.size;
  lg->prefix[0] = 0x0a; /* field 1, wire type 2 (length-delimited) */
  lg->prefix_len = 1;
  do {
    uint8_t b = (uint8_t)(v & 0x7f);
    v >>= 7;
    lg->prefix[lg->prefix_len++] = v ? (uint8_t)(b | 0x80) : b;
  } while (v);
  lg->body_len = lg->prefix_len + (size_t)lg->cfg.size;
  lg->req_body_len = lg->md_len + lg->body_len;
  lg->frame_len = RPC_FRAME_HEADER_SIZE + lg->req_body_len;
}

/* The --metadata headers, encoded once; x-request-id's value is rewritten by each call. */
static int encode_metadata(lg_t *lg) {
  long n = lg->cfg.metadata;
  if (n == 0) return 0;
  static char keys[MAX_MD][16], values[MAX_MD][16];
  rpc_md e[MAX_MD];
  for (long i = 0; i < n; i++) {
    if (i == 0) {
      snprintf(keys[i], sizeof keys[i], "tenant");
      snprintf(values[i], sizeof values[i], "acme");
    } else if (i == 1) {
      snprintf(keys[i], sizeof keys[i], "x-request-id");
      snprintf(values[i], sizeof values[i], "%0*d", RID_HEX, 0);
    } else {
      snprintf(keys[i], sizeof keys[i], "x-md-%ld", i);
      snprintf(values[i], sizeof values[i], "v%ld", i);
    }
    e[i] = (rpc_md){keys[i], strlen(keys[i]), values[i], strlen(values[i])};
  }
  long len = rpc_metadata_encode(e, (size_t)n, lg->md_block, sizeof lg->md_block);
  if (len < 0) return (int)len;
  lg->md_len = (size_t)len;
  /* Entries follow the prefix in order: x-request-id's value ends entry 1. */
  if (n >= 2)
    lg->rid_off = RPC_METADATA_PREFIX + RPC_METADATA_ENTRY_HEADER + strlen(keys[0]) +
                  strlen(values[0]) + RPC_METADATA_ENTRY_HEADER + strlen(keys[1]);
  return 0;
}

/* --handshakes: one connection, a full handshake, one call, the end; measured from connect(). */
static int one_handshake(lg_t *lg, uint32_t id) {
  lconn *c = &lg->c[0];
  struct sockaddr_storage ss;
  int len = bench_sockaddr(&lg->cfg.addr, &ss);
  uint64_t start = bench_now_ns();
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (len < 0 || c->fd < 0 || connect(c->fd, (struct sockaddr *)&ss, (socklen_t)len) != 0)
    return fail(lg, 0, "connect", errno), -1;
  bench_nodelay(c->fd);
  int rc = tls_connect(lg, c);
  if (rc == 0) {
    c->slots[0].id = id;
    issue(lg, 0, &c->slots[0], start);
    flush(lg, 0); /* a blocking socket: all of it */
    c->in_len = 0;
    while (rc == 0 && c->slots[0].busy) {
      ssize_t n = conn_read_some(lg, 0, c->in + c->in_len, c->in_cap - c->in_len);
      if (n <= 0) {
        fail(lg, 0, "no reply", 0);
        rc = -1;
      } else {
        c->in_len += (size_t)n;
        rc = on_frames(lg, 0, bench_now_ns());
      }
    }
  } else {
    lg->errors++;
  }
  SSL_free(c->ssl); /* no close_notify, like s_time: the socket just closes */
  c->ssl = NULL;
  close(c->fd);
  return rc;
}

static int run_handshakes(lg_t *lg) {
  lconn *c = &lg->c[0];
  c->slots = calloc(1, sizeof(slot));
  c->out_cap = lg->frame_len;
  c->out = malloc(c->out_cap);
  c->in_cap = 2 * lg->frame_len > READ_MIN ? 2 * lg->frame_len : READ_MIN;
  c->in = malloc(c->in_cap);
  if (c->slots == NULL || c->out == NULL || c->in == NULL) return 1;
  uint64_t start = bench_now_ns();
  lg->t0 = start + (uint64_t)(lg->cfg.warmup * 1e9);
  lg->t1 = lg->t0 + (uint64_t)(lg->cfg.duration * 1e9);
  lg->running = 0; /* on_frames() issues no next call */
  for (uint32_t id = 1; lg->errors == 0 && bench_now_ns() < lg->t1; id++) one_handshake(lg, id);
  return 0;
}

static int report(lg_t *lg);

static int run(lg_t *lg) {
  lg->ep = epoll_create1(EPOLL_CLOEXEC);
  lg->c = calloc((size_t)lg->cfg.conns, sizeof(lconn));
  if (lg->ep < 0 || lg->c == NULL) return 1;
  if (lg->cfg.handshakes) return run_handshakes(lg) == 0 ? report(lg) : 1;
  for (long i = 0; i < lg->cfg.conns; i++) {
    int rc = conn_open(lg, i);
    if (rc != 0) {
      fprintf(stderr, "rpc_loadgen: connection %ld: %s\n", i, strerror(-rc));
      return 1;
    }
  }
  uint64_t start = bench_now_ns();
  lg->t0 = start + (uint64_t)(lg->cfg.warmup * 1e9);
  lg->t1 = lg->t0 + (uint64_t)(lg->cfg.duration * 1e9);
  uint64_t deadline = lg->t1 + (uint64_t)(lg->cfg.timeout * 1e9);
  lg->running = 1;
  for (long i = 0; i < lg->cfg.conns; i++) {
    for (long k = 0; k < lg->cfg.depth; k++) issue(lg, i, &lg->c[i].slots[k], start);
    flush(lg, i);
  }
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    uint64_t now = bench_now_ns();
    if (now >= lg->t1) lg->running = 0;
    if (lg->errors != 0 || (!lg->running && now >= deadline)) break;
    if (!lg->running) break; /* the window is over: what is still in flight is not counted */
    int n = epoll_wait(lg->ep, evs, MAX_EVENTS, POLL_MS);
    for (int e = 0; e < n; e++) {
      long ci = (long)evs[e].data.u64;
      if (evs[e].events & EPOLLOUT) flush(lg, ci);
      if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(lg, ci);
    }
  }
  return report(lg);
}

static int report(lg_t *lg) {
  double secs = lg->cfg.duration;
  printf("mode=%s conns=%ld depth=%ld size=%ld metadata=%ld duration_s=%.3f reqs=%llu "
         "req_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f errors=%ld\n",
         lg->cfg.handshakes ? "handshake" : "rpc", lg->cfg.conns, lg->cfg.depth, lg->cfg.size,
         lg->cfg.metadata, secs,
         (unsigned long long)lg->msgs,
         (double)lg->msgs / secs, (double)hist_quantile(&lg->h, 0.5) / 1e3,
         (double)hist_quantile(&lg->h, 0.99) / 1e3, (double)hist_quantile(&lg->h, 0.999) / 1e3,
         (double)lg->h.max / 1e3, lg->errors);
  return lg->errors == 0 && lg->msgs > 0 ? 0 : 1;
}

static int parse_args(config *cfg, int argc, char **argv) {
  struct {
    const char *name;
    long *out;
    long min, max;
  } longs[] = {{"--conns", &cfg->conns, 1, MAX_CONNS},
               {"--depth", &cfg->depth, 1, MAX_DEPTH},
               {"--size", &cfg->size, 1, MAX_SIZE},
               {"--cpu", &cfg->cpu, 0, CPU_SETSIZE - 1},
               {"--metadata", &cfg->metadata, 0, MAX_MD}};
  struct {
    const char *name;
    double *out;
  } secs[] = {{"--duration", &cfg->duration}, {"--warmup", &cfg->warmup}, {"--timeout", &cfg->timeout}};
  for (int i = 1; i < argc; i++) {
    int rc = bench_addr_flag(&cfg->addr, argc, argv, &i), found = rc != 0;
    if (rc < 0) return rc;
    if (found) continue;
    if (strcmp(argv[i], "--handshakes") == 0) {
      cfg->handshakes = 1;
      continue;
    }
    const char *flag = argv[i], *v = bench_flag_value(argc, argv, &i);
    if (v == NULL) return -EINVAL;
    if (strcmp(flag, "--tls") == 0) {
      cfg->tls_dir = v;
      continue;
    }
    for (size_t k = 0; !found && k < sizeof(longs) / sizeof(longs[0]); k++) {
      if (strcmp(flag, longs[k].name) != 0) continue;
      if (bench_parse_long(flag, v, longs[k].min, longs[k].max, longs[k].out) != 0) return -EINVAL;
      found = 1;
    }
    for (size_t k = 0; !found && k < sizeof(secs) / sizeof(secs[0]); k++) {
      if (strcmp(flag, secs[k].name) != 0) continue;
      if (bench_parse_seconds(flag, v, secs[k].out) != 0) return -EINVAL;
      found = 1;
    }
    if (!found) {
      fprintf(stderr, "rpc_loadgen: unknown flag %s (see the top of rpc_loadgen.c)\n", flag);
      return -EINVAL;
    }
  }
  if (cfg->addr.port == 0 || cfg->addr.unix_path != NULL) {
    fprintf(stderr, "rpc_loadgen: give --port P (TCP)\n");
    return -EINVAL;
  }
  if (cfg->handshakes && !cfg->tls_dir) {
    fprintf(stderr, "rpc_loadgen: --handshakes needs --tls DIR\n");
    return -EINVAL;
  }
  if (cfg->handshakes) cfg->conns = cfg->depth = 1;
  if (cfg->duration <= 0.0) cfg->duration = 0.001;
  return 0;
}

_Static_assert(MAX_MD == 64, "the --metadata usage line says 0..64");
static const char *const flags[] = {
    "--conns N         connections (default 1)",
    "--depth D         calls in flight per connection (default 1)",
    "--size S          payload bytes per call, at least 1 (default 64)",
    "--duration SEC    measured time (default 3)",
    "--warmup SEC      time before measuring (default 1)",
    "--timeout SEC     give up after this long past the end (default 30)",
    "--cpu C           pin this process to CPU C (default: not pinned)",
    "--metadata N      headers sent with every call, 0..64 (default 0)",
    "--host H          the server's address (default 127.0.0.1)",
    BENCH_USAGE_SERVER_PORT, NULL};
static const ex_usage usage = {"--port P [--host H] [--conns N] [--depth D] [--size S] [...]",
                               flags};

int main(int argc, char **argv) {
  ex_help_if_asked(argc, argv, &usage);
  static lg_t lg;
  lg.cfg = (config){.conns = 1, .depth = 1, .size = 64, .cpu = -1, .duration = 3.0,
                    .warmup = 1.0, .timeout = 30.0};
  if (parse_args(&lg.cfg, argc, argv) != 0) ex_usage_exit(&usage, 2);
  signal(SIGPIPE, SIG_IGN);
  if (lg.cfg.cpu >= 0 && bench_pin_cpu((int)lg.cfg.cpu) != 0) return 1;
  pat_init();
  hist_reset(&lg.h);
  lg.method_id = rpc_method_id(METHOD, strlen(METHOD));
  if (encode_metadata(&lg) != 0) return 1;
  if (lg.cfg.tls_dir && tls_init(&lg) != 0) return 1;
  encode_prefix(&lg);
  return run(&lg);
}
