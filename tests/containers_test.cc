// Unit tests of the intrusive queue and deadline heap (gaio/queue.h, gaio/heap.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

extern "C" {
#include "gaio/heap.h"
#include "gaio/queue.h"
}

namespace {

struct Timer {
  gaio__heap_node node;
  uint64_t deadline;
  uint64_t seq;
  bool in_heap;
};

int TimerLess(const gaio__heap_node *a, const gaio__heap_node *b) {
  const Timer *x = gaio__container_of(a, Timer, node);
  const Timer *y = gaio__container_of(b, Timer, node);
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

// Checks the heap shape (parent links, order, count) from the root.
size_t CheckSubtree(const gaio__heap_node *n, const gaio__heap_node *parent) {
  if (n == nullptr) return 0;
  EXPECT_EQ(n->parent, parent);
  if (parent != nullptr) {
    EXPECT_FALSE(TimerLess(n, parent));
  }
  return 1 + CheckSubtree(n->left, n) + CheckSubtree(n->right, n);
}

TEST(Heap, RandomInsertRemoveMatchesSortedOrder) {
  std::mt19937_64 rng(12345);
  std::vector<Timer> timers(5000);
  gaio__heap h;
  gaio__heap_init(&h);
  uint64_t seq = 0;
  for (int round = 0; round < 20000; round++) {
    Timer &t = timers[rng() % timers.size()];
    if (t.in_heap) {
      gaio__heap_remove(&h, &t.node, TimerLess);
      t.in_heap = false;
    } else {
      t.deadline = rng() % 64;  // many equal deadlines: the sequence must break ties
      t.seq = seq++;
      gaio__heap_insert(&h, &t.node, TimerLess);
      t.in_heap = true;
    }
    if (round % 997 == 0) {
      ASSERT_EQ(CheckSubtree(h.min, nullptr), h.n);
    }
  }
  std::vector<std::pair<uint64_t, uint64_t>> want;
  for (const Timer &t : timers)
    if (t.in_heap) want.emplace_back(t.deadline, t.seq);
  std::sort(want.begin(), want.end());
  ASSERT_EQ(h.n, want.size());
  for (const auto &key : want) {
    Timer *t = gaio__container_of(gaio__heap_min(&h), Timer, node);
    ASSERT_EQ(t->deadline, key.first);
    ASSERT_EQ(t->seq, key.second);
    gaio__heap_remove(&h, &t->node, TimerLess);
  }
  EXPECT_EQ(h.n, 0u);
  EXPECT_EQ(gaio__heap_min(&h), nullptr);
}

TEST(Heap, EqualDeadlinesPopInInsertionOrder) {
  std::vector<Timer> timers(1000);
  gaio__heap h;
  gaio__heap_init(&h);
  for (size_t i = 0; i < timers.size(); i++) {
    timers[i].deadline = 7;
    timers[i].seq = i;
    gaio__heap_insert(&h, &timers[i].node, TimerLess);
  }
  for (size_t i = 0; i < timers.size(); i++) {
    Timer *t = gaio__container_of(gaio__heap_min(&h), Timer, node);
    ASSERT_EQ(t->seq, i);
    gaio__heap_remove(&h, &t->node, TimerLess);
  }
}

struct Item {
  gaio__queue link;
  int value;
};

TEST(Queue, PushRemoveMoveKeepOrder) {
  gaio__queue a, b;
  gaio__queue_init(&a);
  gaio__queue_init(&b);
  Item items[6];
  for (int i = 0; i < 6; i++) {
    items[i].value = i;
    gaio__queue_push(i < 3 ? &a : &b, &items[i].link);
  }
  gaio__queue_remove(&items[1].link);
  EXPECT_FALSE(gaio__queue_linked(&items[1].link));
  gaio__queue_remove(&items[1].link);  // removing twice is harmless
  gaio__queue_move(&b, &a);
  EXPECT_TRUE(gaio__queue_empty(&b));
  std::vector<int> got;
  for (gaio__queue *q = gaio__queue_head(&a); q != &a; q = q->next)
    got.push_back(gaio__container_of(q, Item, link)->value);
  EXPECT_EQ(got, (std::vector<int>{0, 2, 3, 4, 5}));
}

}  // namespace
