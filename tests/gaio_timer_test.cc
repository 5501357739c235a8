/* gaio_timer() and gaio_post() (issue 12), over every backend: requests with no fd that the core
 * completes itself. Timers fire in (deadline, submission) order and never early, share the
 * deadline heap with I/O deadlines, can be cancelled with gaio_timer_cancel(w, ctx) and get
 * -ESHUTDOWN at close; posts come back once each, in each thread's order, and wake a loop that
 * sleeps in gaio_wait(-1). Every test ends with submitted == completed. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace {

using gaio_test::BackendTest;
using gaio_test::Backends;
using gaio_test::Collected;
using gaio_test::Describe;
using gaio_test::ExpectDrained;
using gaio_test::ExpectNoResult;
using gaio_test::SocketPair;
using gaio_test::UnixPair;
using gaio_test::WaitResults;
using gaio_test::Watchdog;
using gaio_test::WriteAll;

constexpr uint64_t kMs = 1000000ull; /* nanoseconds per millisecond */

}  // namespace

// Test hook of the io_uring backend (gaio/backend_uring.c).
extern "C" int gaio__uring_refuse_timers(gaio_watcher *w);

namespace {

/* Every test is bounded: a timer that never fires must fail the test, not hang it. */
class GaioTimerTest : public BackendTest {
 protected:
  GaioTimerTest() : BackendTest(120000) {}
};

std::string Show(const gaio_result &r) { return Describe(r) + " op=" + std::to_string(r.op); }

/* A result of a request with no fd: op, ctx, error; fd GAIO_NO_FD, size 0, no buffer, no flags. */
void ExpectCore(const gaio_result &r, const void *ctx, int op, int error) {
  EXPECT_EQ(r.ctx, ctx) << Show(r);
  EXPECT_EQ(r.op, op) << Show(r);
  EXPECT_EQ(r.error, error) << Show(r);
  EXPECT_EQ(r.fd, GAIO_NO_FD) << Show(r);
  EXPECT_EQ(r.size, 0u) << Show(r);
  EXPECT_EQ(r.buf, nullptr) << Show(r);
  EXPECT_EQ(r.flags, 0u) << Show(r);
}

/* gaio_wait(-1) until one call returns results; fails on 0 (a wait forever must not time out)
 * or an error. */
std::vector<gaio_result> WaitForever(gaio_watcher *w, const char *what) {
  Watchdog dog(what, 20000);
  gaio_result r[8];
  int rc = gaio_wait(w, r, 8, -1);
  EXPECT_GT(rc, 0) << what << ": " << (rc < 0 ? gaio_strerror(rc) : "gaio_wait(-1) returned 0");
  return std::vector<gaio_result>(r, r + std::max(rc, 0));
}

/* ---- Timers ---- */

/* 1000 timers with random deadlines within 200 ms, 50 distinct values so that about 20 share
 * each one: they come back sorted by deadline, in submission order among equal deadlines, and
 * none before its deadline. */
TEST_P(GaioTimerTest, TimersFireInDeadlineOrderFifoAmongEqualDeadlines) {
  constexpr size_t kTimers = 1000;
  std::mt19937 rng(12);
  const uint64_t t0 = gaio_now() + 10 * kMs;
  std::vector<uint64_t> deadline(kTimers);
  for (size_t i = 0; i < kTimers; i++) deadline[i] = t0 + (rng() % 50) * 4 * kMs;
  std::vector<int> tag(kTimers);
  for (size_t i = 0; i < kTimers; i++) {
    tag[i] = static_cast<int>(i);
    ASSERT_EQ(gaio_timer(w_, &tag[i], deadline[i]), 0) << i;
  }
  EXPECT_EQ(Stats().submitted, kTimers);
  std::vector<int> want(kTimers);
  std::iota(want.begin(), want.end(), 0);
  std::stable_sort(want.begin(), want.end(),
                   [&](int a, int b) { return deadline[a] < deadline[b]; });

  std::vector<int> got;
  WaitResults(w_, kTimers, 20000, [&](const gaio_result *res, int n, size_t *) {
    const uint64_t now = gaio_now();
    for (int j = 0; j < n; j++) {
      const int k = *static_cast<int *>(res[j].ctx);
      ExpectCore(res[j], &tag[k], GAIO_OP_TIMER, 0);
      EXPECT_GE(now, deadline[k]) << "timer " << k << " fired "
                                  << (deadline[k] - now) / 1000 << " us early";
      got.push_back(k);
    }
  });
  EXPECT_EQ(got, want);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
}

/* The loop spins with gaio_wait(timeout 0), so a timer that fires even slightly early is seen
 * before its deadline. */
TEST_P(GaioTimerTest, NoTimerFiresEarlyUnderBusyPolling) {
  constexpr size_t kTimers = 200;
  const uint64_t t0 = gaio_now() + 5 * kMs;
  std::vector<uint64_t> deadline(kTimers);
  for (size_t i = 0; i < kTimers; i++) {
    deadline[i] = t0 + i * 500000u; /* every 0.5 ms over 100 ms */
    ASSERT_EQ(gaio_timer(w_, &deadline[i], deadline[i]), 0);
  }
  size_t seen = 0;
  const uint64_t give_up = gaio_now() + 20000 * kMs;
  while (seen < kTimers && gaio_now() < give_up) {
    gaio_result r[16];
    int n = gaio_wait(w_, r, 16, 0);
    ASSERT_GE(n, 0) << gaio_strerror(n);
    const uint64_t now = gaio_now();
    for (int j = 0; j < n; j++) {
      const uint64_t d = *static_cast<uint64_t *>(r[j].ctx);
      ExpectCore(r[j], r[j].ctx, GAIO_OP_TIMER, 0);
      EXPECT_GE(now, d) << "fired " << (d - now) / 1000 << " us early";
      EXPECT_EQ(r[j].ctx, &deadline[seen]) << "out of order at " << seen;
      seen++;
    }
  }
  EXPECT_EQ(seen, kTimers);
  ExpectDrained(w_);
}

/* With no fd and no other request, gaio_wait(-1) sleeps exactly until the timer. */
TEST_P(GaioTimerTest, WaitForeverReturnsForATimerAlone) {
  int tag = 0;
  const uint64_t deadline = gaio_now() + 60 * kMs;
  ASSERT_EQ(gaio_timer(w_, &tag, deadline), 0);
  std::vector<gaio_result> got = WaitForever(w_, "gaio_wait(-1) with a timer alone");
  EXPECT_GE(gaio_now(), deadline) << "fired early";
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &tag, GAIO_OP_TIMER, 0);
  ExpectDrained(w_);
}

/* The loop sleeps in gaio_wait(-1), holding the deadlines pending, until another thread's post
 * wakes it after delay_ms; returns once that post is delivered. */
void SleepUntilAPost(gaio_watcher *w, int delay_ms) {
  int post = 0;
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    EXPECT_EQ(gaio_post(w, &post), 0);
  });
  std::vector<gaio_result> got = WaitForever(w, "gaio_wait(-1) until a post wakes it");
  other.join();
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &post, GAIO_OP_POST, 0);
}

/* The backends hold the earliest deadline in a kernel timer (an io_uring timeout, a timerfd) and
 * wait untimed. A loop that slept holding a far deadline must move that timer when a nearer
 * one comes: else this wait would last until the far timer, 10 s, and return it. */
TEST_P(GaioTimerTest, ANearerDeadlineMovesTheTimerTheLoopHolds) {
  int far = 0, near = 0;
  ASSERT_EQ(gaio_timer(w_, &far, gaio_now() + 10000 * kMs), 0);
  SleepUntilAPost(w_, 30);

  const uint64_t deadline = gaio_now() + 40 * kMs;
  ASSERT_EQ(gaio_timer(w_, &near, deadline), 0);
  std::vector<gaio_result> got = WaitForever(w_, "gaio_wait(-1) for the nearer timer");
  EXPECT_GE(gaio_now(), deadline) << "fired early";
  EXPECT_LT(gaio_now(), deadline + 2000 * kMs) << "the held timer was not moved";
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &near, GAIO_OP_TIMER, 0);

  EXPECT_EQ(gaio_timer_cancel(w_, &far), 0);
  Collected c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &far, GAIO_OP_TIMER, -ECANCELED);
  ExpectDrained(w_);
}

/* A deadline cancelled after the loop slept holding it leaves the kernel timer set: when it
 * fires, the wait goes on to its own timeout with no result, neither early nor late. */
TEST_P(GaioTimerTest, ACancelledDeadlineThatWasHeldGivesNoResultWhenItsTimeComes) {
  int gone = 0;
  ASSERT_EQ(gaio_timer(w_, &gone, gaio_now() + 40 * kMs), 0);
  SleepUntilAPost(w_, 10);
  EXPECT_EQ(gaio_timer_cancel(w_, &gone), 0);
  Collected c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &gone, GAIO_OP_TIMER, -ECANCELED);

  const uint64_t t0 = gaio_now();
  gaio_result r[2];
  EXPECT_EQ(gaio_wait(w_, r, 2, 150), 0);
  EXPECT_GE(gaio_now() - t0, 150 * kMs) << "the wait ended when the cancelled deadline passed";
  EXPECT_LT(gaio_now() - t0, 5000 * kMs);
  ExpectDrained(w_);
}

/* io_uring: when the kernel refuses the deadline timer (its completion carries an error), the
 * watcher goes on with timed waits: deadlines still fire on time, and the loop does not spin
 * re-arming a timer the kernel keeps refusing (a few polls per wait, not thousands). */
TEST_P(GaioTimerTest, ARefusedDeadlineTimerFallsBackToTimedWaits) {
  if (gaio__uring_refuse_timers(w_) != 0) GTEST_SKIP() << "io_uring only: epoll holds no timer";
  int a = 0, b = 0;
  for (int *tag : {&a, &b}) {
    const uint64_t polls0 = Stats().polls;
    const uint64_t deadline = gaio_now() + 40 * kMs;
    ASSERT_EQ(gaio_timer(w_, tag, deadline), 0);
    std::vector<gaio_result> got = WaitForever(w_, "gaio_wait(-1) with the timer refused");
    EXPECT_GE(gaio_now(), deadline) << "fired early";
    EXPECT_LT(gaio_now(), deadline + 500 * kMs) << "fired late";
    ASSERT_EQ(got.size(), 1u);
    ExpectCore(got[0], tag, GAIO_OP_TIMER, 0);
    EXPECT_LT(Stats().polls - polls0, 20u) << "the loop spun";
  }
  ExpectDrained(w_);
}

/* The loop sleeps in gaio_wait(-1) with nothing to do; another thread's gaio_timer() must wake
 * it to take the new deadline into account. */
TEST_P(GaioTimerTest, TimerFromAnotherThreadWakesWaitForever) {
  int tag = 0;
  std::atomic<uint64_t> deadline{0};
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    deadline = gaio_now() + 20 * kMs;
    EXPECT_EQ(gaio_timer(w_, &tag, deadline), 0);
  });
  std::vector<gaio_result> got = WaitForever(w_, "gaio_wait(-1) woken by another thread's timer");
  other.join();
  EXPECT_GE(gaio_now(), deadline.load()) << "fired early";
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &tag, GAIO_OP_TIMER, 0);
  ExpectDrained(w_);
}

/* Past deadlines (1, now) are accepted and fire in the next gaio_wait(), even with timeout 0,
 * in deadline order; deadline 0 ("none" everywhere else) is refused with no result. */
TEST_P(GaioTimerTest, PastDeadlineFiresAtTheNextWait) {
  int a = 0, b = 0, c = 0;
  EXPECT_EQ(gaio_timer(w_, &c, 0), -EINVAL);
  EXPECT_EQ(gaio_timer(nullptr, &c, 1), -EINVAL);
  ASSERT_EQ(gaio_timer(w_, &b, gaio_now()), 0);
  ASSERT_EQ(gaio_timer(w_, &a, 1), 0);
  EXPECT_EQ(Stats().submitted, 2u);
  gaio_result r[4];
  ASSERT_EQ(gaio_wait(w_, r, 4, 0), 2);
  ExpectCore(r[0], &a, GAIO_OP_TIMER, 0);
  ExpectCore(r[1], &b, GAIO_OP_TIMER, 0);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
}

/* A pending timer is cancelled (0, one -ECANCELED result); a fired one, delivered or still
 * queued, is not (-ENOENT, no second result); an unknown ctx is -ENOENT. */
TEST_P(GaioTimerTest, CancelPendingFiredAndUnknownTimers) {
  int pending = 0, fired = 0, queued = 0, post = 0, unknown = 0;
  ASSERT_EQ(gaio_timer(w_, &pending, gaio_now() + 10000 * kMs), 0);
  EXPECT_EQ(gaio_timer_cancel(w_, &pending), 0);
  EXPECT_EQ(gaio_timer_cancel(w_, &pending), -ENOENT) << "cancelled twice";
  EXPECT_EQ(gaio_timer_cancel(w_, &unknown), -ENOENT);
  Collected c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &pending, GAIO_OP_TIMER, -ECANCELED);

  /* Fired and delivered. */
  ASSERT_EQ(gaio_timer(w_, &fired, 1), 0);
  c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &fired, GAIO_OP_TIMER, 0);
  EXPECT_EQ(gaio_timer_cancel(w_, &fired), -ENOENT);

  /* Fired but not delivered yet: the post completes when taken in, the timer right after, and
   * gaio_wait() hands out only the post. */
  ASSERT_EQ(gaio_timer(w_, &queued, 1), 0);
  ASSERT_EQ(gaio_post(w_, &post), 0);
  gaio_result r[1];
  ASSERT_EQ(gaio_wait(w_, r, 1, 0), 1);
  ExpectCore(r[0], &post, GAIO_OP_POST, 0);
  EXPECT_EQ(Stats().queued_results, 1u);
  EXPECT_EQ(gaio_timer_cancel(w_, &queued), -ENOENT);
  c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &queued, GAIO_OP_TIMER, 0);

  ExpectNoResult(w_, 50);
  ExpectDrained(w_);
}

/* gaio_timer_cancel(ctx) takes the oldest pending timer with ctx (by submission, not by
 * deadline) and leaves a read with the same ctx alone; gaio_cancel(fd, ctx) leaves timers alone,
 * and gaio_cancel(GAIO_NO_FD, ctx) stays -EBADF; a post is never pending. If the wrong timer were
 * cancelled, the one left would fire only after 10 s and WaitResults would time out. */
TEST_P(GaioTimerTest, CancelTakesTheOldestTimerWithThatCtx) {
  SocketPair p = UnixPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  int x = 0;
  uint8_t buf[8];
  ASSERT_EQ(gaio_timer(w_, &x, gaio_now() + 10000 * kMs), 0); /* oldest */
  const uint64_t soon = gaio_now() + 30 * kMs;
  ASSERT_EQ(gaio_timer(w_, &x, soon), 0);
  ASSERT_EQ(gaio_read(w_, a, buf, sizeof buf, &x), 0);
  EXPECT_EQ(gaio_cancel(w_, GAIO_NO_FD, &x), -EBADF) << "-1 is no fd, not the timers";
  EXPECT_EQ(gaio_cancel(w_, a, &x), 0);
  EXPECT_EQ(gaio_cancel(w_, a, &x), -ENOENT) << "the read was cancelled already";
  EXPECT_EQ(gaio_timer_cancel(w_, &x), 0);
  Collected c = WaitResults(w_, 3, 5000);
  ASSERT_EQ(c.results.size(), 3u);
  EXPECT_EQ(c.results[0].fd, a) << Show(c.results[0]);
  EXPECT_EQ(c.results[0].op, GAIO_OP_READ) << Show(c.results[0]);
  EXPECT_EQ(c.results[0].error, -ECANCELED) << Show(c.results[0]);
  ExpectCore(c.results[1], &x, GAIO_OP_TIMER, -ECANCELED);
  ExpectCore(c.results[2], &x, GAIO_OP_TIMER, 0);
  EXPECT_GE(gaio_now(), soon);

  ASSERT_EQ(gaio_post(w_, &x), 0);
  EXPECT_EQ(gaio_timer_cancel(w_, &x), -ENOENT) << "a post cannot be cancelled";
  c = WaitResults(w_, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectCore(c.results[0], &x, GAIO_OP_POST, 0);
  FreeAndFinish({a});
}

/* Timers and I/O deadlines are one heap, 30 ms apart: a timer cancelled and a read completed
 * by data leave it from the middle; a read that times out and the timers around it come back
 * in deadline order; on a tie, the one submitted first (a timer) fires first. */
TEST_P(GaioTimerTest, TimersAndReadDeadlinesShareTheHeap) {
  SocketPair pa = UnixPair(), pb = UnixPair();
  int a = Attach(pa.a), b = Attach(pb.a);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  enum { TC, T1, R1, T2, R2, T3, T4, R4, N };
  int tag[N];
  for (int i = 0; i < N; i++) tag[i] = i;
  uint8_t buf1[8], buf2[8], buf4[8];
  const uint64_t t0 = gaio_now();
  uint64_t deadline[N] = {};
  deadline[TC] = t0 + 45 * kMs;
  deadline[T1] = t0 + 30 * kMs;
  deadline[R1] = t0 + 60 * kMs;
  deadline[T2] = t0 + 90 * kMs;
  deadline[R2] = t0 + 150 * kMs; /* completed by data after T2, long before that */
  deadline[T3] = t0 + 150 * kMs;
  deadline[T4] = t0 + 180 * kMs;
  deadline[R4] = t0 + 180 * kMs; /* the tie: T4 was submitted first */
  ASSERT_EQ(gaio_timer(w_, &tag[TC], deadline[TC]), 0);
  ASSERT_EQ(gaio_timer(w_, &tag[T1], deadline[T1]), 0);
  ASSERT_EQ(gaio_read_deadline(w_, a, buf1, sizeof buf1, &tag[R1], deadline[R1]), 0);
  ASSERT_EQ(gaio_timer(w_, &tag[T2], deadline[T2]), 0);
  ASSERT_EQ(gaio_read_deadline(w_, b, buf2, sizeof buf2, &tag[R2], deadline[R2]), 0);
  ASSERT_EQ(gaio_timer(w_, &tag[T3], deadline[T3]), 0);
  ASSERT_EQ(gaio_timer(w_, &tag[T4], deadline[T4]), 0);
  ASSERT_EQ(gaio_read_deadline(w_, b, buf4, sizeof buf4, &tag[R4], deadline[R4]), 0);
  ASSERT_EQ(gaio_timer_cancel(w_, &tag[TC]), 0);

  std::vector<int> order;
  Collected c = WaitResults(w_, N, 10000, [&](const gaio_result *res, int n, size_t *) {
    const uint64_t now = gaio_now();
    for (int j = 0; j < n; j++) {
      const int k = *static_cast<int *>(res[j].ctx);
      order.push_back(k);
      if (k == TC) {
        ExpectCore(res[j], &tag[k], GAIO_OP_TIMER, -ECANCELED);
      } else if (k == R2) {
        EXPECT_EQ(res[j].error, 0) << Show(res[j]);
        EXPECT_EQ(res[j].size, 5u) << Show(res[j]);
        EXPECT_EQ(memcmp(buf2, "hello", 5), 0);
      } else if (k == R1 || k == R4) {
        EXPECT_EQ(res[j].error, -ETIMEDOUT) << Show(res[j]);
        EXPECT_EQ(res[j].fd, k == R1 ? a : b) << Show(res[j]);
        EXPECT_GE(now, deadline[k]) << "read " << k << " timed out early";
      } else {
        ExpectCore(res[j], &tag[k], GAIO_OP_TIMER, 0);
        EXPECT_GE(now, deadline[k]) << "timer " << k << " fired early";
      }
      if (k == T2) {
        EXPECT_TRUE(WriteAll(pb.b.get(), "hello", 5));
      }
    }
  });
  EXPECT_EQ(order, (std::vector<int>{TC, T1, R1, T2, R2, T3, T4, R4}));
  FreeAndFinish({a, b});
}

/* ---- Posts ---- */

/* One post from another thread wakes a loop asleep in gaio_wait(-1) with nothing else to do. */
TEST_P(GaioTimerTest, PostFromAnotherThreadWakesWaitForever) {
  int tag = 0;
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(gaio_post(w_, &tag), 0);
  });
  std::vector<gaio_result> got = WaitForever(w_, "gaio_wait(-1) woken by a post");
  other.join();
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &tag, GAIO_OP_POST, 0);
  EXPECT_EQ(gaio_post(nullptr, &tag), -EINVAL);
  ExpectDrained(w_);
}

/* 4 threads x 10000 posts while the loop waits with timeout -1: exactly 40000 results, each
 * (thread, index) once and in each thread's order (never coalesced). The posters pause now and
 * then, so the loop really falls asleep and each wakeup is needed. */
TEST_P(GaioTimerTest, PostsFromFourThreadsComeBackOnceInOrder) {
  constexpr int kThreads = 4;
  constexpr uint32_t kPosts = 10000;
  std::atomic<int> post_errors{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; t++) {
    posters.emplace_back([&, t] {
      for (uint32_t i = 0; i < kPosts; i++) {
        void *ctx = reinterpret_cast<void *>((static_cast<uintptr_t>(t) << 32) | (i + 1));
        if (gaio_post(w_, ctx) != 0) post_errors++;
        if (i % 1000 == 999) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  uint32_t next[kThreads] = {};
  size_t total = 0;
  int zeros = 0, bad = 0;
  {
    Watchdog dog("40000 posts through gaio_wait(-1)", 60000);
    while (total < kThreads * kPosts && bad == 0) {
      gaio_result r[256];
      int n = gaio_wait(w_, r, 256, -1);
      if (n < 0) {
        ADD_FAILURE() << "gaio_wait: " << gaio_strerror(n);
        break;
      }
      if (n == 0) zeros++;
      for (int j = 0; j < n; j++) {
        const uintptr_t v = reinterpret_cast<uintptr_t>(r[j].ctx);
        const uint32_t t = static_cast<uint32_t>(v >> 32), i = static_cast<uint32_t>(v) - 1;
        if (r[j].op != GAIO_OP_POST || r[j].error != 0 || r[j].fd != GAIO_NO_FD ||
            t >= kThreads || i != next[t]) {
          ADD_FAILURE() << "unexpected " << Show(r[j]) << " (thread " << t << " index " << i
                        << ", expected index " << (t < kThreads ? next[t] : 0) << ")";
          bad++;
          break;
        }
        next[t]++;
        total++;
      }
    }
  }
  for (std::thread &th : posters) th.join();
  EXPECT_EQ(post_errors.load(), 0);
  EXPECT_EQ(zeros, 0) << "gaio_wait(-1) returned 0";
  EXPECT_EQ(total, static_cast<size_t>(kThreads) * kPosts);
  for (int t = 0; t < kThreads; t++) EXPECT_EQ(next[t], kPosts) << "thread " << t;
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
}

/* ---- Limits and close ---- */

/* Timers and posts count against max_requests until delivered, like any request. */
TEST_P(GaioTimerTest, MaxRequestsCountsTimersAndPosts) {
  gaio_options o = {};
  o.max_requests = 4;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  int t[3] = {}, p[3] = {};
  const uint64_t later = gaio_now() + 10000 * kMs;
  ASSERT_EQ(gaio_timer(w, &t[0], later), 0);
  ASSERT_EQ(gaio_timer(w, &t[1], later), 0);
  ASSERT_EQ(gaio_post(w, &p[0]), 0);
  ASSERT_EQ(gaio_post(w, &p[1]), 0);
  EXPECT_EQ(gaio_timer(w, &t[2], later), -ENOBUFS);
  EXPECT_EQ(gaio_post(w, &p[2]), -ENOBUFS);
  EXPECT_EQ(Stats(w).submitted, 4u);

  /* Two posts delivered free two places; the timers still hold theirs. */
  Collected c = WaitResults(w, 2, 5000);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectCore(c.results[0], &p[0], GAIO_OP_POST, 0);
  ExpectCore(c.results[1], &p[1], GAIO_OP_POST, 0);
  ASSERT_EQ(gaio_timer(w, &t[2], later), 0);
  ASSERT_EQ(gaio_post(w, &p[2]), 0);
  EXPECT_EQ(gaio_post(w, &p[0]), -ENOBUFS);
  EXPECT_EQ(gaio_timer(w, &t[0], later), -ENOBUFS);
  EXPECT_EQ(Stats(w).in_flight, 4u);

  for (int i = 0; i < 3; i++) EXPECT_EQ(gaio_timer_cancel(w, &t[i]), 0) << i;
  c = WaitResults(w, 4, 5000);
  ASSERT_EQ(c.results.size(), 4u);
  ExpectCore(c.results[0], &p[2], GAIO_OP_POST, 0); /* taken in by the first cancel */
  for (int i = 0; i < 3; i++) ExpectCore(c.results[1 + i], &t[i], GAIO_OP_TIMER, -ECANCELED);
  ExpectNoResult(w, 0);
  ExpectDrained(w);
  ExpectDrained(w_);
}

/* Close with timers pending and posts both taken in and still queued: every one gets exactly
 * one result (timers and the posts not yet taken in -ESHUTDOWN, the posts taken in keep 0),
 * then gaio_wait() returns -ESHUTDOWN; submits and cancel after the close are -ESHUTDOWN. */
TEST_P(GaioTimerTest, CloseCompletesPendingTimersAndPosts) {
  int t1 = 0, t2 = 0, t3 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0;
  const uint64_t later = gaio_now() + 10000 * kMs;
  ASSERT_EQ(gaio_timer(w_, &t1, later), 0);
  ASSERT_EQ(gaio_timer(w_, &t2, later), 0);
  ASSERT_EQ(gaio_post(w_, &p1), 0);
  ASSERT_EQ(gaio_post(w_, &p2), 0);
  ASSERT_EQ(gaio_post(w_, &p3), 0);
  gaio_result r[8];
  ASSERT_EQ(gaio_wait(w_, r, 1, 0), 1); /* takes everything in, hands out p1 */
  ExpectCore(r[0], &p1, GAIO_OP_POST, 0);
  ASSERT_EQ(gaio_timer(w_, &t3, later), 0); /* still in the submission queue at the close */
  ASSERT_EQ(gaio_post(w_, &p4), 0);
  gaio_watcher_close(w_);
  int x = 0;
  EXPECT_EQ(gaio_timer(w_, &x, later), -ESHUTDOWN);
  EXPECT_EQ(gaio_timer(w_, &x, 1), -ESHUTDOWN);
  EXPECT_EQ(gaio_post(w_, &x), -ESHUTDOWN);
  EXPECT_EQ(gaio_timer_cancel(w_, &t1), -ESHUTDOWN);

  std::vector<gaio_result> got;
  int rc;
  {
    Watchdog dog("results after close", 20000);
    while ((rc = gaio_wait(w_, r, 8, -1)) > 0) got.insert(got.end(), r, r + rc);
  }
  EXPECT_EQ(rc, -ESHUTDOWN);
  ASSERT_EQ(got.size(), 6u);
  ExpectCore(got[0], &p2, GAIO_OP_POST, 0); /* completed before the close */
  ExpectCore(got[1], &p3, GAIO_OP_POST, 0);
  /* The rest completes in the first wait after the close; which comes first is not part of the
   * contract, only that each comes once with -ESHUTDOWN. */
  std::vector<const void *> rest;
  for (size_t i = 2; i < got.size(); i++) {
    EXPECT_EQ(got[i].error, -ESHUTDOWN) << Show(got[i]);
    EXPECT_EQ(got[i].fd, GAIO_NO_FD) << Show(got[i]);
    EXPECT_EQ(got[i].op, got[i].ctx == &p4 ? GAIO_OP_POST : GAIO_OP_TIMER) << Show(got[i]);
    rest.push_back(got[i].ctx);
  }
  std::sort(rest.begin(), rest.end());
  std::vector<const void *> want = {&t1, &t2, &t3, &p4};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(rest, want);
  EXPECT_EQ(gaio_wait(w_, r, 8, 0), -ESHUTDOWN);
  ExpectDrained(w_);
}

/* A close from another thread wakes a gaio_wait(-1) that sleeps until a far timer: the timer
 * gets -ESHUTDOWN, then gaio_wait() returns -ESHUTDOWN. */
TEST_P(GaioTimerTest, CloseWakesWaitForeverWithPendingTimer) {
  int tag = 0;
  ASSERT_EQ(gaio_timer(w_, &tag, gaio_now() + 60000 * kMs), 0);
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gaio_watcher_close(w_);
  });
  std::vector<gaio_result> got;
  int rc, zeros = 0;
  {
    Watchdog dog("gaio_wait(-1) woken by close", 20000);
    gaio_result r[4];
    while ((rc = gaio_wait(w_, r, 4, -1)) >= 0) {
      if (rc == 0) zeros++;
      got.insert(got.end(), r, r + rc);
    }
  }
  closer.join();
  EXPECT_EQ(rc, -ESHUTDOWN);
  EXPECT_EQ(zeros, 0) << "gaio_wait(-1) returned 0";
  ASSERT_EQ(got.size(), 1u);
  ExpectCore(got[0], &tag, GAIO_OP_TIMER, -ESHUTDOWN);
  ExpectDrained(w_);
}

/* Destroy without close or wait, with timers pending and posts undelivered, both taken in and
 * not: nothing leaks (LeakSanitizer under --config=asan). */
TEST_P(GaioTimerTest, DestroyWithPendingTimersAndPosts) {
  gaio_watcher *w = nullptr;
  ASSERT_EQ(CreateRc(&w, gaio_options{}), 0);
  int tag[5] = {};
  ASSERT_EQ(gaio_timer(w, &tag[0], gaio_now() + 10000 * kMs), 0);
  ASSERT_EQ(gaio_timer(w, &tag[1], 1), 0);
  ASSERT_EQ(gaio_post(w, &tag[2]), 0);
  ASSERT_EQ(gaio_post(w, &tag[3]), 0);
  gaio_result r[1];
  ASSERT_EQ(gaio_wait(w, r, 1, 0), 1); /* the rest stays queued */
  ASSERT_EQ(gaio_timer(w, &tag[4], gaio_now() + 10000 * kMs), 0);
  ASSERT_EQ(gaio_post(w, &tag[4]), 0);
  gaio_watcher_destroy(w);
  ExpectDrained(w_);
}

INSTANTIATE_TEST_SUITE_P(Backends, GaioTimerTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

}  // namespace
