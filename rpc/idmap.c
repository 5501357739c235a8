/* The id map: an intrusive chained hash table keyed by a 64-bit id. See internal.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

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
  rpc__idnode **b = gaio__calloc(nb, sizeof *b);
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
