/* Shared internals of //rpc: timers, id map, buffers, inbox, addresses. See internal.h. */
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/internal.h"
#include "rpc/rpc.h"

/* ---- Timers ------------------------------------------------------------------------------ */

void rpc__timer_init(rpc__timer *t, int kind) {
  memset(t, 0, sizeof *t);
  t->idx = RPC__TIMER_OFF;
  t->kind = kind;
}

static int tless(const rpc__timer *a, const rpc__timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void tset(rpc__theap *h, size_t i, rpc__timer *t) {
  h->a[i] = t;
  t->idx = i;
}

static void sift_up(rpc__theap *h, size_t i) {
  rpc__timer *t = h->a[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!tless(t, h->a[p])) break;
    tset(h, i, h->a[p]);
    i = p;
  }
  tset(h, i, t);
}

static void sift_down(rpc__theap *h, size_t i) {
  rpc__timer *t = h->a[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && tless(h->a[c + 1], h->a[c])) c++;
    if (!tless(h->a[c], t)) break;
    tset(h, i, h->a[c]);
    i = c;
  }
  tset(h, i, t);
}

void rpc__timer_disarm(rpc__theap *h, rpc__timer *t) {
  size_t i = t->idx;
  if (i == RPC__TIMER_OFF) return;
  t->idx = RPC__TIMER_OFF;
  h->n--;
  if (i == h->n) return;
  rpc__timer *moved = h->a[h->n];
  tset(h, i, moved);
  sift_up(h, i);
  sift_down(h, moved->idx);
}

int rpc__timer_arm(rpc__theap *h, rpc__timer *t, uint64_t when) {
  rpc__timer_disarm(h, t);
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    rpc__timer **a = realloc(h->a, cap * sizeof *a);
    if (!a) return -ENOMEM;
    h->a = a;
    h->cap = cap;
  }
  t->when = when;
  t->seq = h->seq++;
  tset(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

rpc__timer *rpc__timer_pop_due(rpc__theap *h, uint64_t now) {
  if (h->n == 0 || h->a[0]->when > now) return NULL;
  rpc__timer *t = h->a[0];
  rpc__timer_disarm(h, t);
  return t;
}

int rpc__theap_timeout_ms(const rpc__theap *h, uint64_t now) {
  if (h->n == 0) return -1;
  uint64_t when = h->a[0]->when;
  if (when <= now) return 0;
  uint64_t ms = (when - now + 999999u) / 1000000u;
  return ms > 3600000u ? 3600000 : (int)ms;
}

void rpc__theap_free(rpc__theap *h) {
  free(h->a);
  memset(h, 0, sizeof *h);
}

/* ---- Id map ------------------------------------------------------------------------------ */

static size_t slot(const rpc__idmap *m, uint64_t key) {
  /* Ids are mostly sequential: a multiplicative hash spreads them over the buckets. */
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->nb - 1);
}

rpc__idnode *rpc__idmap_get(const rpc__idmap *m, uint64_t key) {
  if (m->nb == 0) return NULL;
  for (rpc__idnode *n = m->b[slot(m, key)]; n; n = n->next)
    if (n->key == key) return n;
  return NULL;
}

static int grow(rpc__idmap *m) {
  size_t nb = m->nb ? m->nb * 2 : 16;
  rpc__idnode **b = calloc(nb, sizeof *b);
  if (!b) return -ENOMEM;
  rpc__idmap old = *m;
  m->b = b;
  m->nb = nb;
  for (size_t i = 0; i < old.nb; i++) {
    rpc__idnode *n = old.b[i];
    while (n) {
      rpc__idnode *next = n->next;
      size_t s = slot(m, n->key);
      n->next = b[s];
      b[s] = n;
      n = next;
    }
  }
  free(old.b);
  return 0;
}

int rpc__idmap_put(rpc__idmap *m, rpc__idnode *node) {
  if (m->n >= m->nb) {
    int rc = grow(m);
    if (rc < 0 && m->nb == 0) return rc; /* a full table still works, only slower */
  }
  size_t s = slot(m, node->key);
  node->next = m->b[s];
  m->b[s] = node;
  m->n++;
  return 0;
}

rpc__idnode *rpc__idmap_del(rpc__idmap *m, uint64_t key) {
  if (m->nb == 0) return NULL;
  for (rpc__idnode **p = &m->b[slot(m, key)]; *p; p = &(*p)->next) {
    if ((*p)->key == key) {
      rpc__idnode *n = *p;
      *p = n->next;
      m->n--;
      return n;
    }
  }
  return NULL;
}

rpc__idnode *rpc__idmap_pop(rpc__idmap *m) {
  for (size_t i = 0; m->n > 0 && i < m->nb; i++) {
    if (m->b[i]) {
      rpc__idnode *n = m->b[i];
      m->b[i] = n->next;
      m->n--;
      return n;
    }
  }
  return NULL;
}

void rpc__idmap_free(rpc__idmap *m) {
  free(m->b);
  memset(m, 0, sizeof *m);
}

/* ---- Write buffers ----------------------------------------------------------------------- */

rpc__wbuf *rpc__wbuf_new(size_t body_len) {
  rpc__wbuf *w = malloc(sizeof *w + RPC_FRAME_HEADER_SIZE + body_len);
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
  b->data = malloc(RPC__RBUF_INITIAL);
  if (!b->data) return -ENOMEM;
  b->cap = RPC__RBUF_INITIAL;
  return 0;
}

void rpc__rbuf_free(rpc__rbuf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

static int resize(rpc__rbuf *b, size_t cap) {
  uint8_t *d = realloc(b->data, cap);
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
 * first incomplete or malformed frame: the main parse reaches it and handles it. */
static int scan_urgent(rpc__rbuf *b, size_t max_body, rpc__frame_fn fn, void *owner) {
  size_t pos = b->skip <= b->len ? (size_t)b->skip : b->len;
  if (pos < b->scanned) pos = b->scanned;
  for (;;) {
    rpc_frame f;
    long r = rpc_frame_parse(b->data + pos, b->len - pos, max_body, &f);
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

/* ---- Inbox ------------------------------------------------------------------------------- */

int rpc__inbox_init(rpc__inbox *ib, gaio_watcher *w) {
  memset(ib, 0, sizeof *ib);
  ib->kind = RPC__CTX_INBOX;
  pthread_mutex_init(&ib->mu, NULL);
  ib->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ib->efd < 0) return -errno;
  int rc = gaio_attach(w, ib->efd);
  if (rc < 0) {
    close(ib->efd);
    ib->efd = -1;
    return rc;
  }
  rc = gaio_read(w, ib->efd, &ib->rbuf, sizeof ib->rbuf, ib);
  if (rc < 0) return rc; /* the watcher closes the eventfd */
  return 0;
}

int rpc__inbox_post(rpc__inbox *ib, rpc__item *it) {
  it->next = NULL;
  pthread_mutex_lock(&ib->mu);
  if (ib->closed) {
    pthread_mutex_unlock(&ib->mu);
    return -ESHUTDOWN;
  }
  if (ib->tail)
    ib->tail->next = it;
  else
    ib->head = it;
  ib->tail = it;
  int wake = !ib->signalled;
  ib->signalled = 1;
  if (wake) {
    uint64_t one = 1;
    /* The counter cannot overflow: it is written once per drain. */
    ssize_t r = write(ib->efd, &one, sizeof one);
    (void)r;
  }
  pthread_mutex_unlock(&ib->mu);
  return 0;
}

rpc__item *rpc__inbox_take(rpc__inbox *ib, int close_it) {
  pthread_mutex_lock(&ib->mu);
  rpc__item *h = ib->head;
  ib->head = ib->tail = NULL;
  ib->signalled = 0;
  if (close_it) ib->closed = 1;
  pthread_mutex_unlock(&ib->mu);
  return h;
}

void rpc__inbox_rearm(rpc__inbox *ib, gaio_watcher *w) {
  gaio_read(w, ib->efd, &ib->rbuf, sizeof ib->rbuf, ib);
}

void rpc__inbox_destroy(rpc__inbox *ib) { pthread_mutex_destroy(&ib->mu); }

/* ---- Addresses and messages -------------------------------------------------------------- */

int rpc__parse_addr(const char *s, size_t len, struct sockaddr_storage *ss, socklen_t *sl) {
  memset(ss, 0, sizeof *ss);
  if (len > 5 && memcmp(s, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t plen = len - 5;
    if (plen == 0 || plen >= sizeof un->sun_path) return -EINVAL;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, s + 5, plen);
    *sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    return 0;
  }
  char host[256], port[16];
  const char *colon = NULL;
  for (size_t i = len; i > 0; i--)
    if (s[i - 1] == ':') {
      colon = s + i - 1;
      break;
    }
  if (!colon) return -EINVAL;
  size_t hl = (size_t)(colon - s), pl = len - hl - 1;
  const char *h = s;
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (hl == 0 || hl >= sizeof host || pl == 0 || pl >= sizeof port) return -EINVAL;
  memcpy(host, h, hl);
  host[hl] = 0;
  memcpy(port, colon + 1, pl);
  port[pl] = 0;
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return -EINVAL;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sl = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

char *rpc__msgdup(const char *s, size_t len) {
  if (!s) len = 0;
  if (len > RPC_MAX_ERROR_MESSAGE) len = RPC_MAX_ERROR_MESSAGE;
  char *m = malloc(len + 1);
  if (!m) return NULL;
  if (len) memcpy(m, s, len);
  m[len] = 0;
  return m;
}

/* ---- Methods (public) -------------------------------------------------------------------- */

void rpc_method_init(rpc_method *m, const char *full_name, const ProtobufCMessageDescriptor *input,
                     const ProtobufCMessageDescriptor *output) {
  m->id = rpc_method_id(full_name, strlen(full_name));
  m->input = input;
  m->output = output;
}

/* The method id of method i of svc: FNV-1a over "package.Service/Method", built in place so
 * that no allocation is needed. */
static uint32_t method_id_of(const ProtobufCServiceDescriptor *svc, unsigned i) {
  char buf[512];
  size_t a = strlen(svc->name), b = strlen(svc->methods[i].name);
  if (a + 1 + b > sizeof buf) {
    char *p = malloc(a + 1 + b);
    if (!p) return 0;
    memcpy(p, svc->name, a);
    p[a] = '/';
    memcpy(p + a + 1, svc->methods[i].name, b);
    uint32_t id = rpc_method_id(p, a + 1 + b);
    free(p);
    return id;
  }
  memcpy(buf, svc->name, a);
  buf[a] = '/';
  memcpy(buf + a + 1, svc->methods[i].name, b);
  return rpc_method_id(buf, a + 1 + b);
}

int rpc_method_at(rpc_method *m, const ProtobufCServiceDescriptor *svc, unsigned index) {
  if (!m || !svc || index >= svc->n_methods || !svc->name || !svc->methods[index].name)
    return -EINVAL;
  m->id = method_id_of(svc, index);
  m->input = svc->methods[index].input;
  m->output = svc->methods[index].output;
  return 0;
}

int rpc_method_find(rpc_method *m, const ProtobufCServiceDescriptor *svc, const char *name) {
  if (!m || !svc || !name) return -EINVAL;
  for (unsigned i = 0; i < svc->n_methods; i++)
    if (svc->methods[i].name && strcmp(svc->methods[i].name, name) == 0)
      return rpc_method_at(m, svc, i);
  return -ENOENT;
}

uint32_t rpc__method_id_of(const ProtobufCServiceDescriptor *svc, unsigned i) {
  return method_id_of(svc, i);
}
