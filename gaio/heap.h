/* Intrusive binary min-heap. Nodes are linked by pointers inside the objects (no array to grow,
 * so inserting never allocates and never fails). The node at 1-based position k is found by
 * walking the bits of k below its top bit from the root: 0 = left, 1 = right. Insert and remove
 * are O(log n). The order is given by a "less" function; ties must be broken by the caller's
 * key (gaio uses a sequence number) to keep FIFO order among equal deadlines. */
#ifndef GAIO_HEAP_H
#define GAIO_HEAP_H

#include <stddef.h>

typedef struct gaio__heap_node {
  struct gaio__heap_node *left;
  struct gaio__heap_node *right;
  struct gaio__heap_node *parent;
} gaio__heap_node;

typedef struct gaio__heap {
  gaio__heap_node *min;
  size_t n;
} gaio__heap;

typedef int (*gaio__heap_less_fn)(const gaio__heap_node *a, const gaio__heap_node *b);

static inline void gaio__heap_init(gaio__heap *h) {
  h->min = NULL;
  h->n = 0;
}

static inline gaio__heap_node *gaio__heap_min(const gaio__heap *h) { return h->min; }

/* The parent of 1-based position pos (pos >= 2), found by walking from the root; *right says
 * whether pos is its right child. */
static inline gaio__heap_node *gaio__heap_walk(const gaio__heap *h, size_t pos, int *right) {
  int top = (int)(sizeof(size_t) * 8) - 1 - __builtin_clzl(pos);
  gaio__heap_node *n = h->min;
  for (int bit = top - 1; bit > 0; bit--) n = ((pos >> bit) & 1) ? n->right : n->left;
  *right = (int)(pos & 1);
  return n;
}

/* Exchange child c with its parent, so that c moves one level up. */
static inline void gaio__heap_swap_up(gaio__heap *h, gaio__heap_node *c) {
  gaio__heap_node *p = c->parent, *gp = p->parent;
  gaio__heap_node *cl = c->left, *cr = c->right, *sib;
  if (p->left == c) {
    sib = p->right;
    c->left = p;
    c->right = sib;
  } else {
    sib = p->left;
    c->right = p;
    c->left = sib;
  }
  if (sib != NULL) sib->parent = c;
  p->left = cl;
  p->right = cr;
  if (cl != NULL) cl->parent = p;
  if (cr != NULL) cr->parent = p;
  p->parent = c;
  c->parent = gp;
  if (gp == NULL)
    h->min = c;
  else if (gp->left == p)
    gp->left = c;
  else
    gp->right = c;
}

static inline void gaio__heap_sift_up(gaio__heap *h, gaio__heap_node *n, gaio__heap_less_fn less) {
  while (n->parent != NULL && less(n, n->parent)) gaio__heap_swap_up(h, n);
}

static inline void gaio__heap_sift_down(gaio__heap *h, gaio__heap_node *n,
                                        gaio__heap_less_fn less) {
  for (;;) {
    gaio__heap_node *s = n->left;
    if (s == NULL) return;
    if (n->right != NULL && less(n->right, s)) s = n->right;
    if (!less(s, n)) return;
    gaio__heap_swap_up(h, s);
  }
}

static inline void gaio__heap_insert(gaio__heap *h, gaio__heap_node *n, gaio__heap_less_fn less) {
  n->left = n->right = n->parent = NULL;
  h->n++;
  if (h->n == 1) {
    h->min = n;
    return;
  }
  int right;
  gaio__heap_node *p = gaio__heap_walk(h, h->n, &right);
  if (right)
    p->right = n;
  else
    p->left = n;
  n->parent = p;
  gaio__heap_sift_up(h, n, less);
}

/* Remove n, which must be in h. */
static inline void gaio__heap_remove(gaio__heap *h, gaio__heap_node *n, gaio__heap_less_fn less) {
  if (h->n == 1) {
    h->min = NULL;
    h->n = 0;
    n->left = n->right = n->parent = NULL;
    return;
  }
  /* Detach the last node, then put it in n's place and restore the order around it. */
  int right;
  gaio__heap_node *lp = gaio__heap_walk(h, h->n, &right);
  gaio__heap_node *last = right ? lp->right : lp->left;
  if (right)
    lp->right = NULL;
  else
    lp->left = NULL;
  h->n--;
  if (last != n) {
    last->left = n->left;
    last->right = n->right;
    last->parent = n->parent;
    if (last->left != NULL) last->left->parent = last;
    if (last->right != NULL) last->right->parent = last;
    if (n->parent == NULL)
      h->min = last;
    else if (n->parent->left == n)
      n->parent->left = last;
    else
      n->parent->right = last;
    gaio__heap_sift_down(h, last, less);
    gaio__heap_sift_up(h, last, less);
  }
  n->left = n->right = n->parent = NULL;
}

#endif /* GAIO_HEAP_H */
