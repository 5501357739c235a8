/* The TLS transport (transport.h): OpenSSL 3 on two BIOs of our own over the session's
 * buffers. gaio reads ciphertext straight into the session's input buffer, which the read BIO
 * hands to OpenSSL; the write BIO appends OpenSSL's records to a buffer that is then written
 * with gaio as it is (no memory BIO to copy in or out of). OpenSSL never touches the socket,
 * so a handshake is a few steps of the same completion batches as everything else. Kernel TLS
 * is not used: the record layer stays in user space (the kernels this was tested on have no
 * CONFIG_TLS). */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "rpc/transport.h"

#define RPC__TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* RPC_TLS_ALPN as an ALPN protocol list: a length byte, then the name. */
static const unsigned char alpn_list[] = "\x08" RPC_TLS_ALPN;

struct rpc__tls_ctx {
  SSL_CTX *ssl;
  int server;
  int handshake_ms;
  unsigned max_handshakes;
  atomic_uint handshakes; /* server sessions whose handshake is in progress */
  const char *server_name; /* client: the options' name (a copy), or NULL */
  int skip_name_check;
  atomic_ulong refusals;
  pthread_mutex_t mu; /* guards last_refusal */
  char last_refusal[RPC__TLS_ERROR_MAX];
};

struct rpc__tls {
  SSL *ssl;
  rpc__tls_ctx *x;
  int ready;
  int failed;
  int counted; /* counts in x->handshakes */
  int closed;  /* our close_notify is queued: nothing more is sent */
  char *subject;
  char *sans[RPC_MAX_PEER_SANS];
  unsigned nsans;
  char err[RPC__TLS_ERROR_MAX];
  /* Ciphertext read and not yet taken by OpenSSL: in[head, tail). A read that fills the room
   * it was given doubles the buffer (up to RPC__TLS_READ_MAX): a busy connection then reads
   * many records per read instead of one. */
  uint8_t *in;
  size_t in_cap, head, tail, offered, last;
  rpc__wbuf *out;   /* records to send, appended by the write BIO; NULL: none */
  rpc__wbuf *spare; /* a written buffer of records kept for the next ones (rpc__tls_recycle) */
};

/* ---- Settings ---------------------------------------------------------------------------- */

/* A file that cannot be opened is -ENOENT; one that opens and does not load is -EBADMSG. */
static int file_error(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -ENOENT;
  fclose(f);
  return -EBADMSG;
}

/* The certificate (and the chain after it) and key, from files or PEM text. */
static int load_identity(SSL_CTX *ctx, const char *cert_file, const char *cert_pem,
                         const char *key_file, const char *key_pem) {
  if (cert_file) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) return file_error(cert_file);
  } else {
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    if (!b) return -ENOMEM;
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    int ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
    X509_free(leaf);
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
      if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
        X509_free(extra);
        ok = 0;
      }
    BIO_free(b);
    if (!ok) return -EBADMSG;
  }
  if (key_file) {
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) return file_error(key_file);
  } else {
    BIO *b = BIO_new_mem_buf(key_pem, -1);
    if (!b) return -ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
    EVP_PKEY_free(k);
    BIO_free(b);
    if (!ok) return -EBADMSG;
  }
  return SSL_CTX_check_private_key(ctx) == 1 ? 0 : -EBADMSG;
}

/* Trusted CAs from a file or PEM text (every certificate in it). */
static int load_cas(SSL_CTX *ctx, const char *file, const char *pem) {
  if (file) return SSL_CTX_load_verify_locations(ctx, file, NULL) == 1 ? 0 : file_error(file);
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b) return -ENOMEM;
  X509_STORE *st = SSL_CTX_get_cert_store(ctx);
  X509 *c;
  int n = 0;
  while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    n += X509_STORE_add_cert(st, c) == 1;
    X509_free(c);
  }
  BIO_free(b);
  ERR_clear_error(); /* the end of the text reads as an error */
  return n > 0 ? 0 : -EBADMSG;
}

/* Server: choose RPC_TLS_ALPN, or refuse a client that offers ALPN without it. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  unsigned char *o = NULL;
  if (SSL_select_next_proto(&o, outlen, alpn_list, sizeof alpn_list - 1, in, inlen) ==
          OPENSSL_NPN_NEGOTIATED &&
      *outlen == sizeof alpn_list - 2 && memcmp(o, RPC_TLS_ALPN, *outlen) == 0) {
    *out = o;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int ctx_new(rpc__tls_ctx **out, int server) {
  rpc__tls_ctx *x = gaio__calloc(1, sizeof *x);
  if (!x) return -ENOMEM;
  x->server = server;
  pthread_mutex_init(&x->mu, NULL);
  x->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!x->ssl) {
    rpc__tls_ctx_free(x);
    return -ENOMEM;
  }
  SSL_CTX_set_min_proto_version(x->ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(x->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  *out = x;
  return 0;
}

int rpc__tls_server_ctx(rpc__tls_ctx **out, const rpc_tls_server_options *o) {
  *out = NULL;
  if ((!o->cert_file && !o->cert_pem) || (!o->key_file && !o->key_pem) ||
      o->client_cert < RPC_TLS_CLIENT_CERT_NONE || o->client_cert > RPC_TLS_CLIENT_CERT_REQUIRED ||
      (o->client_cert != RPC_TLS_CLIENT_CERT_NONE && !o->client_ca_file && !o->client_ca_pem) ||
      o->handshake_timeout_ms < 0)
    return -EINVAL;
  rpc__tls_ctx *x;
  int rc = ctx_new(&x, 1);
  if (rc < 0) return rc;
  x->handshake_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : RPC_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;
  x->max_handshakes = o->max_handshakes ? o->max_handshakes : RPC_DEFAULT_MAX_TLS_HANDSHAKES;
  rc = load_identity(x->ssl, o->cert_file, o->cert_pem, o->key_file, o->key_pem);
  if (rc == 0 && o->client_cert != RPC_TLS_CLIENT_CERT_NONE) {
    rc = load_cas(x->ssl, o->client_ca_file, o->client_ca_pem);
    int mode = SSL_VERIFY_PEER;
    if (o->client_cert == RPC_TLS_CLIENT_CERT_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(x->ssl, mode, NULL);
  }
  /* TLS 1.3: AES-128-GCM first (as strong as needed, and ~8% less work per byte than
   * AES-256-GCM with AES-NI here), then OpenSSL's other defaults. */
  if (rc == 0 && SSL_CTX_set_ciphersuites(x->ssl, RPC__TLS13_SUITES) != 1) rc = -ENOMEM;
  /* No session tickets: clients do not resume, and a ticket is bytes and work per handshake. */
  SSL_CTX_set_num_tickets(x->ssl, 0);
  SSL_CTX_set_alpn_select_cb(x->ssl, alpn_select, NULL);
  ERR_clear_error();
  if (rc < 0) {
    rpc__tls_ctx_free(x);
    return rc;
  }
  *out = x;
  return 0;
}

int rpc__tls_client_ctx(rpc__tls_ctx **out, const rpc_tls_client_options *o) {
  static const rpc_tls_client_options none;
  *out = NULL;
  if (!o) o = &none;
  if ((o->cert_file || o->cert_pem) != (o->key_file || o->key_pem)) return -EINVAL;
  rpc__tls_ctx *x;
  int rc = ctx_new(&x, 0);
  if (rc < 0) return rc;
  x->skip_name_check = o->skip_name_check;
  if (o->server_name && (x->server_name = strdup(o->server_name)) == NULL) rc = -ENOMEM;
  if (rc == 0 && (o->ca_file || o->ca_pem)) rc = load_cas(x->ssl, o->ca_file, o->ca_pem);
  else if (rc == 0 && SSL_CTX_set_default_verify_paths(x->ssl) != 1) rc = -EBADMSG;
  if (rc == 0 && (o->cert_file || o->cert_pem))
    rc = load_identity(x->ssl, o->cert_file, o->cert_pem, o->key_file, o->key_pem);
  SSL_CTX_set_verify(x->ssl, SSL_VERIFY_PEER, NULL);
  if (rc == 0 && SSL_CTX_set_alpn_protos(x->ssl, alpn_list, sizeof alpn_list - 1) != 0) rc = -ENOMEM;
  ERR_clear_error();
  if (rc < 0) {
    rpc__tls_ctx_free(x);
    return rc;
  }
  *out = x;
  return 0;
}

void rpc__tls_ctx_free(rpc__tls_ctx *x) {
  if (!x) return;
  SSL_CTX_free(x->ssl);
  free((char *)x->server_name);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

int rpc__tls_ctx_handshake_ms(const rpc__tls_ctx *x) { return x->handshake_ms; }

void rpc__tls_ctx_refused(rpc__tls_ctx *x, const char *why) {
  atomic_fetch_add(&x->refusals, 1);
  pthread_mutex_lock(&x->mu);
  snprintf(x->last_refusal, sizeof x->last_refusal, "%s", why);
  pthread_mutex_unlock(&x->mu);
}

unsigned long rpc__tls_ctx_refusals(rpc__tls_ctx *x, char *why, size_t why_len) {
  if (why && why_len) {
    pthread_mutex_lock(&x->mu);
    snprintf(why, why_len, "%s", x->last_refusal);
    pthread_mutex_unlock(&x->mu);
  }
  return atomic_load(&x->refusals);
}

/* ---- Sessions ---------------------------------------------------------------------------- */

static int is_ip(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Client: the name to check (a DNS name, or an IP address against the IP SANs) and SNI. */
static int client_names(SSL *ssl, const rpc__tls_ctx *x, const char *host) {
  const char *name = x->server_name ? x->server_name : host;
  if (!name || !*name) return 0;
  if (is_ip(name)) {
    if (!x->skip_name_check && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1)
      return -ENOMEM;
    return 0;
  }
  if (SSL_set_tlsext_host_name(ssl, name) != 1) return -ENOMEM;
  if (!x->skip_name_check && SSL_set1_host(ssl, name) != 1) return -ENOMEM;
  return 0;
}

/* ---- The BIOs: the session's buffers, no copy through a memory BIO ------------------------ */

#define OUT_RECORD_SLACK 64u /* bound on a record's bytes beyond its plaintext (header, tag) */
#define OUT_MIN (4u * 1024u)  /* first size of a buffer of records with no plaintext yet */

/* Room for n more bytes in t->out. Returns 0 or -ENOMEM. */
static int out_room(rpc__tls *t, size_t n) {
  if (!t->out && t->spare) { /* its pages are mapped already: no fault per byte */
    t->out = t->spare;
    t->spare = NULL;
    t->out->len = 0;
    t->out->coalesced = 0;
    t->out->conn = NULL;
  }
  rpc__wbuf *b = t->out;
  size_t len = b ? b->len : 0;
  if (b && b->cap - len >= n) return 0;
  size_t cap = b ? b->cap : 0;
  if (cap < OUT_MIN) cap = OUT_MIN;
  while (cap - len < n) cap *= 2;
  rpc__wbuf *nb = gaio__realloc(b, sizeof *nb + cap);
  if (!nb) return -ENOMEM;
  if (!b) {
    nb->kind = RPC__CTX_WRITE;
    nb->coalesced = 0;
    nb->conn = NULL;
    nb->len = 0;
  }
  nb->cap = cap;
  t->out = nb;
  return 0;
}

static int bio_write(BIO *bio, const char *p, int n) {
  rpc__tls *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  if (n <= 0) return 0;
  if (out_room(t, (size_t)n) < 0) return -1; /* SSL_write fails: the session fails */
  memcpy(t->out->data + t->out->len, p, (size_t)n);
  t->out->len += (size_t)n;
  return n;
}

static int bio_read(BIO *bio, char *p, int n) {
  rpc__tls *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  size_t k = t->tail - t->head;
  if (k == 0) {
    BIO_set_retry_read(bio); /* more to come, not the end of the stream */
    return -1;
  }
  if (n <= 0) return 0;
  if (k > (size_t)n) k = (size_t)n;
  memcpy(p, t->in + t->head, k);
  t->head += k;
  return (int)k;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  rpc__tls *t = BIO_get_data(bio);
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return t ? (long)(t->tail - t->head) : 0;
    default: return 0;
  }
}

static BIO_METHOD *bio_method;

static void bio_method_make(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gaio-rpc");
  if (m && (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
            BIO_meth_set_ctrl(m, bio_ctrl) != 1)) {
    BIO_meth_free(m);
    m = NULL;
  }
  bio_method = m; /* kept for the life of the process */
}

/* A BIO over t's buffers, or NULL (-ENOMEM). */
static BIO *bio_new(rpc__tls *t) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, bio_method_make);
  BIO *b = bio_method ? BIO_new(bio_method) : NULL;
  if (b) {
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
  }
  return b;
}

int rpc__tls_new(rpc__tls **out, rpc__tls_ctx *x, const char *host) {
  *out = NULL;
  if (x->server && atomic_fetch_add(&x->handshakes, 1) >= x->max_handshakes) {
    atomic_fetch_sub(&x->handshakes, 1);
    return -EBUSY;
  }
  rpc__tls *t = gaio__calloc(1, sizeof *t);
  BIO *rb = NULL, *wb = NULL;
  if (t) {
    t->x = x;
    t->counted = x->server;
    t->ssl = SSL_new(x->ssl);
    t->in_cap = RPC__TLS_READ_CHUNK;
    t->in = gaio__malloc(t->in_cap);
    rb = bio_new(t);
    wb = bio_new(t);
  }
  if (!t || !t->ssl || !t->in || !rb || !wb) {
    BIO_free(rb);
    BIO_free(wb);
    goto fail;
  }
  SSL_set_bio(t->ssl, rb, wb); /* the session owns them from here */
  if (x->server) SSL_set_accept_state(t->ssl);
  else SSL_set_connect_state(t->ssl);
  if (!x->server && client_names(t->ssl, x, host) < 0) goto fail;
  *out = t;
  return 0;
fail:
  if (t) {
    SSL_free(t->ssl);
    free(t->in);
    free(t);
  }
  if (x->server) atomic_fetch_sub(&x->handshakes, 1);
  ERR_clear_error();
  return -ENOMEM;
}

static void uncount(rpc__tls *t) {
  if (!t->counted) return;
  t->counted = 0;
  atomic_fetch_sub(&t->x->handshakes, 1);
}

void rpc__tls_free(rpc__tls *t) {
  if (!t) return;
  uncount(t);
  SSL_free(t->ssl);
  free(t->in);
  free(t->out);
  free(t->spare);
  free(t->subject);
  for (unsigned i = 0; i < t->nsans; i++) free(t->sans[i]);
  free(t);
}

uint8_t *rpc__tls_rbuf(rpc__tls *t, size_t *len) {
  if (t->head == t->tail) t->head = t->tail = 0;
  if (t->last == t->offered && t->last > 0 && t->in_cap < RPC__TLS_READ_MAX) {
    /* The last read filled its room: more was probably waiting. */
    size_t cap = 2 * t->in_cap < RPC__TLS_READ_MAX ? 2 * t->in_cap : RPC__TLS_READ_MAX;
    uint8_t *p = gaio__realloc(t->in, cap);
    if (p) {
      t->in = p;
      t->in_cap = cap;
    }
  } else if (t->tail == 0 && t->in_cap > RPC__TLS_READ_CHUNK && t->last < RPC__TLS_READ_CHUNK) {
    /* A small read, all of it consumed: back to the first size, so that a connection gone
     * quiet does not keep RPC__TLS_READ_MAX bytes. */
    uint8_t *p = gaio__realloc(t->in, RPC__TLS_READ_CHUNK);
    if (p) {
      t->in = p;
      t->in_cap = RPC__TLS_READ_CHUNK;
    }
  }
  t->last = 0;
  if (t->head > 0 && t->in_cap - t->tail < RPC__TLS_READ_CHUNK) { /* keep room for a record */
    memmove(t->in, t->in + t->head, t->tail - t->head);
    t->tail -= t->head;
    t->head = 0;
  }
  *len = t->offered = t->in_cap - t->tail;
  return t->in + t->tail;
}

/* Fail the session with OpenSSL's reason and, when the certificate did not verify, the
 * verification's own ("certificate verify failed: certificate has expired"). */
static int fail(rpc__tls *t, const char *what, int ssl_error) {
  t->failed = 1;
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  if (!reason) reason = ssl_error == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "error";
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK)
    snprintf(t->err, sizeof t->err, "%s: %s: %s", what, reason, X509_verify_cert_error_string(v));
  else
    snprintf(t->err, sizeof t->err, "%s: %s", what, reason);
  ERR_clear_error();
  return -EPROTO;
}

/* The peer certificate's subject and subjectAltNames, kept for rpc__tls_peer(). */
static void take_identity(rpc__tls *t) {
  X509 *cert = SSL_get0_peer_certificate(t->ssl);
  if (!cert || SSL_get_verify_result(t->ssl) != X509_V_OK) return;
  BIO *b = BIO_new(BIO_s_mem());
  if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n >= 0 && (t->subject = gaio__malloc((size_t)n + 1)) != NULL) {
      memcpy(t->subject, p, (size_t)n);
      t->subject[n] = 0;
    }
  }
  BIO_free(b);
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && t->nsans < RPC_MAX_PEER_SANS; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    char buf[512];
    const ASN1_STRING *s = NULL;
    const char *kind = NULL;
    if (g->type == GEN_DNS) kind = "DNS", s = g->d.dNSName;
    else if (g->type == GEN_URI) kind = "URI", s = g->d.uniformResourceIdentifier;
    else if (g->type == GEN_EMAIL) kind = "email", s = g->d.rfc822Name;
    if (s) {
      snprintf(buf, sizeof buf, "%s:%.*s", kind, ASN1_STRING_length(s),
               (const char *)ASN1_STRING_get0_data(s));
    } else if (g->type == GEN_IPADD) {
      char ip[INET6_ADDRSTRLEN] = "?";
      int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
      if (len == 4 || len == 16) inet_ntop(len == 4 ? AF_INET : AF_INET6, d, ip, sizeof ip);
      snprintf(buf, sizeof buf, "IP:%s", ip);
    } else {
      continue;
    }
    if ((t->sans[t->nsans] = strdup(buf)) != NULL) t->nsans++;
  }
  GENERAL_NAMES_free(names);
}

/* Move the handshake on. Returns 1 when it is done, 0 when it waits for the peer, -EPROTO. */
static int handshake(rpc__tls *t) {
  if (t->ready) return 1;
  if (t->failed) return -EPROTO;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->ready = 1;
    uncount(t);
    take_identity(t);
    return 1;
  }
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  return fail(t, "TLS handshake failed", e);
}

int rpc__tls_feed(rpc__tls *t, size_t n) {
  if (t->failed) return -EPROTO;
  assert(n <= t->in_cap - t->tail);
  t->tail += n;
  t->last = n;
  if (t->ready) return 0;
  return handshake(t);
}

long rpc__tls_recv(rpc__tls *t, uint8_t *p, size_t len) {
  if (t->failed) return -EPROTO;
  if (!t->ready || len == 0) return 0;
  /* Nothing read and nothing inside OpenSSL: SSL_read() would only say "want read". */
  if (t->tail == t->head && !SSL_has_pending(t->ssl)) return 0;
  ERR_clear_error();
  int r = SSL_read(t->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
  if (r > 0) return r;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) return GAIO_EOF;
  return fail(t, "TLS", e);
}

int rpc__tls_push(rpc__tls *t, const uint8_t *p, size_t len) {
  /* A handshake failure shows at the next feed; its alert is sent from here meanwhile. */
  if (!t->ready && !t->failed) (void)handshake(t);
  if (len == 0 || !t->ready || t->failed || t->closed) return 0;
  /* Room for every record up front: the write BIO then appends without growing. */
  size_t records = len / RPC__TLS_RECORD_MAX + 1;
  if (len > INT32_MAX || out_room(t, len + records * OUT_RECORD_SLACK) < 0) return -ENOMEM;
  ERR_clear_error();
  /* The write BIO takes everything: the write is whole or fails. */
  if (SSL_write(t->ssl, p, (int)len) != (int)len) return fail(t, "TLS write", SSL_ERROR_SSL);
  return 0;
}

int rpc__tls_close_notify(rpc__tls *t) {
  if (!t->ready || t->failed || t->closed) return 0; /* in a handshake, SSL_shutdown() fails */
  t->closed = 1;
  if (out_room(t, OUT_RECORD_SLACK) < 0) return -ENOMEM;
  ERR_clear_error();
  /* The first SSL_shutdown() only writes the alert (0: the peer's is not in yet; 1: it was). */
  int r = SSL_shutdown(t->ssl);
  if (r < 0) return fail(t, "TLS close_notify", SSL_get_error(t->ssl, r));
  return 0;
}

size_t rpc__tls_queued(const rpc__tls *t) { return t->out ? t->out->len : 0; }

rpc__wbuf *rpc__tls_recycle(rpc__tls *t, rpc__wbuf *b) {
  if (t->spare || b->cap > RPC__TLS_KEEP_MAX) return b;
  t->spare = b;
  return NULL;
}

int rpc__tls_seal(rpc__tls *t, rpc__wbuf **b) {
  rpc__wbuf *plain = *b;
  *b = NULL;
  int rc = rpc__tls_push(t, plain ? plain->data : NULL, plain ? plain->len : 0);
  rpc__wbuf *out = t->out;
  if (rc == 0 && out && out->len > 0) { /* after an earlier failure: its alert */
    out->kind = RPC__CTX_WRITE;
    out->coalesced = plain ? plain->coalesced : 0;
    out->conn = plain ? plain->conn : NULL;
    t->out = NULL;
    *b = out;
  }
  free(plain);
  return rc;
}

int rpc__tls_ready(const rpc__tls *t) { return t->ready; }

int rpc__tls_partial(const rpc__tls *t) {
  return t->tail > t->head || SSL_has_pending(t->ssl);
}

const char *rpc__tls_error(const rpc__tls *t) { return t->err; }

void rpc__tls_peer(const rpc__tls *t, rpc_peer *p) {
  p->tls = 1;
  p->tls_subject = t->subject;
  p->tls_sans = (const char *const *)t->sans;
  p->tls_san_count = t->nsans;
}

int rpc_peer_has_san(const rpc_peer *p, const char *san) {
  if (!p || !san) return 0;
  for (unsigned i = 0; i < p->tls_san_count; i++)
    if (strcmp(p->tls_sans[i], san) == 0) return 1;
  return 0;
}
