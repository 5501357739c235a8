/* Intrusive circular doubly linked queue. Nothing is allocated per enqueue: the link lives
 * inside the queued object, and the object is found back with gaio__container_of(). */
#ifndef GAIO_QUEUE_H
#define GAIO_QUEUE_H

#include <stddef.h>

#define gaio__container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct gaio__queue {
  struct gaio__queue *next;
  struct gaio__queue *prev;
} gaio__queue;

/* An empty queue (or an unlinked node) points at itself. */
static inline void gaio__queue_init(gaio__queue *q) {
  q->next = q;
  q->prev = q;
}

static inline int gaio__queue_empty(const gaio__queue *q) { return q->next == q; }

static inline gaio__queue *gaio__queue_head(const gaio__queue *q) { return q->next; }

/* Append n at the tail of q. */
static inline void gaio__queue_push(gaio__queue *q, gaio__queue *n) {
  n->next = q;
  n->prev = q->prev;
  q->prev->next = n;
  q->prev = n;
}

/* Unlink n from whatever queue holds it and leave it self-linked, so that removing it twice,
 * or asking gaio__queue_linked() afterwards, is safe. */
static inline void gaio__queue_remove(gaio__queue *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  gaio__queue_init(n);
}

static inline int gaio__queue_linked(const gaio__queue *n) { return n->next != n; }

/* Move every node of from to the tail of to; from ends empty. */
static inline void gaio__queue_move(gaio__queue *from, gaio__queue *to) {
  if (gaio__queue_empty(from)) return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  gaio__queue_init(from);
}

#endif /* GAIO_QUEUE_H */
