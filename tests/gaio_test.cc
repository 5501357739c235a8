/* Behaviour suite for gaio-c: the contract of gaio/gaio.h, run over every backend.
 *
 * Every test checks exact values (byte contents, error codes, sizes), that every accepted submit
 * gets exactly one result, and ends with submitted == completed and nothing in flight. Waits are
 * bounded (WaitResults, Watchdog): a broken library fails a test, it never hangs the suite.
 * Sockets are on 127.0.0.1 only, listeners bind port 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Collected;
using gaio_test::BackendTest;
using gaio_test::BackendUnavailable;
using gaio_test::Backends;
using gaio_test::CountOpenFds;
using gaio_test::Describe;
using gaio_test::ExpectDrained;
using gaio_test::ExpectNoResult;
using gaio_test::FdIsOpen;
using gaio_test::Listener;
using gaio_test::MsSince;
using gaio_test::Pattern;
using gaio_test::PatternMismatch;
using gaio_test::ReadExactly;
using gaio_test::ReadToEof;
using gaio_test::SetLingerZero;
using gaio_test::SetNonBlocking;
using gaio_test::SetRcvBuf;
using gaio_test::SocketPair;
using gaio_test::TcpPair;
using gaio_test::TcpPairs;
using gaio_test::UniqueFd;
using gaio_test::UnixPair;
using gaio_test::WaitReadable;
using gaio_test::WaitResults;
using gaio_test::Watchdog;
using gaio_test::WriteAll;

constexpr uint64_t kMs = 1000000ull; /* nanoseconds per millisecond */

/* A set of pointers that must each come back exactly once. */
class Once {
 public:
  void Add(const void *p) { EXPECT_TRUE(live_.insert(p).second) << "ctx reused: " << p; }
  /* False (and a test failure) if p was not pending: a duplicate or unknown result. */
  bool Take(const void *p) {
    if (live_.erase(p) == 1) return true;
    ADD_FAILURE() << "result for a ctx that is not pending (duplicate or unknown): " << p;
    return false;
  }
  size_t size() const { return live_.size(); }

 private:
  std::unordered_set<const void *> live_;
};

class GaioTest : public BackendTest {
 protected:
  void RunNullBufferReads(size_t nconns, size_t swap_size, size_t read_max);
  void RunDeadlines(size_t nreads);
  void RunWritesThenShutdown(SocketPair p);
  int AttachStalledWriteThenShutdown(SocketPair &p, std::vector<uint8_t> *big, int *tw, int *ts);
  void RunShutdownAfterStalledWriteEnds(bool by_deadline);
};

/* Checks the common fields of one result. */
void ExpectResult(const gaio_result &r, const void *ctx, int fd, int op, int error, size_t size) {
  EXPECT_EQ(r.ctx, ctx) << Describe(r);
  EXPECT_EQ(r.fd, fd) << Describe(r);
  EXPECT_EQ(r.op, op) << Describe(r);
  EXPECT_EQ(r.error, error) << Describe(r);
  EXPECT_EQ(r.size, size) << Describe(r);
}

/* ------------------------------------------------------------------------------------------ */
/* Basic API                                                                                    */
/* ------------------------------------------------------------------------------------------ */

TEST(GaioApi, CreateRejectsUnknownBackend) {
  gaio_options o = {};
  o.backend = "no-such-backend";
  gaio_watcher *w = reinterpret_cast<gaio_watcher *>(uintptr_t{1});
  EXPECT_EQ(gaio_watcher_create(&w, &o), GAIO_EBACKEND);
  EXPECT_EQ(w, nullptr);
}

TEST(GaioApi, CreateWithNullOptionsPicksAKnownBackend) {
  gaio_watcher *w = nullptr;
  ASSERT_EQ(gaio_watcher_create(&w, nullptr), 0);
  ASSERT_NE(gaio_backend_name(w), nullptr);
  std::vector<std::string> all = Backends();
  EXPECT_NE(std::find(all.begin(), all.end(), gaio_backend_name(w)), all.end())
      << gaio_backend_name(w);
  gaio_watcher_destroy(w);
}

TEST(GaioApi, CreateFailsCleanlyOnAbsurdSwapSize) {
  gaio_options o = {};
  o.swap_size = SIZE_MAX;
  gaio_watcher *w = reinterpret_cast<gaio_watcher *>(uintptr_t{1});
  int rc = gaio_watcher_create(&w, &o);
  EXPECT_TRUE(rc == -EINVAL || rc == -ENOMEM) << rc;
  EXPECT_EQ(w, nullptr);
}

TEST(GaioApi, DestroyNullIsNoop) { gaio_watcher_destroy(nullptr); }

TEST(GaioApi, StrerrorCoversEofAndErrno) {
  const int codes[] = {GAIO_EOF, -ETIMEDOUT, -ECANCELED, -ESHUTDOWN, -EPIPE, -EINVAL};
  for (int c : codes) {
    const char *s = gaio_strerror(c);
    ASSERT_NE(s, nullptr) << c;
    EXPECT_GT(strlen(s), 0u) << c;
  }
  EXPECT_STRNE(gaio_strerror(GAIO_EOF), gaio_strerror(-ETIMEDOUT));
}

TEST(GaioApi, NowIsMonotonicNanoseconds) {
  uint64_t t0 = gaio_now();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  uint64_t t1 = gaio_now();
  EXPECT_GE(t1 - t0, 20 * kMs);
  EXPECT_LT(t1 - t0, 5000 * kMs);
}

TEST_P(GaioTest, BackendNameIsTheOneAskedFor) {
  ASSERT_NE(gaio_backend_name(w_), nullptr);
  EXPECT_EQ(std::string(gaio_backend_name(w_)), GetParam());
  ExpectDrained(w_);
}

/* GAIO_BACKEND overrides the automatic choice only, never an explicit name. */
TEST_P(GaioTest, BackendEnvOverridesOnlyTheAutomaticChoice) {
  const char *old = getenv("GAIO_BACKEND");
  std::string saved = old ? old : "";

  setenv("GAIO_BACKEND", GetParam().c_str(), 1);
  gaio_watcher *w = nullptr;
  ASSERT_EQ(gaio_watcher_create(&w, nullptr), 0);
  EXPECT_EQ(std::string(gaio_backend_name(w)), GetParam());
  gaio_watcher_destroy(w);

  setenv("GAIO_BACKEND", "no-such-backend", 1);
  w = nullptr;
  gaio_options o = {};
  o.backend = GetParam().c_str();
  EXPECT_EQ(gaio_watcher_create(&w, &o), 0);
  if (w != nullptr) {
    EXPECT_EQ(std::string(gaio_backend_name(w)), GetParam());
  }
  gaio_watcher_destroy(w);

  w = reinterpret_cast<gaio_watcher *>(uintptr_t{1});
  EXPECT_EQ(gaio_watcher_create(&w, nullptr), GAIO_EBACKEND);
  EXPECT_EQ(w, nullptr);

  if (old) {
    setenv("GAIO_BACKEND", saved.c_str(), 1);
  } else {
    unsetenv("GAIO_BACKEND");
  }
  ExpectDrained(w_);
}

/* ---- gaio_options.one_thread ---- */

bool KernelAtLeast(int major, int minor) {
  struct utsname u;
  int a = 0, b = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &a, &b) != 2) return false;
  return a > major || (a == major && b >= minor);
}

/* The first thread in the loop owns it: another thread's gaio_wait(), gaio_cancel(),
 * gaio_timer_cancel() and gaio_detach() get -EEXIST and change nothing, while its submits are
 * taken as from any thread. */
TEST_P(GaioTest, OneThreadHoldsTheLoopToTheFirstThreadThatEntersIt) {
  gaio_options o = {};
  o.one_thread = 1;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(gaio_one_thread(w), GetParam() == "uring" && KernelAtLeast(6, 1) ? 1 : 0);
  EXPECT_EQ(gaio_one_thread(w_), 0) << "not asked for";
  SocketPair p = UnixPair();
  const int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  int rd = 0, tm = 0, post = 0;
  uint8_t buf[8];
  ASSERT_EQ(gaio_read(w, a, buf, sizeof buf, &rd), 0);
  ASSERT_EQ(gaio_timer(w, &tm, gaio_now() + 10000 * kMs), 0);
  gaio_result r[4];
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 0) << "this thread owns the loop from now on";
  std::thread other([&] {
    gaio_result x[4];
    EXPECT_EQ(gaio_wait(w, x, 4, 0), -EEXIST);
    EXPECT_EQ(gaio_wait(w, x, 4, 50), -EEXIST);
    EXPECT_EQ(gaio_cancel(w, a, &rd), -EEXIST);
    EXPECT_EQ(gaio_timer_cancel(w, &tm), -EEXIST);
    EXPECT_EQ(gaio_detach(w, a), -EEXIST);
    EXPECT_EQ(gaio_post(w, &post), 0) << "submits stay open to every thread";
  });
  other.join();
  ASSERT_TRUE(WriteAll(p.b.get(), "hi", 2));
  Collected c = WaitResults(w, 2, 5000);
  ASSERT_EQ(c.results.size(), 2u);
  const gaio_result &pr = c.results[0].ctx == &post ? c.results[0] : c.results[1];
  const gaio_result &rr = c.results[0].ctx == &rd ? c.results[0] : c.results[1];
  EXPECT_EQ(pr.ctx, &post) << Describe(pr);
  EXPECT_EQ(pr.op, GAIO_OP_POST) << Describe(pr);
  ASSERT_EQ(rr.ctx, &rd) << Describe(rr);
  EXPECT_EQ(rr.error, 0) << Describe(rr);
  ASSERT_EQ(rr.size, 2u) << "the read was not cancelled";
  EXPECT_EQ(memcmp(buf, "hi", 2), 0);
  EXPECT_EQ(gaio_timer_cancel(w, &tm), 0) << "the timer was not cancelled";
  c = WaitResults(w, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].ctx, &tm);
  EXPECT_EQ(c.results[0].error, -ECANCELED);
  FreeAndFinish({a}, w);
}

/* Why one_thread exists: io_uring finishes completions on the thread that submitted them by
 * flagging it as a signal would, so that thread's own blocking recv() with SO_RCVTIMEO fails
 * with EINTR when a completion comes (seen here on Linux 6.18 without one_thread, also after
 * the ring is destroyed). With one_thread the kernel keeps them until the thread waits: the
 * recv() gets its byte. The loop runs on a fresh thread, which no earlier ring has flagged. */
TEST_P(GaioTest, OneThreadLoopThreadsOwnBlockingCallIsNotInterruptedByCompletions) {
  gaio_options o = {};
  o.one_thread = 1;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair io = UnixPair(), own = UnixPair();
  const int a = Attach(io.a, w);
  ASSERT_GE(a, 0);
  timeval tv = {5, 0};
  ASSERT_EQ(setsockopt(own.a.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  int rd = 0;
  uint8_t buf[8];
  std::thread loop([&] {
    ASSERT_EQ(gaio_read(w, a, buf, sizeof buf, &rd), 0);
    gaio_result r[4];
    ASSERT_EQ(gaio_wait(w, r, 4, 0), 0) << "the read is in the kernel, submitted by this thread";
    std::thread peer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      EXPECT_TRUE(WriteAll(io.b.get(), "io", 2)); /* completes the read while loop blocks */
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      EXPECT_TRUE(WriteAll(own.b.get(), "x", 1));
    });
    char ch = 0;
    const uint64_t t0 = gaio_now();
    ssize_t n = recv(own.a.get(), &ch, 1, 0);
    const int err = errno;
    peer.join();
    EXPECT_EQ(n, 1) << "recv: " << strerror(err) << " after " << MsSince(t0) << " ms";
    EXPECT_EQ(ch, 'x');
    Collected c = WaitResults(w, 1, 5000);
    ASSERT_EQ(c.results.size(), 1u);
    EXPECT_EQ(c.results[0].ctx, &rd);
    ASSERT_EQ(c.results[0].size, 2u) << Describe(c.results[0]);
    EXPECT_EQ(memcmp(buf, "io", 2), 0);
    ASSERT_EQ(gaio_free(w, a), 0);
    ExpectNoResult(w, 0); /* carries the free out, on the loop's own thread */
    gaio_watcher_close(w); /* then any thread may destroy it (gaio.h, one_thread) */
    EXPECT_EQ(gaio_wait(w, r, 4, 1000), -ESHUTDOWN);
  });
  loop.join();
  ExpectDrained(w);
}

TEST_P(GaioTest, WaitInvalidArguments) {
  gaio_result r[2];
  EXPECT_EQ(gaio_wait(w_, nullptr, 2, 0), -EINVAL);
  EXPECT_EQ(gaio_wait(w_, r, 0, 0), -EINVAL);
  EXPECT_EQ(gaio_wait(w_, r, -1, 0), -EINVAL);
  ExpectDrained(w_);
}

TEST_P(GaioTest, WaitTimeoutReturnsZero) {
  gaio_result r[2];
  uint64_t t0 = gaio_now();
  EXPECT_EQ(gaio_wait(w_, r, 2, 0), 0);
  EXPECT_LT(MsSince(t0), 1000.0);
  t0 = gaio_now();
  EXPECT_EQ(gaio_wait(w_, r, 2, 100), 0);
  double ms = MsSince(t0);
  EXPECT_GE(ms, 99.0);
  EXPECT_LT(ms, 5000.0);
  ExpectDrained(w_);
}

/* ------------------------------------------------------------------------------------------ */
/* Data transfer                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* One gaio_write of 8 MiB and more, echoed back by gaio on the other end through four buffers
 * that cycle read -> write -> read, and received with one gaio_read_full. */
TEST_P(GaioTest, EchoHugeBuffer) {
  const size_t kLen = (8u << 20) + 4099;
  const size_t kSlot = 64 * 1024;
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  int b = Attach(p.b);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);

  std::vector<uint8_t> out = Pattern(1, kLen);
  std::vector<uint8_t> in(kLen, 0);
  int write_tag = 0, read_tag = 0;
  ASSERT_EQ(gaio_write(w_, a, out.data(), kLen, &write_tag), 0);
  ASSERT_EQ(gaio_read_full(w_, a, in.data(), kLen, &read_tag, 0), 0);

  struct Slot {
    std::vector<uint8_t> buf;
    size_t len = 0;
  };
  std::vector<Slot> slots(4);
  for (Slot &s : slots) {
    s.buf.resize(kSlot);
    ASSERT_EQ(gaio_read(w_, b, s.buf.data(), kSlot, &s), 0);
  }

  size_t echoed_in = 0, echoed_out = 0, cancelled = 0;
  bool wrote = false, got = false, freed_b = false;
  auto on_batch = [&](const gaio_result *res, int n, size_t *want) {
    for (int i = 0; i < n; i++) {
      const gaio_result &r = res[i];
      if (r.ctx == &write_tag) {
        ExpectResult(r, &write_tag, a, GAIO_OP_WRITE, 0, kLen);
        EXPECT_FALSE(wrote);
        wrote = true;
        continue;
      }
      if (r.ctx == &read_tag) {
        ExpectResult(r, &read_tag, a, GAIO_OP_READ_FULL, 0, kLen);
        EXPECT_EQ(r.buf, in.data());
        EXPECT_FALSE(got);
        got = true;
        continue;
      }
      Slot *s = static_cast<Slot *>(r.ctx);
      ASSERT_TRUE(s >= &slots[0] && s <= &slots[3]) << Describe(r);
      EXPECT_EQ(r.fd, b);
      EXPECT_EQ(r.buf, s->buf.data());
      EXPECT_EQ(r.flags, 0u);
      if (r.op == GAIO_OP_READ && freed_b) {
        EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
        EXPECT_EQ(r.size, 0u);
        cancelled++;
      } else if (r.op == GAIO_OP_READ) {
        ASSERT_EQ(r.error, 0) << Describe(r);
        ASSERT_GT(r.size, 0u);
        ASSERT_LE(r.size, kSlot);
        echoed_in += r.size;
        s->len = r.size;
        ASSERT_EQ(gaio_write(w_, b, s->buf.data(), r.size, s), 0);
        ++*want;
      } else {
        ASSERT_EQ(r.op, GAIO_OP_WRITE) << Describe(r);
        EXPECT_EQ(r.error, 0) << Describe(r);
        EXPECT_EQ(r.size, s->len);
        echoed_out += r.size;
        if (echoed_in < kLen) {
          ASSERT_EQ(gaio_read(w_, b, s->buf.data(), kSlot, s), 0);
          ++*want;
        }
      }
    }
    /* Everything came back: the echo reads still pending on b are cancelled by the free. */
    if (wrote && got && echoed_out == kLen && !freed_b) {
      EXPECT_EQ(gaio_free(w_, b), 0);
      freed_b = true;
    }
  };
  Collected c = WaitResults(w_, 2 + slots.size(), 30000, on_batch);
  ASSERT_FALSE(c.timed_out);
  EXPECT_TRUE(wrote);
  EXPECT_TRUE(got);
  EXPECT_TRUE(freed_b);
  EXPECT_EQ(echoed_in, kLen);
  EXPECT_EQ(echoed_out, kLen);
  /* The slot that read the last bytes is not resubmitted, so at most three reads are left. */
  EXPECT_LT(cancelled, slots.size());
  EXPECT_EQ(PatternMismatch(1, 0, in.data(), kLen), SIZE_MAX) << "echo differs";
  FreeAndFinish({a});
}

/* read_full waits for all len bytes and takes no more than len: the rest of the stream is left
 * for the next read. */
TEST_P(GaioTest, ReadFullFillsExactly) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> stream = Pattern(2, 1500);
  std::vector<uint8_t> buf(1000, 0);
  int tag = 0;
  ASSERT_EQ(gaio_read_full(w_, a, buf.data(), buf.size(), &tag, 0), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), stream.data(), 300));
  ExpectNoResult(w_, 100); /* 300 of 1000 bytes: not complete yet */
  ASSERT_TRUE(WriteAll(p.b.get(), stream.data() + 300, 1200));
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ_FULL, 0, 1000);
  EXPECT_EQ(c.results[0].buf, buf.data());
  EXPECT_EQ(c.results[0].flags, 0u);
  EXPECT_EQ(memcmp(buf.data(), stream.data(), 1000), 0);

  std::vector<uint8_t> rest(4096);
  size_t got = 0;
  while (got < 500) {
    ASSERT_EQ(gaio_read(w_, a, rest.data() + got, rest.size() - got, &tag), 0);
    c = WaitResults(w_, 1);
    ASSERT_EQ(c.results.size(), 1u);
    ASSERT_EQ(c.results[0].error, 0) << Describe(c.results[0]);
    ASSERT_GT(c.results[0].size, 0u);
    EXPECT_EQ(c.results[0].op, GAIO_OP_READ);
    got += c.results[0].size;
  }
  EXPECT_EQ(got, 500u);
  EXPECT_EQ(memcmp(rest.data(), stream.data() + 1000, 500), 0);
  FreeAndFinish({a});
}

TEST_P(GaioTest, ReadFullEofReportsPartialSize) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> stream = Pattern(3, 123);
  std::vector<uint8_t> buf(1000, 0);
  int tag = 0;
  ASSERT_EQ(gaio_read_full(w_, a, buf.data(), buf.size(), &tag, 0), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), stream.data(), stream.size()));
  ASSERT_EQ(shutdown(p.b.get(), SHUT_WR), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ_FULL, GAIO_EOF, 123);
  EXPECT_EQ(memcmp(buf.data(), stream.data(), 123), 0);

  /* Nothing left: the next read_full sees end of stream at once. */
  ASSERT_EQ(gaio_read_full(w_, a, buf.data(), buf.size(), &tag, 0), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ_FULL, GAIO_EOF, 0);
  FreeAndFinish({a});
}

TEST_P(GaioTest, ReadFullDeadlineReportsPartialSize) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> stream = Pattern(4, 87);
  std::vector<uint8_t> buf(1000, 0);
  int tag = 0;
  const uint64_t deadline = gaio_now() + 200 * kMs;
  ASSERT_EQ(gaio_read_full(w_, a, buf.data(), buf.size(), &tag, deadline), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), stream.data(), 77));
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_GE(gaio_now(), deadline) << "deadline fired early";
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ_FULL, -ETIMEDOUT, 77);
  EXPECT_EQ(memcmp(buf.data(), stream.data(), 77), 0);

  /* The 77 bytes were consumed, nothing else: the stream continues where it stopped. */
  ASSERT_TRUE(WriteAll(p.b.get(), stream.data() + 77, 10));
  ASSERT_EQ(gaio_read_full(w_, a, buf.data(), 10, &tag, 0), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ_FULL, 0, 10);
  EXPECT_EQ(memcmp(buf.data(), stream.data() + 77, 10), 0);
  FreeAndFinish({a});
}

/* nconns TCP connections at once; each peer sends its own pattern of several KB; the watcher
 * reads them with NULL buffers (swap), copying before the next gaio_wait() and resubmitting
 * until every byte is in. */
void GaioTest::RunNullBufferReads(size_t nconns, size_t swap_size, size_t read_max) {
  gaio_watcher *w = w_;
  if (swap_size != 0 || read_max != 0) {
    gaio_options o = {};
    o.swap_size = swap_size;
    o.read_max = read_max;
    w = NewWatcher(o);
    ASSERT_NE(w, nullptr);
  }
  const size_t eff_swap = swap_size ? swap_size : GAIO_DEFAULT_SWAP_SIZE;
  const size_t eff_read_max =
      std::min(read_max ? read_max : size_t{GAIO_DEFAULT_READ_MAX}, eff_swap);

  std::vector<SocketPair> pairs = TcpPairs(nconns);
  ASSERT_EQ(pairs.size(), nconns);
  struct Conn {
    int fd = -1;
    size_t expect = 0;
    std::vector<uint8_t> got;
  };
  std::vector<Conn> conns(nconns);
  std::vector<int> fds;
  for (size_t i = 0; i < nconns; i++) {
    conns[i].expect = 2048 + (i * 977) % 6144;
    conns[i].fd = Attach(pairs[i].b, w);
    ASSERT_GE(conns[i].fd, 0);
    fds.push_back(conns[i].fd);
  }
  for (size_t i = 0; i < nconns; i++) {
    std::vector<uint8_t> data = Pattern(1000 + i, conns[i].expect);
    ASSERT_TRUE(WriteAll(pairs[i].a.get(), data.data(), data.size()));
  }
  for (size_t i = 0; i < nconns; i++) {
    ASSERT_EQ(gaio_read(w, conns[i].fd, nullptr, 0, &conns[i]), 0);
  }

  size_t bad = 0, batches = 0;
  auto on_batch = [&](const gaio_result *res, int n, size_t *want) {
    batches++;
    /* Swap slices handed out together must not overlap, and all fit in the swap buffer. */
    std::vector<std::pair<uintptr_t, size_t>> ranges;
    size_t batch_bytes = 0;
    for (int i = 0; i < n; i++) {
      const gaio_result &r = res[i];
      Conn *c = static_cast<Conn *>(r.ctx);
      if (c < &conns.front() || c > &conns.back() || r.error != 0 || r.size == 0 ||
          !(r.flags & GAIO_RESULT_SWAP) || r.fd != c->fd || r.op != GAIO_OP_READ ||
          r.size > eff_read_max || r.buf == nullptr) {
        if (bad++ < 5) ADD_FAILURE() << "bad result " << Describe(r);
        continue;
      }
      ranges.emplace_back(reinterpret_cast<uintptr_t>(r.buf), r.size);
      batch_bytes += r.size;
    }
    EXPECT_LE(batch_bytes, eff_swap) << "more swap bytes in one batch than the swap buffer";
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); i++) {
      EXPECT_GE(ranges[i].first, ranges[i - 1].first + ranges[i - 1].second)
          << "swap slices overlap within one batch";
    }
    /* Copy out only now, after every result of the batch is known: an overlapping slice
     * would have clobbered an earlier one and the byte comparison below fails. */
    for (int i = 0; i < n; i++) {
      const gaio_result &r = res[i];
      Conn *c = static_cast<Conn *>(r.ctx);
      if (c < &conns.front() || c > &conns.back() || r.error != 0 || r.size == 0) continue;
      const uint8_t *p = static_cast<const uint8_t *>(r.buf);
      c->got.insert(c->got.end(), p, p + r.size);
      if (c->got.size() < c->expect) {
        ASSERT_EQ(gaio_read(w, c->fd, nullptr, 0, c), 0);
        ++*want;
      }
    }
  };
  Collected c = WaitResults(w, nconns, 60000, on_batch);
  ASSERT_FALSE(c.timed_out);
  EXPECT_EQ(bad, 0u);
  size_t wrong = 0;
  for (size_t i = 0; i < nconns; i++) {
    const Conn &cn = conns[i];
    if (cn.got.size() != cn.expect ||
        PatternMismatch(1000 + i, 0, cn.got.data(), cn.got.size()) != SIZE_MAX) {
      if (wrong++ < 5) {
        ADD_FAILURE() << "conn " << i << ": got " << cn.got.size() << " of " << cn.expect
                      << " bytes, first mismatch at "
                      << PatternMismatch(1000 + i, 0, cn.got.data(), cn.got.size());
      }
    }
  }
  EXPECT_EQ(wrong, 0u);
  FreeAndFinish(fds, w);
  /* The watcher closed the server ends: every peer sees end of stream. */
  for (size_t i = 0; i < nconns; i++) {
    bool eof = false;
    std::vector<uint8_t> rest = ReadToEof(pairs[i].a.get(), 5000, &eof, nullptr);
    EXPECT_TRUE(eof && rest.empty()) << "peer " << i;
    if (!eof) break;
  }
}

TEST_P(GaioTest, NullBufferReads1000Conns) { RunNullBufferReads(1000, 0, 0); }

/* A swap buffer with room for one slice: every gaio_wait() serves one NULL-buffer read, the
 * others wait for the next call. It must still finish (the Go library hangs here). */
TEST_P(GaioTest, NullBufferReads1000ConnsTinySwap) { RunNullBufferReads(1000, 4096, 4096); }

/* Several small slices per batch. */
TEST_P(GaioTest, NullBufferReadsSmallReadMax) { RunNullBufferReads(200, 4096, 1000); }

/* On epoll a NULL-buffer read keeps only the part of its read_max slice that it filled: 100
 * connections with 100 bytes waiting, under the default 64 KiB swap and 16 KiB read_max, are
 * all served in the first batch (whole slices would fit only 4). io_uring's provided buffers
 * are whole read_max slices, so there only the count of results is checked. */
TEST_P(GaioTest, SmallSwapReadsShareTheSwapBuffer) {
  const size_t kConns = 100;
  std::vector<SocketPair> pairs = TcpPairs(kConns);
  ASSERT_EQ(pairs.size(), kConns);
  std::vector<int> fds;
  for (size_t i = 0; i < kConns; i++) {
    ASSERT_TRUE(WriteAll(pairs[i].b.get(), Pattern(i, 100).data(), 100));
    fds.push_back(Attach(pairs[i].a));
    ASSERT_GE(fds.back(), 0);
  }
  for (size_t i = 0; i < kConns; i++) {
    /* Bytes written to a loopback peer are readable once write() returned. */
    ASSERT_EQ(gaio_read(w_, fds[i], nullptr, 0, &fds[i]), 0);
  }
  std::vector<gaio_result> res(kConns);
  int n = gaio_wait(w_, res.data(), static_cast<int>(kConns), 5000);
  ASSERT_GT(n, 0);
  if (GetParam() == "epoll") {
    EXPECT_EQ(n, static_cast<int>(kConns));
  }
  size_t got = 0;
  Collected rest;
  auto check = [&](const gaio_result &r) {
    const int *p = static_cast<const int *>(r.ctx);
    const size_t i = static_cast<size_t>(p - fds.data());
    ASSERT_LT(i, kConns);
    EXPECT_EQ(r.error, 0) << Describe(r);
    EXPECT_EQ(r.size, 100u) << Describe(r);
    EXPECT_EQ(PatternMismatch(i, 0, static_cast<const uint8_t *>(r.buf), r.size), SIZE_MAX);
    got++;
  };
  for (int j = 0; j < n; j++) check(res[j]);
  rest = WaitResults(w_, kConns - static_cast<size_t>(n), 20000,
                     [&](const gaio_result *r, int m, size_t *) {
                       for (int j = 0; j < m; j++) check(r[j]);
                     });
  EXPECT_EQ(got, kConns);
  FreeAndFinish(fds);
}

/* read_max larger than swap_size is clamped to it. */
TEST_P(GaioTest, NullBufferReadMaxClampedToSwapSize) { RunNullBufferReads(50, 4096, 65536); }

/* The swap bytes of a batch stay valid until the next gaio_wait(), even when more NULL-buffer
 * reads are submitted (from this and from another thread) on fds that already have data. */
TEST_P(GaioTest, SwapBytesSurviveSubmitsUntilNextWait) {
  std::vector<SocketPair> pairs;
  std::vector<int> fds;
  for (int i = 0; i < 4; i++) {
    pairs.push_back(UnixPair());
    fds.push_back(Attach(pairs.back().a));
    ASSERT_GE(fds.back(), 0);
  }
  for (int i = 0; i < 4; i++) {
    std::vector<uint8_t> d = Pattern(50 + i, 100);
    ASSERT_TRUE(WriteAll(pairs[i].b.get(), d.data(), d.size()));
  }
  int tags[4] = {0, 1, 2, 3};
  ASSERT_EQ(gaio_read(w_, fds[0], nullptr, 0, &tags[0]), 0);
  ASSERT_EQ(gaio_read(w_, fds[1], nullptr, 0, &tags[1]), 0);

  gaio_result batch[8];
  int n = 0;
  {
    Watchdog wd("first gaio_wait", 20000);
    n = gaio_wait(w_, batch, 8, 10000);
  }
  ASSERT_GE(n, 1);
  ASSERT_LE(n, 2);
  /* More NULL-buffer reads on fds with data, from here and from another thread. */
  ASSERT_EQ(gaio_read(w_, fds[2], nullptr, 0, &tags[2]), 0);
  std::thread t([&] { EXPECT_EQ(gaio_read(w_, fds[3], nullptr, 0, &tags[3]), 0); });
  t.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 0; i < n; i++) {
    const gaio_result &r = batch[i];
    int k = *static_cast<int *>(r.ctx);
    ExpectResult(r, &tags[k], fds[k], GAIO_OP_READ, 0, 100);
    EXPECT_TRUE(r.flags & GAIO_RESULT_SWAP);
    EXPECT_EQ(PatternMismatch(50 + k, 0, static_cast<const uint8_t *>(r.buf), 100), SIZE_MAX)
        << "swap bytes of fd " << k << " changed before the next gaio_wait()";
  }
  std::set<int> seen;
  for (int i = 0; i < n; i++) seen.insert(*static_cast<int *>(batch[i].ctx));
  Collected c = WaitResults(w_, 4 - n, 20000, [&](const gaio_result *res, int m, size_t *) {
    for (int i = 0; i < m; i++) {
      int k = *static_cast<int *>(res[i].ctx);
      EXPECT_TRUE(seen.insert(k).second);
      ExpectResult(res[i], &tags[k], fds[k], GAIO_OP_READ, 0, 100);
      EXPECT_EQ(PatternMismatch(50 + k, 0, static_cast<const uint8_t *>(res[i].buf), 100),
                SIZE_MAX);
    }
  });
  EXPECT_EQ(seen.size(), 4u);
  FreeAndFinish(fds);
}

/* Distinct ctx pointers (NULL and odd values included) come back unchanged, with the right fd,
 * op, buffer and bytes. */
TEST_P(GaioTest, ContextPassing) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  int b = Attach(p.b);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  static const char kHello[] = "hello world"; /* 11 bytes, a -> b */
  static const char kPing[] = "ping";         /* 4 bytes, b -> a */
  static const char kBang[] = "!";            /* 1 byte, b -> a */
  uint8_t rb_hello[11] = {}, rb_ping[4] = {};
  int local = 0;
  void *const c_hello_w = reinterpret_cast<void *>(uintptr_t{1});
  void *const c_hello_r = nullptr;
  void *const c_ping_w = &local;
  void *const c_ping_r = reinterpret_cast<void *>(UINTPTR_MAX);
  void *const c_bang_w = reinterpret_cast<void *>(uintptr_t{0xdeadbeef});
  void *const c_bang_r = reinterpret_cast<void *>(uintptr_t{0x1000});

  ASSERT_EQ(gaio_write(w_, a, kHello, 11, c_hello_w), 0);
  ASSERT_EQ(gaio_read_full(w_, b, rb_hello, 11, c_hello_r, 0), 0);
  ASSERT_EQ(gaio_write_deadline(w_, b, kPing, 4, c_ping_w, gaio_now() + 60000 * kMs), 0);
  ASSERT_EQ(gaio_read_full(w_, a, rb_ping, 4, c_ping_r, gaio_now() + 60000 * kMs), 0);
  ASSERT_EQ(gaio_write(w_, b, kBang, 1, c_bang_w), 0);
  ASSERT_EQ(gaio_read_deadline(w_, a, nullptr, 0, c_bang_r, gaio_now() + 60000 * kMs), 0);

  struct Want {
    int fd, op;
    const void *buf;
    size_t size;
    std::string bytes;
  };
  std::map<const void *, Want> want = {
      {c_hello_w, {a, GAIO_OP_WRITE, kHello, 11, ""}},
      {c_hello_r, {b, GAIO_OP_READ_FULL, rb_hello, 11, "hello world"}},
      {c_ping_w, {b, GAIO_OP_WRITE, kPing, 4, ""}},
      {c_ping_r, {a, GAIO_OP_READ_FULL, rb_ping, 4, "ping"}},
      {c_bang_w, {b, GAIO_OP_WRITE, kBang, 1, ""}},
      {c_bang_r, {a, GAIO_OP_READ, nullptr, 1, "!"}},
  };
  WaitResults(w_, 6, 20000, [&](const gaio_result *res, int n, size_t *) {
    for (int i = 0; i < n; i++) {
      const gaio_result &r = res[i];
      auto it = want.find(r.ctx);
      ASSERT_NE(it, want.end()) << "unknown or repeated ctx: " << Describe(r);
      const Want &x = it->second;
      ExpectResult(r, it->first, x.fd, x.op, 0, x.size);
      if (x.buf != nullptr) {
        EXPECT_EQ(r.buf, x.buf);
        EXPECT_EQ(r.flags, 0u);
      } else {
        EXPECT_TRUE(r.flags & GAIO_RESULT_SWAP) << Describe(r);
      }
      if (!x.bytes.empty() && r.size == x.bytes.size()) {
        EXPECT_EQ(std::string(static_cast<const char *>(r.buf), r.size), x.bytes);
      }
      want.erase(it);
    }
  });
  EXPECT_TRUE(want.empty());
  FreeAndFinish({a, b});
}

/* Many reads and writes outstanding on one socket in both directions at once, behind a 4 MiB
 * write each way so that the small ones queue (more than GAIO_MAX_WRITE_IOV of them): each
 * direction completes in submission order and the bytes land where they belong. */
TEST_P(GaioTest, ManyOutstandingFifoFullDuplex) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  int b = Attach(p.b);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  const size_t K = 300;
  std::vector<size_t> size(K), off(K);
  size_t total = 0;
  for (size_t i = 0; i < K; i++) {
    size[i] = i == 0 ? (4u << 20) : 1 + (i * 2654435761u) % 5000;
    off[i] = total;
    total += size[i];
  }
  struct Op {
    int dir;  /* 0: a -> b, 1: b -> a */
    int kind; /* 0: write, 1: read_full */
    size_t i;
  };
  std::vector<uint8_t> stream[2] = {Pattern(11, total), Pattern(12, total)};
  std::vector<uint8_t> recv[2] = {std::vector<uint8_t>(total), std::vector<uint8_t>(total)};
  std::vector<Op> ops;
  ops.reserve(4 * K);
  const int src[2] = {a, b}, dst[2] = {b, a};
  for (size_t i = 0; i < K; i++) {
    for (int d = 0; d < 2; d++) {
      ops.push_back({d, 0, i});
      ASSERT_EQ(gaio_write(w_, src[d], stream[d].data() + off[i], size[i], &ops.back()), 0);
      ops.push_back({d, 1, i});
      ASSERT_EQ(gaio_read_full(w_, dst[d], recv[d].data() + off[i], size[i], &ops.back(), 0), 0);
    }
  }
  size_t next[2][2] = {{0, 0}, {0, 0}};
  Collected c = WaitResults(w_, 4 * K, 30000, [&](const gaio_result *res, int n, size_t *) {
    for (int j = 0; j < n; j++) {
      const gaio_result &r = res[j];
      const Op *op = static_cast<const Op *>(r.ctx);
      ASSERT_TRUE(op >= &ops.front() && op <= &ops.back()) << Describe(r);
      EXPECT_EQ(op->i, next[op->dir][op->kind]) << "out of FIFO order: " << Describe(r);
      next[op->dir][op->kind] = op->i + 1;
      int fd = op->kind == 0 ? src[op->dir] : dst[op->dir];
      int code = op->kind == 0 ? GAIO_OP_WRITE : GAIO_OP_READ_FULL;
      ExpectResult(r, op, fd, code, 0, size[op->i]);
    }
  });
  ASSERT_FALSE(c.timed_out);
  EXPECT_EQ(PatternMismatch(11, 0, recv[0].data(), total), SIZE_MAX);
  EXPECT_EQ(PatternMismatch(12, 0, recv[1].data(), total), SIZE_MAX);
  FreeAndFinish({a, b});
}

/* Plain reads (complete on the first bytes) outstanding in numbers complete in submission
 * order, so their buffers concatenated in result order are the stream. */
TEST_P(GaioTest, PlainReadsCompleteInFifoOrder) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  int b = Attach(p.b);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  const size_t kTotal = 200 * 1024;
  std::vector<uint8_t> stream = Pattern(13, kTotal);
  /* The writer sends in pieces, so that the reads see many separate arrivals. */
  std::vector<int> wtags(100);
  for (size_t i = 0; i < 100; i++) {
    ASSERT_EQ(gaio_write(w_, a, stream.data() + i * 2048, 2048, &wtags[i]), 0);
  }
  struct Slot {
    std::vector<uint8_t> buf;
    uint64_t seq = 0;
  };
  std::vector<Slot> slots(64);
  uint64_t submit_seq = 0, expect_seq = 0;
  for (Slot &s : slots) {
    s.buf.resize(777);
    s.seq = submit_seq++;
    ASSERT_EQ(gaio_read(w_, b, s.buf.data(), s.buf.size(), &s), 0);
  }
  std::vector<uint8_t> got;
  size_t next_write = 0, cancelled = 0;
  bool freed = false;
  auto on_batch = [&](const gaio_result *res, int n, size_t *want) {
    for (int j = 0; j < n; j++) {
      const gaio_result &r = res[j];
      if (r.fd == a) {
        ASSERT_EQ(r.ctx, &wtags[next_write]) << "write out of order: " << Describe(r);
        ExpectResult(r, &wtags[next_write], a, GAIO_OP_WRITE, 0, 2048);
        next_write++;
        continue;
      }
      Slot *s = static_cast<Slot *>(r.ctx);
      ASSERT_TRUE(s >= &slots.front() && s <= &slots.back()) << Describe(r);
      if (freed) {
        EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
        cancelled++;
        continue;
      }
      EXPECT_EQ(s->seq, expect_seq) << "read out of FIFO order";
      expect_seq = s->seq + 1;
      ASSERT_EQ(r.error, 0) << Describe(r);
      ASSERT_GT(r.size, 0u);
      EXPECT_EQ(r.buf, s->buf.data());
      got.insert(got.end(), s->buf.data(), s->buf.data() + r.size);
      if (got.size() < kTotal) {
        s->seq = submit_seq++;
        ASSERT_EQ(gaio_read(w_, b, s->buf.data(), s->buf.size(), s), 0);
        ++*want;
      }
    }
    if (got.size() >= kTotal && !freed) {
      EXPECT_EQ(gaio_free(w_, b), 0);
      freed = true;
    }
  };
  Collected c = WaitResults(w_, 100 + slots.size(), 30000, on_batch);
  ASSERT_FALSE(c.timed_out);
  EXPECT_EQ(next_write, 100u);
  /* Every slot but the one that read the last bytes was pending when b was freed. */
  EXPECT_EQ(cancelled, slots.size() - 1);
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_EQ(PatternMismatch(13, 0, got.data(), kTotal), SIZE_MAX);
  FreeAndFinish({a});
}

/* ------------------------------------------------------------------------------------------ */
/* Deadlines                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* nreads reads with one common deadline, 8 per socket, on sockets that never get data: each
 * completes exactly once with -ETIMEDOUT and size 0, not before the deadline, and the reads of
 * one fd in submission order. */
void GaioTest::RunDeadlines(size_t nreads) {
  const size_t kPerFd = 8;
  const size_t nconns = nreads / kPerFd;
  std::vector<SocketPair> pairs = TcpPairs(nconns);
  ASSERT_EQ(pairs.size(), nconns);
  std::vector<int> fds;
  for (SocketPair &p : pairs) {
    fds.push_back(Attach(p.a));
    ASSERT_GE(fds.back(), 0);
  }
  std::vector<std::array<uint8_t, 16>> bufs(nreads);
  std::vector<size_t> idx(nreads);
  std::iota(idx.begin(), idx.end(), 0);
  const uint64_t deadline = gaio_now() + 500 * kMs;
  for (size_t i = 0; i < nreads; i++) {
    ASSERT_EQ(gaio_read_deadline(w_, fds[i % nconns], bufs[i].data(), 16, &idx[i], deadline), 0);
  }
  std::vector<int> seen(nreads, 0);
  std::vector<long> last(nconns, -1);
  size_t bad = 0;
  Collected c = WaitResults(w_, nreads, 30000, [&](const gaio_result *res, int n, size_t *) {
    const uint64_t now = gaio_now();
    EXPECT_GE(now, deadline) << "deadline fired early";
    for (int j = 0; j < n; j++) {
      const gaio_result &r = res[j];
      const size_t *p = static_cast<const size_t *>(r.ctx);
      if (p < &idx.front() || p > &idx.back()) {
        if (bad++ < 5) ADD_FAILURE() << "unknown ctx " << Describe(r);
        continue;
      }
      size_t i = *p;
      size_t conn = i % nconns;
      seen[i]++;
      if (r.error != -ETIMEDOUT || r.size != 0 || r.op != GAIO_OP_READ || r.fd != fds[conn] ||
          r.buf != bufs[i].data() || static_cast<long>(i) <= last[conn]) {
        if (bad++ < 5) {
          ADD_FAILURE() << "read " << i << " (previous on its fd " << last[conn]
                        << "): " << Describe(r);
        }
      }
      last[conn] = static_cast<long>(i);
    }
  });
  ASSERT_FALSE(c.timed_out);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(nreads));
  ExpectNoResult(w_, 50);
  FreeAndFinish(fds);
}

TEST_P(GaioTest, Deadline1k) { RunDeadlines(1024); }
TEST_P(GaioTest, Deadline4k) { RunDeadlines(4096); }
TEST_P(GaioTest, Deadline8k) { RunDeadlines(8192); }

/* A write that cannot finish (the peer does not read) times out with the bytes written so far,
 * 0 < size < len, and the stream holds exactly those bytes. */
TEST_P(GaioTest, WriteDeadlineReportsPartialSize) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  const size_t kLen = 32u << 20;
  std::vector<uint8_t> out = Pattern(5, kLen);
  int tag = 0;
  const uint64_t deadline = gaio_now() + 300 * kMs;
  ASSERT_EQ(gaio_write_deadline(w_, a, out.data(), kLen, &tag, deadline), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_GE(gaio_now(), deadline) << "deadline fired early";
  const gaio_result r = c.results[0];
  EXPECT_EQ(r.ctx, &tag);
  EXPECT_EQ(r.op, GAIO_OP_WRITE);
  EXPECT_EQ(r.error, -ETIMEDOUT);
  EXPECT_GT(r.size, 0u);
  EXPECT_LT(r.size, kLen);
  FreeAndFinish({a});
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), r.size);
  EXPECT_EQ(PatternMismatch(5, 0, got.data(), got.size()), SIZE_MAX);
}

/* A queued write that times out behind a blocked one leaves a consistent stream: the peer gets
 * the bytes each write reports, in order, and nothing else. */
TEST_P(GaioTest, WriteDeadlineStreamHoldsExactlyReportedBytes) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  const size_t kLen[3] = {16u << 20, 8u << 20, 1000};
  std::vector<uint8_t> data[3] = {Pattern(21, kLen[0]), Pattern(22, kLen[1]), Pattern(23, kLen[2])};
  int tags[3] = {0, 1, 2};
  const uint64_t deadline = gaio_now() + 200 * kMs;
  ASSERT_EQ(gaio_write(w_, a, data[0].data(), kLen[0], &tags[0]), 0);
  ASSERT_EQ(gaio_write_deadline(w_, a, data[1].data(), kLen[1], &tags[1], deadline), 0);
  ASSERT_EQ(gaio_write(w_, a, data[2].data(), kLen[2], &tags[2]), 0);

  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  const gaio_result r1 = c.results[0];
  ASSERT_EQ(r1.ctx, &tags[1]) << Describe(r1);
  EXPECT_EQ(r1.error, -ETIMEDOUT);
  EXPECT_LT(r1.size, kLen[1]);

  std::vector<uint8_t> got;
  bool eof = false;
  std::thread reader([&] { got = ReadToEof(p.b.get(), 30000, &eof, nullptr); });
  c = WaitResults(w_, 2, 30000);
  EXPECT_EQ(c.results.size(), 2u);
  if (c.results.size() == 2) {
    ExpectResult(c.results[0], &tags[0], a, GAIO_OP_WRITE, 0, kLen[0]);
    ExpectResult(c.results[1], &tags[2], a, GAIO_OP_WRITE, 0, kLen[2]);
  }
  FreeAndFinish({a});
  reader.join();
  EXPECT_TRUE(eof);
  std::vector<uint8_t> want = data[0];
  want.insert(want.end(), data[1].begin(), data[1].begin() + static_cast<long>(r1.size));
  want.insert(want.end(), data[2].begin(), data[2].end());
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "stream is not the reported bytes in order";
}

/* A request that completes before its deadline never gets a second, late -ETIMEDOUT. */
TEST_P(GaioTest, DeadlineNotFiredAfterCompletion) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "12345", 5));
  uint8_t buf[16];
  int t_read = 0, t_write = 0, t_full = 0;
  const uint64_t deadline = gaio_now() + 150 * kMs;
  ASSERT_EQ(gaio_read_deadline(w_, a, buf, sizeof buf, &t_read, deadline), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t_read, a, GAIO_OP_READ, 0, 5);
  ASSERT_EQ(gaio_write_deadline(w_, a, "abcdefgh", 8, &t_write, deadline), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t_write, a, GAIO_OP_WRITE, 0, 8);
  ASSERT_TRUE(WriteAll(p.b.get(), "ABCDEFGH", 8));
  ASSERT_EQ(gaio_read_full(w_, a, buf, 8, &t_full, deadline), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t_full, a, GAIO_OP_READ_FULL, 0, 8);
  EXPECT_EQ(memcmp(buf, "ABCDEFGH", 8), 0);
  ExpectNoResult(w_, 300); /* well past the deadline */
  char peer[8];
  EXPECT_EQ(ReadExactly(p.b.get(), peer, 8, 5000), 8u);
  EXPECT_EQ(memcmp(peer, "abcdefgh", 8), 0);
  FreeAndFinish({a});
}

/* A deadline already in the past is not a submit error: the request is accepted and times out. */
TEST_P(GaioTest, DeadlineInThePastTimesOut) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t buf[16];
  int t1 = 0, t2 = 0;
  ASSERT_EQ(gaio_read_deadline(w_, a, buf, sizeof buf, &t1, 1), 0);
  ASSERT_EQ(gaio_read_full(w_, a, buf, sizeof buf, &t2, gaio_now() - 1), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectResult(c.results[0], &t1, a, GAIO_OP_READ, -ETIMEDOUT, 0);
  ExpectResult(c.results[1], &t2, a, GAIO_OP_READ_FULL, -ETIMEDOUT, 0);
  FreeAndFinish({a});
}

/* Deadlines on different fds fire in deadline order, none early. */
TEST_P(GaioTest, DeadlinesFireInDeadlineOrder) {
  const int kOffsetsMs[5] = {120, 40, 200, 80, 160};
  std::vector<SocketPair> pairs;
  std::vector<int> fds;
  uint8_t bufs[5][8];
  int tags[5] = {0, 1, 2, 3, 4};
  uint64_t deadlines[5];
  for (int i = 0; i < 5; i++) {
    pairs.push_back(UnixPair());
    fds.push_back(Attach(pairs.back().a));
    ASSERT_GE(fds.back(), 0);
  }
  const uint64_t t0 = gaio_now();
  for (int i = 0; i < 5; i++) {
    deadlines[i] = t0 + static_cast<uint64_t>(kOffsetsMs[i]) * kMs;
    ASSERT_EQ(gaio_read_deadline(w_, fds[i], bufs[i], 8, &tags[i], deadlines[i]), 0);
  }
  std::vector<int> order;
  WaitResults(w_, 5, 20000, [&](const gaio_result *res, int n, size_t *) {
    const uint64_t now = gaio_now();
    for (int j = 0; j < n; j++) {
      int k = *static_cast<int *>(res[j].ctx);
      ExpectResult(res[j], &tags[k], fds[k], GAIO_OP_READ, -ETIMEDOUT, 0);
      EXPECT_GE(now, deadlines[k]) << "deadline " << k << " fired early";
      order.push_back(k);
    }
  });
  EXPECT_EQ(order, (std::vector<int>{1, 3, 0, 4, 2}));
  FreeAndFinish(fds);
}

/* ------------------------------------------------------------------------------------------ */
/* Argument errors and limits                                                                   */
/* ------------------------------------------------------------------------------------------ */

TEST_P(GaioTest, EmptyBuffer) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t buf[16];
  int tag = 0;
  const uint64_t dl = gaio_now() + 60000 * kMs;
  const gaio_stats before = Stats();
  EXPECT_EQ(gaio_write(w_, a, buf, 0, &tag), -EINVAL);
  EXPECT_EQ(gaio_write(w_, a, nullptr, 10, &tag), -EINVAL);
  EXPECT_EQ(gaio_write(w_, a, nullptr, 0, &tag), -EINVAL);
  EXPECT_EQ(gaio_write_deadline(w_, a, buf, 0, &tag, dl), -EINVAL);
  EXPECT_EQ(gaio_write_deadline(w_, a, nullptr, 10, &tag, dl), -EINVAL);
  EXPECT_EQ(gaio_read_full(w_, a, buf, 0, &tag, 0), -EINVAL);
  EXPECT_EQ(gaio_read_full(w_, a, nullptr, 10, &tag, 0), -EINVAL);
  EXPECT_EQ(gaio_read_full(w_, a, nullptr, 0, &tag, dl), -EINVAL);
  EXPECT_EQ(gaio_read(w_, a, buf, 0, &tag), -EINVAL);
  EXPECT_EQ(gaio_read_deadline(w_, a, buf, 0, &tag, dl), -EINVAL);
  const gaio_stats after = Stats();
  EXPECT_EQ(after.submitted, before.submitted);
  EXPECT_EQ(after.completed, before.completed);
  EXPECT_EQ(after.in_flight, 0u);
  ExpectNoResult(w_, 50);

  /* A NULL buffer read ignores len, so len 0 is valid there. */
  ASSERT_EQ(gaio_read(w_, a, nullptr, 0, &tag), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "xyz", 3));
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_READ, 0, 3);
  EXPECT_TRUE(c.results[0].flags & GAIO_RESULT_SWAP);
  EXPECT_EQ(memcmp(c.results[0].buf, "xyz", 3), 0);
  FreeAndFinish({a});
}

TEST_P(GaioTest, AttachErrors) {
  /* Not an open fd. */
  int closed_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(closed_fd, 0);
  close(closed_fd);
  EXPECT_EQ(gaio_attach(w_, closed_fd), -EBADF);
  EXPECT_EQ(gaio_attach(w_, -1), -EBADF);

  /* Twice. */
  SocketPair p = TcpPair();
  const int a = p.a.get();
  ASSERT_EQ(fcntl(a, F_GETFL) & O_NONBLOCK, 0);
  ASSERT_EQ(Attach(p.a), a);
  EXPECT_NE(fcntl(a, F_GETFL) & O_NONBLOCK, 0) << "attach must set O_NONBLOCK";
  EXPECT_EQ(gaio_attach(w_, a), -EEXIST);

  /* A regular file cannot be polled. */
  std::string dir = getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp";
  std::string path = dir + "/gaio_attach_XXXXXX";
  UniqueFd file(mkstemp(&path[0]));
  ASSERT_TRUE(file.valid());
  unlink(path.c_str());
  EXPECT_EQ(gaio_attach(w_, file.get()), -EPERM);
  EXPECT_TRUE(FdIsOpen(file.get())) << "on error the caller keeps the fd";
  EXPECT_EQ(fcntl(file.get(), F_GETFL) & O_NONBLOCK, 0);

  /* Submits on an fd that is not attached. */
  uint8_t buf[8];
  int tag = 0;
  const int b = p.b.get();
  EXPECT_EQ(gaio_read(w_, b, buf, sizeof buf, &tag), -EBADF);
  EXPECT_EQ(gaio_read(w_, b, nullptr, 0, &tag), -EBADF);
  EXPECT_EQ(gaio_read_deadline(w_, b, buf, sizeof buf, &tag, gaio_now() + kMs), -EBADF);
  EXPECT_EQ(gaio_read_full(w_, b, buf, sizeof buf, &tag, 0), -EBADF);
  EXPECT_EQ(gaio_write(w_, b, buf, sizeof buf, &tag), -EBADF);
  EXPECT_EQ(gaio_write_deadline(w_, b, buf, sizeof buf, &tag, gaio_now() + kMs), -EBADF);
  EXPECT_EQ(gaio_free(w_, b), -EBADF);
  EXPECT_EQ(gaio_read(w_, -1, buf, sizeof buf, &tag), -EBADF);
  EXPECT_EQ(gaio_write(w_, 1 << 30, buf, sizeof buf, &tag), -EBADF);
  EXPECT_TRUE(FdIsOpen(b));
  EXPECT_EQ(fcntl(b, F_GETFL) & O_NONBLOCK, 0);

  const gaio_stats s = Stats();
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.fds, 1u);
  FreeAndFinish({a});
}

/* The fd table is sized from RLIMIT_NOFILE at create: an fd beyond it gives -ERANGE and stays
 * the caller's. An fd opened before the limit is lowered lies beyond it. The library sizes the
 * table from the hard limit, and lowering that cannot be undone, so it happens in a child. */
TEST_P(GaioTest, AttachBeyondTableIsERANGE) {
  SocketPair p = UnixPair();
  const std::string backend = GetParam();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int high = fcntl(p.a.get(), F_DUPFD_CLOEXEC, 1024);
    if (high < 1024) _exit(10);
    rlimit rl = {256, 256};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(11);
    gaio_options o = {};
    o.backend = backend.c_str();
    gaio_watcher *w = nullptr;
    if (gaio_watcher_create(&w, &o) != 0) _exit(12);
    if (gaio_attach(w, high) != -ERANGE) _exit(13);
    if (fcntl(high, F_GETFD) < 0) _exit(14);       /* still the caller's */
    if (gaio_attach(w, p.b.get()) != 0) _exit(15); /* a low fd still works */
    gaio_watcher_destroy(w);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: dup, 11: setrlimit, 12: create, 13: attach beyond the table was not -ERANGE, "
         "14: fd closed, 15: low fd refused";
  ExpectDrained(w_);
}

TEST_P(GaioTest, MaxRequestsGivesENOBUFS) {
  gaio_options o = {};
  o.max_requests = 8;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  ExpectNoResult(w, 0); /* the attach is carried out */
  uint8_t bufs[10][16];
  int tags[10] = {};
  for (int i = 0; i < 8; i++) ASSERT_EQ(gaio_read(w, a, bufs[i], 16, &tags[i]), 0) << i;
  int extra = 0;
  EXPECT_EQ(gaio_read(w, a, bufs[8], 16, &extra), -ENOBUFS);
  EXPECT_EQ(gaio_read(w, a, nullptr, 0, &extra), -ENOBUFS);
  EXPECT_EQ(gaio_read_full(w, a, bufs[8], 16, &extra, 0), -ENOBUFS);
  EXPECT_EQ(gaio_write(w, a, "x", 1, &extra), -ENOBUFS);
  EXPECT_EQ(gaio_write_deadline(w, a, "x", 1, &extra, gaio_now() + kMs), -ENOBUFS);
  EXPECT_EQ(Stats(w).submitted, 8u);

  /* One result delivered frees one place. */
  ASSERT_TRUE(WriteAll(p.b.get(), "z", 1));
  Collected c = WaitResults(w, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tags[0], a, GAIO_OP_READ, 0, 1);
  EXPECT_EQ(gaio_read(w, a, bufs[8], 16, &tags[8]), 0);
  EXPECT_EQ(gaio_read(w, a, bufs[9], 16, &tags[9]), -ENOBUFS);

  /* Deliver one more, then cancel the 7 left. (Below the limit, so that this test does not
   * depend on whether gaio_free() needs a slot: FreeSucceedsAtMaxRequests pins that.) */
  ASSERT_TRUE(WriteAll(p.b.get(), "y", 1));
  c = WaitResults(w, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tags[1], a, GAIO_OP_READ, 0, 1);
  ASSERT_EQ(gaio_free(w, a), 0);
  c = WaitResults(w, 7);
  ASSERT_EQ(c.results.size(), 7u);
  for (const gaio_result &r : c.results) {
    EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
    EXPECT_EQ(r.size, 0u);
  }
  FreeAndFinish({}, w);
  ExpectDrained(w_);
}

/* max_requests bounds accepted requests that have not been delivered, i.e. submit calls that
 * will produce a result. gaio_attach() and gaio_free() produce none: they must not use up that
 * budget (right after an attach, max_requests reads are accepted). */
TEST_P(GaioTest, MaxRequestsCountsOnlyRequestsWithResults) {
  gaio_options o = {};
  o.max_requests = 8;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  uint8_t bufs[8][16];
  int tags[8] = {};
  int accepted = 0;
  for (int i = 0; i < 8; i++) {
    int rc = gaio_read(w, a, bufs[i], 16, &tags[i]);
    EXPECT_EQ(rc, 0) << "read " << i << " of max_requests 8, right after gaio_attach()";
    if (rc == 0) accepted++;
  }
  ExpectNoResult(w, 0);
  ASSERT_EQ(gaio_free(w, a), 0);
  Collected c = WaitResults(w, static_cast<size_t>(accepted));
  for (const gaio_result &r : c.results) EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
  FreeAndFinish({}, w);
  ExpectDrained(w_);
}

/* With max_requests requests pending, gaio_free() must still work (its documented returns are
 * 0, -EBADF and -ESHUTDOWN): it is the only way to cancel them. Likewise gaio_attach() (0,
 * -EBADF, -EEXIST, -EPERM, -ERANGE, -ESHUTDOWN) must not fail for lack of request slots. */
TEST_P(GaioTest, FreeSucceedsAtMaxRequests) {
  gaio_options o = {};
  o.max_requests = 8;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  SocketPair q = UnixPair();
  int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  ExpectNoResult(w, 0);
  uint8_t bufs[8][16];
  int tags[8] = {};
  for (int i = 0; i < 8; i++) ASSERT_EQ(gaio_read(w, a, bufs[i], 16, &tags[i]), 0) << i;
  const int qa = q.a.get();
  int rc_attach = gaio_attach(w, qa);
  EXPECT_EQ(rc_attach, 0) << "gaio_attach() with max_requests requests pending";
  if (rc_attach == 0) q.a.Release();
  int rc_free = gaio_free(w, a);
  EXPECT_EQ(rc_free, 0) << "gaio_free() with max_requests requests pending";
  if (rc_free != 0) {
    /* Make room the only way there is, so that the test can end cleanly. */
    ASSERT_TRUE(WriteAll(p.b.get(), "z", 1));
    Collected c = WaitResults(w, 1);
    ASSERT_EQ(gaio_free(w, a), 0);
    Collected rest = WaitResults(w, 7);
    EXPECT_EQ(rest.results.size(), 7u);
  } else {
    Collected c = WaitResults(w, 8);
    ASSERT_EQ(c.results.size(), 8u);
    for (const gaio_result &r : c.results) EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
  }
  FreeAndFinish(rc_attach == 0 ? std::vector<int>{qa} : std::vector<int>{}, w);
  ExpectDrained(w_);
}

/* A write that would take the fd's queued bytes over max_write_pending completes with -ENOBUFS
 * and writes nothing; smaller writes still go through, in order. */
TEST_P(GaioTest, WriteOverMaxWritePendingIsENOBUFS) {
  gaio_options o = {};
  o.max_write_pending = 64 * 1024;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> big = Pattern(31, 64 * 1024 + 1);
  std::vector<uint8_t> fits = Pattern(32, 64 * 1024);
  int t_big = 0, t_fits = 0;
  ASSERT_EQ(gaio_write(w, a, big.data(), big.size(), &t_big), 0);
  ASSERT_EQ(gaio_write(w, a, fits.data(), fits.size(), &t_fits), 0);
  Collected c = WaitResults(w, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectResult(c.results[0], &t_big, a, GAIO_OP_WRITE, -ENOBUFS, 0);
  ExpectResult(c.results[1], &t_fits, a, GAIO_OP_WRITE, 0, fits.size());
  FreeAndFinish({a}, w);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 10000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(got == fits) << "peer got " << got.size() << " bytes";
  ExpectDrained(w_);
}

/* ------------------------------------------------------------------------------------------ */
/* End of stream, errors, free                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* After the peer's FIN every read sees GAIO_EOF with size 0; writing the other way still works
 * (half close). */
TEST_P(GaioTest, ReadEofRepeatsAndHalfCloseStillWrites) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  ASSERT_EQ(shutdown(p.b.get(), SHUT_WR), 0);
  uint8_t buf[16];
  int t[4] = {};
  ASSERT_EQ(gaio_read(w_, a, buf, sizeof buf, &t[0]), 0);
  ASSERT_EQ(gaio_read(w_, a, nullptr, 0, &t[1]), 0);
  ASSERT_EQ(gaio_read_full(w_, a, buf, sizeof buf, &t[2], 0), 0);
  ASSERT_EQ(gaio_write(w_, a, "still open", 10, &t[3]), 0);
  Collected c = WaitResults(w_, 4);
  ASSERT_EQ(c.results.size(), 4u);
  std::map<const void *, gaio_result> by;
  for (const gaio_result &r : c.results) by[r.ctx] = r;
  ASSERT_EQ(by.size(), 4u);
  ExpectResult(by[&t[0]], &t[0], a, GAIO_OP_READ, GAIO_EOF, 0);
  ExpectResult(by[&t[1]], &t[1], a, GAIO_OP_READ, GAIO_EOF, 0);
  ExpectResult(by[&t[2]], &t[2], a, GAIO_OP_READ_FULL, GAIO_EOF, 0);
  ExpectResult(by[&t[3]], &t[3], a, GAIO_OP_WRITE, 0, 10);
  /* Reads stay in submission order among themselves. */
  std::vector<const void *> reads;
  for (const gaio_result &r : c.results) {
    if (r.op != GAIO_OP_WRITE) reads.push_back(r.ctx);
  }
  EXPECT_EQ(reads, (std::vector<const void *>{&t[0], &t[1], &t[2]}));
  char peer[10];
  EXPECT_EQ(ReadExactly(p.b.get(), peer, 10, 5000), 10u);
  EXPECT_EQ(memcmp(peer, "still open", 10), 0);
  FreeAndFinish({a});
}

/* gaio_free cancels every pending read and write exactly once (-ECANCELED, with the partial size
 * of a write), closes the fd (the peer reads what was written, then EOF), and the fd is unknown
 * afterwards. */
TEST_P(GaioTest, FreeWithPendingReadsAndWrites) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  const size_t kBig = 32u << 20;
  std::vector<uint8_t> big = Pattern(41, kBig);
  std::vector<uint8_t> small = Pattern(42, 1000);
  uint8_t b1[100], b3[1000];
  int t[6] = {0, 1, 2, 3, 4, 5};
  ASSERT_EQ(gaio_read(w_, a, b1, sizeof b1, &t[0]), 0);
  ASSERT_EQ(gaio_read_deadline(w_, a, b1, sizeof b1, &t[1], gaio_now() + 60000 * kMs), 0);
  ASSERT_EQ(gaio_read_full(w_, a, b3, sizeof b3, &t[2], 0), 0);
  ASSERT_EQ(gaio_read(w_, a, nullptr, 0, &t[3]), 0);
  ASSERT_EQ(gaio_write(w_, a, big.data(), kBig, &t[4]), 0);
  ASSERT_EQ(gaio_write_deadline(w_, a, small.data(), small.size(), &t[5], gaio_now() + 60000 * kMs),
            0);
  ExpectNoResult(w_, 100); /* nothing can complete; the big write makes progress */
  ASSERT_EQ(gaio_free(w_, a), 0);
  Collected c = WaitResults(w_, 6);
  ASSERT_EQ(c.results.size(), 6u);
  std::map<const void *, gaio_result> by;
  for (const gaio_result &r : c.results) {
    EXPECT_TRUE(by.emplace(r.ctx, r).second) << "two results for " << Describe(r);
  }
  ASSERT_EQ(by.size(), 6u);
  ExpectResult(by[&t[0]], &t[0], a, GAIO_OP_READ, -ECANCELED, 0);
  ExpectResult(by[&t[1]], &t[1], a, GAIO_OP_READ, -ECANCELED, 0);
  ExpectResult(by[&t[2]], &t[2], a, GAIO_OP_READ_FULL, -ECANCELED, 0);
  ExpectResult(by[&t[3]], &t[3], a, GAIO_OP_READ, -ECANCELED, 0);
  const gaio_result &wb = by[&t[4]];
  EXPECT_EQ(wb.error, -ECANCELED) << Describe(wb);
  EXPECT_GT(wb.size, 0u) << "the big write made no progress in 100 ms";
  EXPECT_LT(wb.size, kBig);
  ExpectResult(by[&t[5]], &t[5], a, GAIO_OP_WRITE, -ECANCELED, 0);

  /* The fd is closed: the peer gets exactly the bytes written, then EOF. */
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), wb.size);
  EXPECT_EQ(PatternMismatch(41, 0, got.data(), got.size()), SIZE_MAX);
  EXPECT_FALSE(FdIsOpen(a));

  /* And it is no longer attached. */
  uint8_t buf[8];
  EXPECT_EQ(gaio_read(w_, a, buf, sizeof buf, &t[0]), -EBADF);
  EXPECT_EQ(gaio_write(w_, a, buf, sizeof buf, &t[0]), -EBADF);
  EXPECT_EQ(gaio_read_full(w_, a, buf, sizeof buf, &t[0], 0), -EBADF);
  EXPECT_EQ(gaio_free(w_, a), -EBADF);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* A free with nothing pending produces no result and closes the fd. */
TEST_P(GaioTest, FreeIdleFdClosesIt) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  EXPECT_EQ(Stats().fds, 1u);
  FreeAndFinish({a});
  bool eof = false;
  EXPECT_TRUE(ReadToEof(p.b.get(), 5000, &eof, nullptr).empty());
  EXPECT_TRUE(eof);
}

/* A submit or a second free right after gaio_free(), before the gaio_wait() that carries the
 * free out. The contract leaves two outcomes: the submit is refused (-EBADF, no result), or it
 * is accepted and gets exactly one result, -ECANCELED or -EBADF. A second free never produces a
 * result (unlike the Go library's leaked opDelete). */
TEST_P(GaioTest, SubmitAndFreeAgainBeforeFreeTakesEffect) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t buf[8];
  int t_read = 0, t_write = 0;
  ASSERT_EQ(gaio_free(w_, a), 0);
  int rc_free2 = gaio_free(w_, a);
  EXPECT_TRUE(rc_free2 == 0 || rc_free2 == -EBADF) << rc_free2;
  int rc_read = gaio_read(w_, a, buf, sizeof buf, &t_read);
  int rc_write = gaio_write(w_, a, "x", 1, &t_write);
  EXPECT_TRUE(rc_read == 0 || rc_read == -EBADF) << rc_read;
  EXPECT_TRUE(rc_write == 0 || rc_write == -EBADF) << rc_write;
  size_t want = (rc_read == 0) + (rc_write == 0);
  Collected c = WaitResults(w_, want);
  for (const gaio_result &r : c.results) {
    EXPECT_TRUE(r.error == -ECANCELED || r.error == -EBADF) << Describe(r);
    EXPECT_EQ(r.size, 0u);
    EXPECT_EQ(r.fd, a);
  }
  ExpectNoResult(w_, 50);
  EXPECT_EQ(gaio_free(w_, a), -EBADF);
  EXPECT_EQ(gaio_read(w_, a, buf, sizeof buf, &t_read), -EBADF);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
  bool eof = false;
  EXPECT_TRUE(ReadToEof(p.b.get(), 5000, &eof, nullptr).empty());
  EXPECT_TRUE(eof);
}

/* Once a free is carried out, the fd number can come back from socket(): attaching it again
 * starts clean (no stale request, event or result of the old attachment). */
TEST_P(GaioTest, FdReuseAfterFreeStartsClean) {
  SocketPair p = UnixPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t old_buf[16], new_buf[16];
  int t_old = 0, t_new = 0;
  ASSERT_EQ(gaio_read(w_, a, old_buf, sizeof old_buf, &t_old), 0);
  ASSERT_EQ(gaio_free(w_, a), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t_old, a, GAIO_OP_READ, -ECANCELED, 0);
  /* The old peer writes into a closed connection: it must not show up anywhere. */
  (void)send(p.b.get(), "stale", 5, MSG_NOSIGNAL);

  SocketPair q = UnixPair();
  if (q.a.get() != a) {
    /* Lowest-free allocation normally gives the number back; say so if not. */
    printf("note: new socket got fd %d, not the freed %d\n", q.a.get(), a);
  }
  int n = Attach(q.a);
  ASSERT_GE(n, 0);
  ASSERT_EQ(gaio_read(w_, n, new_buf, sizeof new_buf, &t_new), 0);
  ExpectNoResult(w_, 50);
  ASSERT_TRUE(WriteAll(q.b.get(), "fresh", 5));
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t_new, n, GAIO_OP_READ, 0, 5);
  EXPECT_EQ(memcmp(new_buf, "fresh", 5), 0);
  FreeAndFinish({n});
}

/* Data and FIN arrive together while no read is pending, and a gaio_wait() consumes their
 * (edge-triggered) event. A read then takes the data with a short read; the FIN is still
 * pending, so the next read must see GAIO_EOF (it raises no new event: treating the short read
 * as "drained, wait for an edge" would leave that read pending forever). */
TEST_P(GaioTest, EofArrivedWithDataIsSeenAfterShortRead) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  ExpectNoResult(w_, 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "hello", 5));
  ASSERT_EQ(shutdown(p.b.get(), SHUT_WR), 0);
  ExpectNoResult(w_, 50); /* consumes the event: no request is pending */
  uint8_t buf[64];
  int t1 = 0, t2 = 0;
  ASSERT_EQ(gaio_read(w_, a, buf, sizeof buf, &t1), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &t1, a, GAIO_OP_READ, 0, 5);
  EXPECT_EQ(memcmp(buf, "hello", 5), 0);
  ASSERT_EQ(gaio_read(w_, a, buf, sizeof buf, &t2), 0);
  c = WaitResults(w_, 1, 3000);
  if (c.results.empty()) {
    ADD_FAILURE() << "the read after the short read never saw the pending EOF";
    ASSERT_EQ(gaio_free(w_, a), 0);
    c = WaitResults(w_, 1);
    FreeAndFinish({});
    return;
  }
  ExpectResult(c.results[0], &t2, a, GAIO_OP_READ, GAIO_EOF, 0);
  FreeAndFinish({a});
}

/* The same with read_full: 5 of 10 bytes then EOF gives GAIO_EOF with size 5. */
TEST_P(GaioTest, EofArrivedWithDataEndsReadFull) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  ExpectNoResult(w_, 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "hello", 5));
  ASSERT_EQ(shutdown(p.b.get(), SHUT_WR), 0);
  ExpectNoResult(w_, 50);
  uint8_t buf[10];
  int t = 0;
  ASSERT_EQ(gaio_read_full(w_, a, buf, sizeof buf, &t, 0), 0);
  Collected c = WaitResults(w_, 1, 3000);
  if (c.results.empty()) {
    ADD_FAILURE() << "read_full never saw the EOF that arrived with its data";
    ASSERT_EQ(gaio_free(w_, a), 0);
    c = WaitResults(w_, 1);
    FreeAndFinish({});
    return;
  }
  ExpectResult(c.results[0], &t, a, GAIO_OP_READ_FULL, GAIO_EOF, 5);
  EXPECT_EQ(memcmp(buf, "hello", 5), 0);
  FreeAndFinish({a});
}

/* One readiness event per poll still serves every fd. */
TEST_P(GaioTest, MaxEventsOneStillServesEveryFd) {
  gaio_options o = {};
  o.max_events = 1;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  const size_t kConns = 50;
  std::vector<SocketPair> pairs;
  std::vector<int> fds;
  std::vector<std::array<uint8_t, 32>> bufs(kConns);
  std::vector<size_t> idx(kConns);
  std::iota(idx.begin(), idx.end(), 0);
  for (size_t i = 0; i < kConns; i++) {
    pairs.push_back(UnixPair());
    fds.push_back(Attach(pairs.back().a, w));
    ASSERT_GE(fds.back(), 0);
    ASSERT_EQ(gaio_read(w, fds[i], bufs[i].data(), 32, &idx[i]), 0);
  }
  ExpectNoResult(w, 20);
  for (size_t i = 0; i < kConns; i++) {
    std::vector<uint8_t> d = Pattern(500 + i, 20);
    ASSERT_TRUE(WriteAll(pairs[i].b.get(), d.data(), d.size()));
  }
  std::vector<int> seen(kConns, 0);
  WaitResults(w, kConns, 20000, [&](const gaio_result *res, int n, size_t *) {
    for (int j = 0; j < n; j++) {
      size_t i = *static_cast<const size_t *>(res[j].ctx);
      ASSERT_LT(i, kConns);
      seen[i]++;
      ExpectResult(res[j], &idx[i], fds[i], GAIO_OP_READ, 0, 20);
      EXPECT_EQ(PatternMismatch(500 + i, 0, bufs[i].data(), 20), SIZE_MAX);
    }
  });
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(kConns));
  FreeAndFinish(fds, w);
  ExpectDrained(w_);
}

/* Writes to a TCP peer that has closed fail with -EPIPE or -ECONNRESET (which one depends on
 * whether the peer's RST has been processed), and never raise SIGPIPE: the disposition is the
 * default one, which would kill the process. */
TEST_P(GaioTest, WriteToClosedPeer) {
  struct sigaction dfl = {}, old_act;
  dfl.sa_handler = SIG_DFL;
  ASSERT_EQ(sigaction(SIGPIPE, &dfl, &old_act), 0);
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old_mask), 0);

  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  p.b.Reset();
  std::vector<uint8_t> chunk = Pattern(51, 64 * 1024);
  int tag = 0, error = 0, writes = 0;
  while (error == 0 && writes < 200) {
    ASSERT_EQ(gaio_write(w_, a, chunk.data(), chunk.size(), &tag), 0);
    writes++;
    Collected c = WaitResults(w_, 1);
    ASSERT_EQ(c.results.size(), 1u);
    error = c.results[0].error;
    if (error == 0) {
      EXPECT_EQ(c.results[0].size, chunk.size());
    } else {
      EXPECT_LT(c.results[0].size, chunk.size());
    }
  }
  EXPECT_TRUE(error == -EPIPE || error == -ECONNRESET) << error << " after " << writes;
  FreeAndFinish({a});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_act, nullptr);
}

/* On a Unix stream socket a closed peer gives -EPIPE on the very first write, without
 * SIGPIPE. */
TEST_P(GaioTest, WriteToClosedUnixPeerIsEPIPE) {
  struct sigaction dfl = {}, old_act;
  dfl.sa_handler = SIG_DFL;
  ASSERT_EQ(sigaction(SIGPIPE, &dfl, &old_act), 0);
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old_mask), 0);

  SocketPair p = UnixPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  p.b.Reset();
  int tag = 0;
  ASSERT_EQ(gaio_write(w_, a, "data", 4, &tag), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, a, GAIO_OP_WRITE, -EPIPE, 0);
  FreeAndFinish({a});
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGPIPE, &old_act, nullptr);
}

/* The peer aborts (SO_LINGER {1, 0}, close: RST) while two reads are pending.
 * Allowed outcomes, from Linux TCP: the RST sets the socket error to ECONNRESET and shuts the
 * socket down without a FIN (no SOCK_DONE), so the first recv() returns ECONNRESET and clears
 * the error; any later recv() returns 0. So the first read must get -ECONNRESET (GAIO_EOF
 * there would mean the library reported a reset as a clean close). The second gets -ECONNRESET
 * if the library fails every pending read with the error, or GAIO_EOF if it reads again. A
 * write afterwards fails with -EPIPE (or -ECONNRESET). */
TEST_P(GaioTest, PeerReset) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t b1[64], b2[64];
  int t1 = 0, t2 = 0, t3 = 0;
  ASSERT_EQ(gaio_read(w_, a, b1, sizeof b1, &t1), 0);
  ASSERT_EQ(gaio_read(w_, a, b2, sizeof b2, &t2), 0);
  ExpectNoResult(w_, 50);
  ASSERT_TRUE(SetLingerZero(p.b.get()));
  p.b.Reset();
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectResult(c.results[0], &t1, a, GAIO_OP_READ, -ECONNRESET, 0);
  EXPECT_EQ(c.results[1].ctx, &t2);
  EXPECT_EQ(c.results[1].size, 0u);
  EXPECT_TRUE(c.results[1].error == -ECONNRESET || c.results[1].error == GAIO_EOF)
      << Describe(c.results[1]);
  ASSERT_EQ(gaio_write(w_, a, "x", 1, &t3), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_TRUE(c.results[0].error == -EPIPE || c.results[0].error == -ECONNRESET)
      << Describe(c.results[0]);
  EXPECT_EQ(c.results[0].size, 0u);
  FreeAndFinish({a});
}

/* ------------------------------------------------------------------------------------------ */
/* Half-close: gaio_shutdown                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* SIGPIPE with its default disposition (which kills the process) and unblocked, for the scope:
 * a write that raised it would end the test. */
class DefaultSigpipe {
 public:
  DefaultSigpipe() {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    EXPECT_EQ(sigaction(SIGPIPE, &dfl, &old_act_), 0);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    EXPECT_EQ(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old_mask_), 0);
  }
  ~DefaultSigpipe() {
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    sigaction(SIGPIPE, &old_act_, nullptr);
  }
  DefaultSigpipe(const DefaultSigpipe &) = delete;
  DefaultSigpipe &operator=(const DefaultSigpipe &) = delete;

 private:
  struct sigaction old_act_;
  sigset_t old_mask_;
};

/* Three writes of 12 MiB in all (more than the socket buffers hold, with the peer's receive
 * buffer at 64 KiB), then a shutdown. While the peer does not read, the shutdown cannot run.
 * Then the peer reads exactly the 12 MiB and EOF; the fd is still open then (it is freed only
 * after the peer is joined), so that EOF is the shutdown's FIN. The results come in order: the
 * writes, then the shutdown with error 0 and size 0. */
void GaioTest::RunWritesThenShutdown(SocketPair p) {
  const size_t kLens[3] = {2u << 20, 4u << 20, 6u << 20};
  const size_t kTotal = 12u << 20;
  const uint64_t kSeed = 1001;
  ASSERT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> data = Pattern(kSeed, kTotal);
  int tw[3] = {0, 1, 2}, ts = 0;
  size_t off = 0;
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(gaio_write(w_, a, data.data() + off, kLens[i], &tw[i]), 0);
    off += kLens[i];
  }
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  gaio_result early[4];
  int n = gaio_wait(w_, early, 4, 100);
  ASSERT_GE(n, 0);
  ASSERT_LT(n, 3) << "12 MiB went into the socket buffers: the test proves nothing";
  EXPECT_TRUE(WaitReadable(p.b.get(), 0));

  std::vector<uint8_t> got;
  bool eof = false;
  std::thread peer([&] { got = ReadToEof(p.b.get(), 20000, &eof, nullptr); });
  Collected c = WaitResults(w_, 4 - static_cast<size_t>(n));
  peer.join();
  std::vector<gaio_result> all(early, early + n);
  all.insert(all.end(), c.results.begin(), c.results.end());
  ASSERT_EQ(all.size(), 4u);
  for (int i = 0; i < 3; i++) ExpectResult(all[i], &tw[i], a, GAIO_OP_WRITE, 0, kLens[i]);
  ExpectResult(all[3], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  EXPECT_TRUE(eof) << "no EOF after the shutdown";
  EXPECT_EQ(got.size(), kTotal) << "EOF before every byte, or bytes lost";
  EXPECT_EQ(PatternMismatch(kSeed, 0, got.data(), got.size()), SIZE_MAX);
  FreeAndFinish({a});
}

TEST_P(GaioTest, ShutdownAfterWritesTcpPeerReadsAllThenEof) { RunWritesThenShutdown(TcpPair()); }

TEST_P(GaioTest, ShutdownAfterWritesUnixPeerReadsAllThenEof) {
  RunWritesThenShutdown(UnixPair());
}

/* The read side stays open: a read queued before the shutdown stays pending through it, and the
 * peer, once it saw EOF, answers; the half-closed fd reads the answer, then the peer's EOF. */
TEST_P(GaioTest, ShutdownKeepsReadingUntilPeerCloses) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  char rb[16], eb[16];
  int tr = 0, tw = 0, ts = 0, te = 0;
  ASSERT_EQ(gaio_read(w_, a, rb, sizeof rb, &tr), 0);
  ASSERT_EQ(gaio_write(w_, a, "request", 7, &tw), 0);
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectResult(c.results[0], &tw, a, GAIO_OP_WRITE, 0, 7);
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 5000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(std::string(got.begin(), got.end()), "request");

  ASSERT_TRUE(WriteAll(p.b.get(), "reply", 5));
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tr, a, GAIO_OP_READ, 0, 5);
  EXPECT_EQ(memcmp(rb, "reply", 5), 0);
  p.b.Reset();
  ASSERT_EQ(gaio_read(w_, a, eb, sizeof eb, &te), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &te, a, GAIO_OP_READ, GAIO_EOF, 0);
  FreeAndFinish({a});
}

/* A write queued after the shutdown runs after it and fails with the socket's -EPIPE, without
 * SIGPIPE; the peer gets only the bytes written before, then EOF. */
TEST_P(GaioTest, WriteAfterShutdownIsEPIPE) {
  DefaultSigpipe sigpipe;
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  int t1 = 0, ts = 0, t2 = 0;
  ASSERT_EQ(gaio_write(w_, a, "abc", 3, &t1), 0);
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  ASSERT_EQ(gaio_write(w_, a, "def", 3, &t2), 0);
  Collected c = WaitResults(w_, 3);
  ASSERT_EQ(c.results.size(), 3u);
  ExpectResult(c.results[0], &t1, a, GAIO_OP_WRITE, 0, 3);
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  ExpectResult(c.results[2], &t2, a, GAIO_OP_WRITE, -EPIPE, 0);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 5000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(std::string(got.begin(), got.end()), "abc");
  FreeAndFinish({a});
}

/* A write before the shutdown that fails (the peer is gone: -EPIPE) does not hold it back: the
 * shutdown runs after it, in order, and reports its own outcome (a Unix socket shuts down even
 * with its peer closed). */
TEST_P(GaioTest, ShutdownRunsAfterAFailedWrite) {
  DefaultSigpipe sigpipe;
  SocketPair p = UnixPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  p.b.Reset();
  int tw = 0, ts = 0;
  ASSERT_EQ(gaio_write(w_, a, "data", 4, &tw), 0);
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ExpectResult(c.results[0], &tw, a, GAIO_OP_WRITE, -EPIPE, 0);
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  FreeAndFinish({a});
}

/* A shutdown has no bytes: it never counts against max_write_pending. With the fd's queue at
 * exactly the limit it is accepted, while a 1-byte write behind it is not. */
TEST_P(GaioTest, ShutdownTakesNoWritePendingBytes) {
  gaio_options o = {};
  o.max_write_pending = 64 * 1024;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  int a = Attach(p.a, w);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> full = Pattern(1002, 64 * 1024);
  int tw = 0, ts = 0, tx = 0;
  ASSERT_EQ(gaio_write(w, a, full.data(), full.size(), &tw), 0);
  ASSERT_EQ(gaio_shutdown(w, a, &ts), 0);
  ASSERT_EQ(gaio_write(w, a, "x", 1, &tx), 0);
  Collected c = WaitResults(w, 3);
  ASSERT_EQ(c.results.size(), 3u);
  std::map<const void *, gaio_result> by;
  for (const gaio_result &r : c.results) by[r.ctx] = r;
  ASSERT_EQ(by.size(), 3u);
  ExpectResult(by[&tw], &tw, a, GAIO_OP_WRITE, 0, full.size());
  ExpectResult(by[&ts], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  ExpectResult(by[&tx], &tx, a, GAIO_OP_WRITE, -ENOBUFS, 0);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 5000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(got == full) << "peer got " << got.size() << " bytes";
  FreeAndFinish({a}, w);
  ExpectDrained(w_);
}

/* An fd with a 32 MiB write stalled (the peer reads nothing, 64 KiB receive buffer) and a
 * shutdown queued behind it. *big must outlive the requests. */
int GaioTest::AttachStalledWriteThenShutdown(SocketPair &p, std::vector<uint8_t> *big, int *tw,
                                             int *ts) {
  EXPECT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  if (a < 0) return -1;
  *big = Pattern(1003, 32u << 20);
  EXPECT_EQ(gaio_write(w_, a, big->data(), big->size(), tw), 0);
  EXPECT_EQ(gaio_shutdown(w_, a, ts), 0);
  ExpectNoResult(w_, 100);
  return a;
}

/* gaio_free() before the shutdown ran completes it with -ECANCELED, after the stalled write
 * (-ECANCELED, partial size); the peer reads exactly that many bytes, then the close's EOF. */
TEST_P(GaioTest, FreeCancelsQueuedShutdown) {
  SocketPair p = TcpPair();
  std::vector<uint8_t> big;
  int tw = 0, ts = 0;
  int a = AttachStalledWriteThenShutdown(p, &big, &tw, &ts);
  ASSERT_GE(a, 0);
  ASSERT_EQ(gaio_free(w_, a), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  const gaio_result wr = c.results[0];
  EXPECT_EQ(wr.ctx, &tw);
  EXPECT_EQ(wr.error, -ECANCELED) << Describe(wr);
  EXPECT_GT(wr.size, 0u);
  EXPECT_LT(wr.size, big.size());
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, -ECANCELED, 0);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), wr.size);
  EXPECT_EQ(PatternMismatch(1003, 0, got.data(), got.size()), SIZE_MAX);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* gaio_watcher_close() before the shutdown ran completes it with -ESHUTDOWN, after the write. */
TEST_P(GaioTest, CloseCompletesQueuedShutdownWithESHUTDOWN) {
  SocketPair p = TcpPair();
  std::vector<uint8_t> big;
  int tw = 0, ts = 0;
  int a = AttachStalledWriteThenShutdown(p, &big, &tw, &ts);
  ASSERT_GE(a, 0);
  gaio_watcher_close(w_);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  EXPECT_EQ(c.results[0].ctx, &tw);
  EXPECT_EQ(c.results[0].error, -ESHUTDOWN) << Describe(c.results[0]);
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, -ESHUTDOWN, 0);
  gaio_result r[2];
  EXPECT_EQ(gaio_wait(w_, r, 2, 0), -ESHUTDOWN);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), c.results[0].size);
}

/* gaio_cancel() of a shutdown still queued behind a write: 0, its result is -ECANCELED, and it
 * never runs: the peer reads the whole write and then no EOF while the fd is open. */
TEST_P(GaioTest, CancelQueuedShutdownSendsNoEof) {
  SocketPair p = TcpPair();
  std::vector<uint8_t> big;
  int tw = 0, ts = 0;
  int a = AttachStalledWriteThenShutdown(p, &big, &tw, &ts);
  ASSERT_GE(a, 0);
  ASSERT_EQ(gaio_cancel(w_, a, &ts), 0);
  EXPECT_EQ(gaio_cancel(w_, a, &ts), -ENOENT) << "cancelled twice";
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &ts, a, GAIO_OP_SHUTDOWN, -ECANCELED, 0);

  std::vector<uint8_t> got(big.size());
  size_t n = 0;
  std::thread peer([&] { n = ReadExactly(p.b.get(), got.data(), got.size(), 30000); });
  c = WaitResults(w_, 1, 30000);
  peer.join();
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tw, a, GAIO_OP_WRITE, 0, big.size());
  EXPECT_EQ(n, big.size());
  EXPECT_TRUE(got == big);
  EXPECT_FALSE(WaitReadable(p.b.get(), 200)) << "EOF (or data) after a cancelled shutdown";
  FreeAndFinish({a});
}

/* The stalled write before the shutdown ends without the fd ever becoming writable (cancelled,
 * or its deadline passes): the shutdown runs at once all the same, in order, and the peer reads
 * exactly the bytes written, then EOF while the fd is still open. (With edge-triggered epoll no
 * new EPOLLOUT edge comes while the peer reads nothing.) */
void GaioTest::RunShutdownAfterStalledWriteEnds(bool by_deadline) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(SetRcvBuf(p.b.get(), 64 * 1024));
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  std::vector<uint8_t> big = Pattern(1004, 32u << 20);
  int tw = 0, ts = 0;
  const uint64_t deadline = by_deadline ? gaio_now() + 500 * kMs : 0;
  ASSERT_EQ(gaio_write_deadline(w_, a, big.data(), big.size(), &tw, deadline), 0);
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  ExpectNoResult(w_, 100);
  if (!by_deadline) {
    ASSERT_EQ(gaio_cancel(w_, a, &tw), 0);
  }
  Collected c = WaitResults(w_, 2, 5000);
  ASSERT_EQ(c.results.size(), 2u);
  const gaio_result wr = c.results[0];
  EXPECT_EQ(wr.ctx, &tw);
  EXPECT_EQ(wr.error, by_deadline ? -ETIMEDOUT : -ECANCELED) << Describe(wr);
  EXPECT_GT(wr.size, 0u);
  EXPECT_LT(wr.size, big.size());
  ExpectResult(c.results[1], &ts, a, GAIO_OP_SHUTDOWN, 0, 0);
  bool eof = false;
  std::vector<uint8_t> got = ReadToEof(p.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof) << "no FIN from the shutdown";
  EXPECT_EQ(got.size(), wr.size);
  EXPECT_EQ(PatternMismatch(1004, 0, got.data(), got.size()), SIZE_MAX);
  FreeAndFinish({a});
}

TEST_P(GaioTest, ShutdownRunsAfterStalledWriteIsCancelled) {
  RunShutdownAfterStalledWriteEnds(false);
}

TEST_P(GaioTest, ShutdownRunsAfterStalledWriteTimesOut) { RunShutdownAfterStalledWriteEnds(true); }

/* On a pipe the shutdown reports shutdown(2)'s -ENOTSOCK, and the pipe stays writable. */
TEST_P(GaioTest, ShutdownOnPipeIsENOTSOCK) {
  int pfd[2];
  ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
  UniqueFd rd(pfd[0]), wr(pfd[1]);
  int w = Attach(wr);
  ASSERT_GE(w, 0);
  int t1 = 0, ts = 0, t2 = 0;
  ASSERT_EQ(gaio_write(w_, w, "x", 1, &t1), 0);
  ASSERT_EQ(gaio_shutdown(w_, w, &ts), 0);
  ASSERT_EQ(gaio_write(w_, w, "y", 1, &t2), 0);
  Collected c = WaitResults(w_, 3);
  ASSERT_EQ(c.results.size(), 3u);
  ExpectResult(c.results[0], &t1, w, GAIO_OP_WRITE, 0, 1);
  ExpectResult(c.results[1], &ts, w, GAIO_OP_SHUTDOWN, -ENOTSOCK, 0);
  ExpectResult(c.results[2], &t2, w, GAIO_OP_WRITE, 0, 1);
  char buf[2];
  EXPECT_EQ(ReadExactly(rd.get(), buf, 2, 5000), 2u);
  EXPECT_EQ(memcmp(buf, "xy", 2), 0);
  FreeAndFinish({w});
}

/* On a TCP socket that is not connected the shutdown reports -ENOTCONN. */
TEST_P(GaioTest, ShutdownOnUnconnectedTcpIsENOTCONN) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(s.valid());
  int a = Attach(s);
  ASSERT_GE(a, 0);
  int ts = 0;
  ASSERT_EQ(gaio_shutdown(w_, a, &ts), 0);
  Collected c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &ts, a, GAIO_OP_SHUTDOWN, -ENOTCONN, 0);
  FreeAndFinish({a});
}

/* Refused submits give no result: -EBADF (not attached, or being freed), -ENOBUFS
 * (max_requests), -ESHUTDOWN (closed). */
TEST_P(GaioTest, ShutdownSubmitErrors) {
  SocketPair p = TcpPair();
  int tag = 0;
  EXPECT_EQ(gaio_shutdown(w_, p.b.get(), &tag), -EBADF) << "not attached";
  EXPECT_EQ(gaio_shutdown(w_, -1, &tag), -EBADF);
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  ASSERT_EQ(gaio_free(w_, a), 0);
  EXPECT_EQ(gaio_shutdown(w_, a, &tag), -EBADF) << "being freed";
  ExpectNoResult(w_, 0);

  gaio_options o = {};
  o.max_requests = 1;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair q = TcpPair();
  int b = Attach(q.a, w);
  ASSERT_GE(b, 0);
  char buf[8];
  ASSERT_EQ(gaio_read(w, b, buf, sizeof buf, &tag), 0);
  EXPECT_EQ(gaio_shutdown(w, b, &tag), -ENOBUFS);
  ASSERT_EQ(gaio_free(w, b), 0);
  Collected c = WaitResults(w, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &tag, b, GAIO_OP_READ, -ECANCELED, 0);
  ExpectNoResult(w, 0);
  ExpectDrained(w);

  SocketPair r = TcpPair();
  int d = Attach(r.a);
  ASSERT_GE(d, 0);
  gaio_watcher_close(w_);
  EXPECT_EQ(gaio_shutdown(w_, d, &tag), -ESHUTDOWN);
  gaio_result res[2];
  EXPECT_EQ(gaio_wait(w_, res, 2, 0), -ESHUTDOWN);
  const gaio_stats s = Stats();
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.completed, 0u);
  EXPECT_EQ(s.fds, 0u);
}

/* ------------------------------------------------------------------------------------------ */
/* Close                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Close twice: every pending request gets -ESHUTDOWN exactly once (a write with its partial
 * size), then gaio_wait() returns -ESHUTDOWN, every owned fd is closed. */
TEST_P(GaioTest, CloseTwice) {
  SocketPair p = TcpPair();
  SocketPair q = TcpPair();
  ASSERT_TRUE(SetRcvBuf(q.b.get(), 64 * 1024));
  int a = Attach(p.a);
  int c = Attach(q.a);
  ASSERT_GE(a, 0);
  ASSERT_GE(c, 0);
  const size_t kBig = 32u << 20;
  std::vector<uint8_t> big = Pattern(61, kBig);
  uint8_t rb[64], rf[64];
  int t[4] = {0, 1, 2, 3};
  ASSERT_EQ(gaio_read(w_, a, rb, sizeof rb, &t[0]), 0);
  ASSERT_EQ(gaio_read_full(w_, a, rf, sizeof rf, &t[1], 0), 0);
  ASSERT_EQ(gaio_write(w_, c, big.data(), kBig, &t[2]), 0);
  ASSERT_EQ(gaio_write(w_, c, "tail", 4, &t[3]), 0);
  ExpectNoResult(w_, 100);
  gaio_watcher_close(w_);
  gaio_watcher_close(w_);
  Collected col = WaitResults(w_, 4);
  ASSERT_EQ(col.results.size(), 4u);
  std::map<const void *, gaio_result> by;
  for (const gaio_result &r : col.results) by[r.ctx] = r;
  ASSERT_EQ(by.size(), 4u);
  ExpectResult(by[&t[0]], &t[0], a, GAIO_OP_READ, -ESHUTDOWN, 0);
  ExpectResult(by[&t[1]], &t[1], a, GAIO_OP_READ_FULL, -ESHUTDOWN, 0);
  const gaio_result wb = by[&t[2]];
  EXPECT_EQ(wb.error, -ESHUTDOWN);
  EXPECT_GT(wb.size, 0u);
  EXPECT_LT(wb.size, kBig);
  ExpectResult(by[&t[3]], &t[3], c, GAIO_OP_WRITE, -ESHUTDOWN, 0);

  gaio_result r[4];
  EXPECT_EQ(gaio_wait(w_, r, 4, 0), -ESHUTDOWN);
  EXPECT_EQ(gaio_wait(w_, r, 4, 100), -ESHUTDOWN);
  {
    Watchdog wd("gaio_wait(-1) after close", 10000);
    EXPECT_EQ(gaio_wait(w_, r, 4, -1), -ESHUTDOWN);
  }
  gaio_watcher_close(w_);
  const gaio_stats s = Stats();
  EXPECT_EQ(s.submitted, 4u);
  EXPECT_EQ(s.completed, 4u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.fds, 0u);

  bool eof = false;
  EXPECT_TRUE(ReadToEof(p.b.get(), 5000, &eof, nullptr).empty());
  EXPECT_TRUE(eof);
  std::vector<uint8_t> got = ReadToEof(q.b.get(), 20000, &eof, nullptr);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), wb.size);
  EXPECT_EQ(PatternMismatch(61, 0, got.data(), got.size()), SIZE_MAX);
}

TEST_P(GaioTest, WaitAfterClose) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  gaio_watcher_close(w_);
  gaio_result r[4];
  EXPECT_EQ(gaio_wait(w_, r, 4, 0), -ESHUTDOWN);
  EXPECT_EQ(gaio_wait(w_, r, 4, 100), -ESHUTDOWN);
  {
    Watchdog wd("gaio_wait(-1) after close", 10000);
    EXPECT_EQ(gaio_wait(w_, r, 4, -1), -ESHUTDOWN);
  }
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
  bool eof = false;
  EXPECT_TRUE(ReadToEof(p.b.get(), 5000, &eof, nullptr).empty());
  EXPECT_TRUE(eof) << "close must close the attached fd";
}

TEST_P(GaioTest, SubmitAfterClose) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  gaio_watcher_close(w_);
  uint8_t buf[8];
  int tag = 0;
  EXPECT_EQ(gaio_read(w_, a, buf, sizeof buf, &tag), -ESHUTDOWN);
  EXPECT_EQ(gaio_read(w_, a, nullptr, 0, &tag), -ESHUTDOWN);
  EXPECT_EQ(gaio_read_deadline(w_, a, buf, sizeof buf, &tag, gaio_now() + kMs), -ESHUTDOWN);
  EXPECT_EQ(gaio_read_full(w_, a, buf, sizeof buf, &tag, 0), -ESHUTDOWN);
  EXPECT_EQ(gaio_write(w_, a, buf, sizeof buf, &tag), -ESHUTDOWN);
  EXPECT_EQ(gaio_write_deadline(w_, a, buf, sizeof buf, &tag, gaio_now() + kMs), -ESHUTDOWN);
  EXPECT_EQ(gaio_free(w_, a), -ESHUTDOWN);
  EXPECT_EQ(gaio_attach(w_, p.b.get()), -ESHUTDOWN);
  EXPECT_TRUE(FdIsOpen(p.b.get())) << "on error the caller keeps the fd";
  EXPECT_EQ(fcntl(p.b.get(), F_GETFL) & O_NONBLOCK, 0);
  gaio_result r[2];
  EXPECT_EQ(gaio_wait(w_, r, 2, 0), -ESHUTDOWN);
  const gaio_stats s = Stats();
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.completed, 0u);
  EXPECT_EQ(s.fds, 0u);
}

/* Close from another thread wakes a gaio_wait(-1): the pending read gets -ESHUTDOWN, then
 * gaio_wait() returns -ESHUTDOWN. */
TEST_P(GaioTest, CloseWakesBlockedWait) {
  SocketPair p = TcpPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t buf[16];
  int tag = 0;
  ASSERT_EQ(gaio_read(w_, a, buf, sizeof buf, &tag), 0);
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gaio_watcher_close(w_);
  });
  std::vector<gaio_result> got;
  int rc = 0, zeros = 0;
  {
    Watchdog wd("gaio_wait(-1) woken by close", 20000);
    for (;;) {
      gaio_result r[4];
      rc = gaio_wait(w_, r, 4, -1);
      if (rc < 0) break;
      if (rc == 0) zeros++;
      got.insert(got.end(), r, r + rc);
    }
  }
  closer.join();
  EXPECT_EQ(rc, -ESHUTDOWN);
  EXPECT_EQ(zeros, 0) << "gaio_wait(-1) returned 0";
  ASSERT_EQ(got.size(), 1u);
  ExpectResult(got[0], &tag, a, GAIO_OP_READ, -ESHUTDOWN, 0);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* Destroy without close or wait, with requests pending and results undelivered: everything is
 * released (fds closed: the peers see EOF; memory: LeakSanitizer under --config=asan). */
TEST_P(GaioTest, DestroyWithPendingRequestsReleasesEverything) {
  gaio_watcher *w = nullptr;
  ASSERT_EQ(CreateRc(&w, gaio_options{}), 0);
  std::vector<SocketPair> pairs;
  for (int i = 0; i < 3; i++) pairs.push_back(TcpPair());
  ASSERT_TRUE(SetRcvBuf(pairs[2].b.get(), 64 * 1024));
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = Attach(pairs[i].a, w);
    ASSERT_GE(fds[i], 0);
  }
  std::vector<uint8_t> big = Pattern(71, 16u << 20);
  uint8_t buf[3][64];
  int tags[6] = {};
  ASSERT_EQ(gaio_read(w, fds[0], buf[0], 64, &tags[0]), 0);
  ASSERT_EQ(gaio_read(w, fds[0], nullptr, 0, &tags[1]), 0);
  ASSERT_EQ(gaio_read(w, fds[1], buf[1], 64, &tags[2]), 0);
  ASSERT_EQ(gaio_read(w, fds[1], buf[2], 64, &tags[3]), 0);
  ASSERT_EQ(gaio_write(w, fds[2], big.data(), big.size(), &tags[4]), 0);
  ASSERT_EQ(gaio_read_deadline(w, fds[2], nullptr, 0, &tags[5], gaio_now() + 60000 * kMs), 0);
  ASSERT_TRUE(WriteAll(pairs[1].b.get(), "ab", 2));
  gaio_result r[1];
  EXPECT_GE(gaio_wait(w, r, 1, 200), 0); /* the other completion stays queued */
  gaio_watcher_destroy(w);
  for (int i = 0; i < 3; i++) {
    bool eof = false;
    ReadToEof(pairs[i].b.get(), 20000, &eof, nullptr);
    EXPECT_TRUE(eof) << "fd " << i << " not closed by destroy";
  }
  ExpectDrained(w_);
}

/* ------------------------------------------------------------------------------------------ */
/* Threads and several watchers                                                                */
/* ------------------------------------------------------------------------------------------ */

/* One thread blocks in gaio_wait(-1); another sees -EBUSY from its own gaio_wait(), then
 * attaches and submits: the blocked waiter is woken and gets the result. */
TEST_P(GaioTest, SubmitFromOtherThread) {
  SocketPair p = TcpPair();
  const int a = p.a.get();
  uint8_t buf[64];
  int tag = 0;
  std::atomic<bool> saw_busy{false};
  std::thread other([&] {
    const uint64_t until = gaio_now() + 5000 * kMs;
    while (gaio_now() < until) {
      gaio_result r[1];
      int rc = gaio_wait(w_, r, 1, 0);
      if (rc == -EBUSY) {
        saw_busy = true;
        break;
      }
      EXPECT_EQ(rc, 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(gaio_attach(w_, a), 0);
    EXPECT_EQ(gaio_read(w_, a, buf, sizeof buf, &tag), 0);
    EXPECT_TRUE(WriteAll(p.b.get(), "wake up", 7));
  });
  std::vector<gaio_result> got;
  int busy_here = 0, zeros = 0;
  {
    Watchdog wd("gaio_wait(-1) woken by a submit from another thread", 20000);
    while (got.empty()) {
      gaio_result r[4];
      int rc = gaio_wait(w_, r, 4, -1);
      if (rc == -EBUSY) {
        /* The other thread was inside its gaio_wait(0) at that instant. */
        busy_here++;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (rc < 0) {
        ADD_FAILURE() << "gaio_wait: " << gaio_strerror(rc);
        break;
      }
      if (rc == 0) zeros++;
      got.insert(got.end(), r, r + rc);
    }
  }
  other.join();
  p.a.Release(); /* attached by the other thread */
  EXPECT_TRUE(saw_busy) << "a second concurrent gaio_wait() never returned -EBUSY";
  EXPECT_EQ(zeros, 0) << "gaio_wait(-1) returned 0";
  ASSERT_EQ(got.size(), 1u);
  ExpectResult(got[0], &tag, a, GAIO_OP_READ, 0, 7);
  EXPECT_EQ(memcmp(buf, "wake up", 7), 0);
  FreeAndFinish({a});
}

/* Four threads attach and submit full-duplex transfers at once, a fifth reads the stats, while
 * this thread collects results. */
TEST_P(GaioTest, ConcurrentSubmitsFromManyThreads) {
  const int kThreads = 4, kPerThread = 25;
  const size_t kLen = 64 * 1024;
  struct Conn;
  struct Ctx {
    Conn *conn;
    int which; /* 0 write a, 1 read_full b, 2 write b, 3 read_full a */
  };
  struct Conn {
    int a = -1, b = -1;
    std::vector<uint8_t> out_ab, out_ba, in_ab, in_ba;
    Ctx ctx[4];
  };
  std::vector<Conn> conns(kThreads * kPerThread);
  for (size_t i = 0; i < conns.size(); i++) {
    Conn &c = conns[i];
    c.out_ab = Pattern(2000 + 2 * i, kLen);
    c.out_ba = Pattern(2001 + 2 * i, kLen);
    c.in_ab.assign(kLen, 0);
    c.in_ba.assign(kLen, 0);
    for (int k = 0; k < 4; k++) c.ctx[k] = {&c, k};
  }
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; i++) {
        Conn &c = conns[t * kPerThread + i];
        SocketPair p = TcpPair();
        int a = p.a.get(), b = p.b.get();
        if (gaio_attach(w_, a) != 0 || gaio_attach(w_, b) != 0) {
          ADD_FAILURE() << "attach failed";
          return;
        }
        p.a.Release();
        p.b.Release();
        c.a = a;
        c.b = b;
        EXPECT_EQ(gaio_write(w_, a, c.out_ab.data(), kLen, &c.ctx[0]), 0);
        EXPECT_EQ(gaio_read_full(w_, b, c.in_ab.data(), kLen, &c.ctx[1], 0), 0);
        EXPECT_EQ(gaio_write(w_, b, c.out_ba.data(), kLen, &c.ctx[2]), 0);
        EXPECT_EQ(gaio_read_full(w_, a, c.in_ba.data(), kLen, &c.ctx[3], 0), 0);
      }
    });
  }
  std::thread stats_reader([&] {
    while (!done) {
      gaio_stats s;
      gaio_watcher_stats(w_, &s);
      EXPECT_LE(s.fds, conns.size() * 2);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  Collected col = WaitResults(w_, conns.size() * 4, 30000);
  for (std::thread &t : threads) t.join();
  done = true;
  stats_reader.join();
  ASSERT_EQ(col.results.size(), conns.size() * 4);
  std::set<const void *> seen;
  for (const gaio_result &r : col.results) {
    const Ctx *x = static_cast<const Ctx *>(r.ctx);
    ASSERT_TRUE(seen.insert(x).second) << "two results for " << Describe(r);
    const Conn &c = *x->conn;
    static const int kOps[4] = {GAIO_OP_WRITE, GAIO_OP_READ_FULL, GAIO_OP_WRITE, GAIO_OP_READ_FULL};
    const int fd = (x->which == 0 || x->which == 3) ? c.a : c.b;
    ExpectResult(r, x, fd, kOps[x->which], 0, kLen);
  }
  std::vector<int> fds;
  for (const Conn &c : conns) {
    EXPECT_TRUE(c.in_ab == c.out_ab);
    EXPECT_TRUE(c.in_ba == c.out_ba);
    fds.push_back(c.a);
    fds.push_back(c.b);
  }
  FreeAndFinish(fds);
}

/* Echo over nconns connections inside one watcher: the client end writes len bytes and
 * read_fulls them back; the server end reads with NULL buffers and writes each piece back. */
void RunSelfEcho(gaio_watcher *w, size_t nconns, size_t len, uint64_t seed) {
  std::vector<SocketPair> pairs = TcpPairs(nconns);
  ASSERT_EQ(pairs.size(), nconns);
  enum Kind { kClientWrite, kClientRead, kServerRead, kServerWrite };
  struct Conn {
    int client = -1, server = -1;
    std::vector<uint8_t> out, in;
    size_t server_got = 0, server_sent = 0;
    bool client_wrote = false, client_read = false;
  };
  struct Op {
    Kind kind;
    Conn *conn;
    std::vector<uint8_t> chunk;
  };
  std::vector<Conn> conns(nconns);
  std::unordered_map<const void *, std::unique_ptr<Op>> live;
  auto submit = [&](std::unique_ptr<Op> op) -> bool {
    Conn &c = *op->conn;
    Op *raw = op.get();
    int rc = -1;
    switch (op->kind) {
      case kClientWrite:
        rc = gaio_write(w, c.client, c.out.data(), c.out.size(), raw);
        break;
      case kClientRead:
        rc = gaio_read_full(w, c.client, c.in.data(), c.in.size(), raw, 0);
        break;
      case kServerRead:
        rc = gaio_read(w, c.server, nullptr, 0, raw);
        break;
      case kServerWrite:
        rc = gaio_write(w, c.server, raw->chunk.data(), raw->chunk.size(), raw);
        break;
    }
    EXPECT_EQ(rc, 0) << "submit kind " << op->kind;
    if (rc == 0) live.emplace(raw, std::move(op));
    return rc == 0;
  };
  size_t initial = 0;
  for (size_t i = 0; i < nconns; i++) {
    Conn &c = conns[i];
    c.out = Pattern(seed + i, len);
    c.in.assign(len, 0);
    c.client = pairs[i].a.get();
    c.server = pairs[i].b.get();
    ASSERT_EQ(gaio_attach(w, c.client), 0);
    pairs[i].a.Release();
    ASSERT_EQ(gaio_attach(w, c.server), 0);
    pairs[i].b.Release();
    for (Kind k : {kClientWrite, kClientRead, kServerRead}) {
      ASSERT_TRUE(submit(std::unique_ptr<Op>(new Op{k, &c, {}})));
      initial++;
    }
  }
  size_t bad = 0;
  Collected col = WaitResults(w, initial, 60000, [&](const gaio_result *res, int n, size_t *want) {
    for (int j = 0; j < n; j++) {
      const gaio_result &r = res[j];
      auto it = live.find(r.ctx);
      if (it == live.end()) {
        if (bad++ < 5) ADD_FAILURE() << "unknown or repeated ctx " << Describe(r);
        continue;
      }
      std::unique_ptr<Op> op = std::move(it->second);
      live.erase(it);
      Conn &c = *op->conn;
      switch (op->kind) {
        case kClientWrite:
          ExpectResult(r, op.get(), c.client, GAIO_OP_WRITE, 0, len);
          c.client_wrote = true;
          break;
        case kClientRead:
          ExpectResult(r, op.get(), c.client, GAIO_OP_READ_FULL, 0, len);
          c.client_read = true;
          break;
        case kServerWrite:
          ExpectResult(r, op.get(), c.server, GAIO_OP_WRITE, 0, op->chunk.size());
          c.server_sent += r.size;
          break;
        case kServerRead: {
          if (r.error != 0 || r.size == 0 || !(r.flags & GAIO_RESULT_SWAP) || r.fd != c.server) {
            if (bad++ < 5) ADD_FAILURE() << "server read " << Describe(r);
            break;
          }
          const uint8_t *p = static_cast<const uint8_t *>(r.buf);
          c.server_got += r.size;
          if (submit(std::unique_ptr<Op>(
                  new Op{kServerWrite, &c, std::vector<uint8_t>(p, p + r.size)}))) {
            ++*want;
          }
          if (c.server_got < len && submit(std::unique_ptr<Op>(new Op{kServerRead, &c, {}}))) {
            ++*want;
          }
          break;
        }
      }
    }
  });
  EXPECT_FALSE(col.timed_out);
  EXPECT_EQ(bad, 0u);
  EXPECT_TRUE(live.empty());
  std::vector<int> fds;
  for (size_t i = 0; i < nconns; i++) {
    const Conn &c = conns[i];
    EXPECT_TRUE(c.client_wrote && c.client_read) << "conn " << i;
    EXPECT_EQ(c.server_got, len);
    EXPECT_EQ(c.server_sent, len);
    EXPECT_EQ(PatternMismatch(seed + i, 0, c.in.data(), len), SIZE_MAX) << "conn " << i;
    fds.push_back(c.client);
    fds.push_back(c.server);
  }
  for (int fd : fds) EXPECT_EQ(gaio_free(w, fd), 0);
  ExpectNoResult(w, 0);
  ExpectDrained(w);
  gaio_stats s;
  gaio_watcher_stats(w, &s);
  EXPECT_EQ(s.fds, 0u);
  EXPECT_EQ(s.bytes_read, 2 * nconns * len);
  EXPECT_EQ(s.bytes_written, 2 * nconns * len);
}

/* Two watchers in one process, each driven by its own thread: independent echoes. */
TEST_P(GaioTest, TwoWatchers) {
  gaio_watcher *w2 = NewWatcher();
  ASSERT_NE(w2, nullptr);
  std::thread t1([&] { RunSelfEcho(w_, 20, 256 * 1024, 3000); });
  std::thread t2([&] { RunSelfEcho(w2, 20, 256 * 1024, 4000); });
  t1.join();
  t2.join();
  /* A request on one watcher is unknown to the other. */
  SocketPair p = UnixPair();
  int a = Attach(p.a);
  ASSERT_GE(a, 0);
  uint8_t buf[4];
  int tag = 0;
  EXPECT_EQ(gaio_read(w2, a, buf, sizeof buf, &tag), -EBADF);
  EXPECT_EQ(gaio_free(w2, a), -EBADF);
  FreeAndFinish({a});
  ExpectDrained(w2);
}

/* ------------------------------------------------------------------------------------------ */
/* Scale: 10k connections                                                                       */
/* ------------------------------------------------------------------------------------------ */

size_t ClientLen(size_t i) { return 512 + (i * 7919) % 3584; }

/* The child of TenThousandConnections: n blocking connects (all open at once), then each sends
 * its own pattern and checks the echo with epoll; closes all and returns 0, or a code naming
 * the failure. Runs after fork(): no googletest here. */
int RunEchoClients(uint16_t port, size_t n, int timeout_ms) {
  const uint64_t deadline = gaio_now() + static_cast<uint64_t>(timeout_ms) * kMs;
  std::vector<int> fds(n, -1);
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  for (size_t i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fprintf(stderr, "child: socket %zu: %s\n", i, strerror(errno));
      return 10;
    }
    if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
      fprintf(stderr, "child: connect %zu: %s\n", i, strerror(errno));
      return 11;
    }
    fds[i] = fd;
    if (gaio_now() > deadline) return 19;
  }
  for (size_t i = 0; i < n; i++) {
    std::vector<uint8_t> d = Pattern(100000 + i, ClientLen(i));
    if (!WriteAll(fds[i], d.data(), d.size())) {
      fprintf(stderr, "child: send %zu: %s\n", i, strerror(errno));
      return 12;
    }
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 13;
  std::vector<std::vector<uint8_t>> got(n);
  for (size_t i = 0; i < n; i++) {
    SetNonBlocking(fds[i]);
    got[i].resize(ClientLen(i) + 1);
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) return 13;
  }
  std::vector<size_t> have(n, 0);
  size_t remaining = n;
  std::vector<epoll_event> evs(1024);
  while (remaining > 0) {
    if (gaio_now() > deadline) {
      fprintf(stderr, "child: timed out with %zu connections unfinished\n", remaining);
      return 14;
    }
    int k = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 1000);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return 13;
    for (int j = 0; j < k; j++) {
      size_t i = evs[j].data.u64;
      const size_t len = ClientLen(i);
      ssize_t r = read(fds[i], got[i].data() + have[i], len + 1 - have[i]);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        fprintf(stderr, "child: conn %zu: read %zd (%s) after %zu of %zu bytes\n", i, r,
                r < 0 ? strerror(errno) : "EOF", have[i], len);
        return 15;
      }
      have[i] += static_cast<size_t>(r);
      if (have[i] > len) {
        fprintf(stderr, "child: conn %zu: more bytes than sent\n", i);
        return 16;
      }
      if (have[i] == len) {
        size_t bad = PatternMismatch(100000 + i, 0, got[i].data(), len);
        if (bad != SIZE_MAX) {
          fprintf(stderr, "child: conn %zu: echo differs at byte %zu\n", i, bad);
          return 17;
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], nullptr);
        remaining--;
      }
    }
  }
  for (int fd : fds) close(fd);
  close(ep);
  return 0;
}

/* 10,000 concurrent connections echoed by one watcher. The clients live in a forked child
 * (20,000 fds per process would not hold both ends); the parent accepts in a thread with
 * accept4(), attaching and submitting from that thread, and echoes with NULL-buffer reads. */
TEST_P(GaioTest, TenThousandConnections) {
  const size_t kConns = 10000;
  Listener l(4096);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(SetNonBlocking(l.fd()));
  size_t expect_total = 0;
  for (size_t i = 0; i < kConns; i++) expect_total += ClientLen(i);

  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    close(l.fd());
    _exit(RunEchoClients(l.port(), kConns, 80000));
  }

  struct Tag {
    int kind; /* 1: connection (its read), 2: echo chunk (its write) */
  };
  struct Conn : Tag {
    int fd = -1;
    size_t got = 0;
  };
  struct Chunk : Tag {
    Conn *conn = nullptr;
    std::vector<uint8_t> data;
  };
  std::mutex mu;
  std::vector<std::unique_ptr<Conn>> conns;
  std::atomic<bool> stop{false};
  std::atomic<int> accept_errors{0};
  std::thread acceptor([&] {
    size_t accepted = 0;
    while (accepted < kConns && !stop) {
      int fd = accept4(l.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          WaitReadable(l.fd(), 50);
          continue;
        }
        fprintf(stderr, "accept4: %s\n", strerror(errno));
        accept_errors++;
        break;
      }
      std::unique_ptr<Conn> c(new Conn);
      c->kind = 1;
      c->fd = fd;
      Conn *cp = c.get();
      {
        std::lock_guard<std::mutex> lk(mu);
        conns.push_back(std::move(c));
      }
      int rc = gaio_attach(w_, fd);
      if (rc != 0) {
        fprintf(stderr, "gaio_attach(%d): %s\n", fd, gaio_strerror(rc));
        accept_errors++;
        close(fd);
        continue;
      }
      rc = gaio_read(w_, fd, nullptr, 0, static_cast<Tag *>(cp));
      if (rc != 0) accept_errors++;
      accepted++;
    }
  });

  std::unordered_set<Chunk *> chunks;
  size_t freed = 0, echoed = 0, bad = 0;
  int child_status = -1;
  bool child_done = false;
  std::vector<gaio_result> batch(1024);
  const uint64_t deadline = gaio_now() + 100000 * kMs;
  while (!(freed == kConns && chunks.empty() && child_done)) {
    if (gaio_now() > deadline) {
      ADD_FAILURE() << "timed out: " << freed << " connections done, " << chunks.size()
                    << " echo writes pending";
      break;
    }
    if (!child_done && waitpid(pid, &child_status, WNOHANG) == pid) {
      child_done = true;
      if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) {
        ADD_FAILURE() << "client child failed, status " << child_status;
        break;
      }
    }
    if (freed == kConns && chunks.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    int n = gaio_wait(w_, batch.data(), static_cast<int>(batch.size()), 50);
    if (n < 0) {
      ADD_FAILURE() << "gaio_wait: " << gaio_strerror(n);
      break;
    }
    for (int j = 0; j < n; j++) {
      const gaio_result &r = batch[j];
      Tag *tag = static_cast<Tag *>(r.ctx);
      if (tag->kind == 2) {
        Chunk *ch = static_cast<Chunk *>(tag);
        if (chunks.erase(ch) != 1 || r.error != 0 || r.size != ch->data.size() ||
            r.op != GAIO_OP_WRITE) {
          if (bad++ < 5) ADD_FAILURE() << "echo write " << Describe(r);
        }
        echoed += r.size;
        delete ch;
        continue;
      }
      Conn *c = static_cast<Conn *>(tag);
      if (r.error == GAIO_EOF) {
        EXPECT_EQ(gaio_free(w_, c->fd), 0);
        freed++;
        continue;
      }
      if (r.error != 0 || r.size == 0 || !(r.flags & GAIO_RESULT_SWAP) || r.fd != c->fd) {
        if (bad++ < 5) ADD_FAILURE() << "echo read " << Describe(r);
        continue;
      }
      c->got += r.size;
      Chunk *ch = new Chunk;
      ch->kind = 2;
      ch->conn = c;
      const uint8_t *p = static_cast<const uint8_t *>(r.buf);
      ch->data.assign(p, p + r.size);
      chunks.insert(ch);
      if (gaio_write(w_, c->fd, ch->data.data(), ch->data.size(), static_cast<Tag *>(ch)) != 0 ||
          gaio_read(w_, c->fd, nullptr, 0, static_cast<Tag *>(c)) != 0) {
        if (bad++ < 5) ADD_FAILURE() << "resubmit failed on fd " << c->fd;
      }
    }
  }
  stop = true;
  acceptor.join();
  if (!child_done) {
    kill(pid, SIGKILL);
    waitpid(pid, &child_status, 0);
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(accept_errors.load(), 0);
  EXPECT_EQ(conns.size(), kConns);
  EXPECT_EQ(freed, kConns);
  EXPECT_EQ(echoed, expect_total);
  size_t got = 0;
  for (const auto &c : conns) got += c->got;
  EXPECT_EQ(got, expect_total);
  EXPECT_TRUE(child_done && WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)
      << "child status " << child_status;
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
  const gaio_stats s = Stats();
  EXPECT_EQ(s.fds, 0u);
  EXPECT_EQ(s.bytes_read, expect_total);
  EXPECT_EQ(s.bytes_written, expect_total);
  if (!chunks.empty()) {
    /* Only after a failure: the watcher must not touch these any more. */
    gaio_watcher_close(w_);
    for (Chunk *ch : chunks) delete ch;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Other fd kinds                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Pipes are pollable and work too (plain write(2), not send()): 256 KiB through a 64 KiB pipe,
 * then EOF when the write end is freed. */
TEST_P(GaioTest, PipeReadWrite) {
  int pfd[2];
  ASSERT_EQ(pipe2(pfd, O_CLOEXEC), 0);
  UniqueFd rd(pfd[0]), wr(pfd[1]);
  int r = Attach(rd);
  int w = Attach(wr);
  ASSERT_GE(r, 0);
  ASSERT_GE(w, 0);
  const size_t kLen = 256 * 1024;
  std::vector<uint8_t> out = Pattern(81, kLen), in(kLen, 0);
  int tw = 0, tr = 0, te = 0;
  ASSERT_EQ(gaio_write(w_, w, out.data(), kLen, &tw), 0);
  ASSERT_EQ(gaio_read_full(w_, r, in.data(), kLen, &tr, 0), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  std::map<const void *, gaio_result> by;
  for (const gaio_result &x : c.results) by[x.ctx] = x;
  ExpectResult(by[&tw], &tw, w, GAIO_OP_WRITE, 0, kLen);
  ExpectResult(by[&tr], &tr, r, GAIO_OP_READ_FULL, 0, kLen);
  EXPECT_TRUE(in == out);
  ASSERT_EQ(gaio_free(w_, w), 0);
  ExpectNoResult(w_, 0);
  uint8_t buf[16];
  ASSERT_EQ(gaio_read(w_, r, buf, sizeof buf, &te), 0);
  c = WaitResults(w_, 1);
  ASSERT_EQ(c.results.size(), 1u);
  ExpectResult(c.results[0], &te, r, GAIO_OP_READ, GAIO_EOF, 0);
  FreeAndFinish({r});
}

/* Writes queued together on a message socket must stay separate messages (coalescing them into
 * one sendmsg would merge them), and each read gets exactly one message. */
void ExpectMessageBoundaries(gaio_watcher *w, int tx, int rx) {
  const size_t kSizes[3] = {100, 200, 300};
  std::vector<uint8_t> d[3] = {Pattern(91, 100), Pattern(92, 200), Pattern(93, 300)};
  uint8_t rb[3][1000];
  int tw[3] = {0, 1, 2}, tr[3] = {0, 1, 2};
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_write(w, tx, d[i].data(), kSizes[i], &tw[i]), 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_read(w, rx, rb[i], 1000, &tr[i]), 0);
  Collected c = WaitResults(w, 6, 3000);
  std::vector<gaio_result> reads;
  for (const gaio_result &r : c.results) {
    if (r.fd == rx) {
      reads.push_back(r);
    } else {
      int i = *static_cast<int *>(r.ctx);
      ExpectResult(r, &tw[i], tx, GAIO_OP_WRITE, 0, kSizes[i]);
    }
  }
  for (size_t i = 0; i < reads.size(); i++) {
    ExpectResult(reads[i], &tr[i], rx, GAIO_OP_READ, 0, kSizes[i]);
    EXPECT_EQ(memcmp(rb[i], d[i].data(), std::min(reads[i].size, kSizes[i])), 0) << "message " << i;
  }
  EXPECT_EQ(reads.size(), 3u) << "three messages sent, " << reads.size() << " received";
  if (reads.size() < 3) {
    /* Cancel the reads left waiting for messages that were merged away. */
    ASSERT_EQ(gaio_free(w, rx), 0);
    WaitResults(w, 3 - reads.size());
    ASSERT_EQ(gaio_free(w, tx), 0);
    ExpectNoResult(w, 0);
  } else {
    EXPECT_EQ(gaio_free(w, tx), 0);
    EXPECT_EQ(gaio_free(w, rx), 0);
    ExpectNoResult(w, 0);
  }
}

TEST_P(GaioTest, UdpWritesKeepDatagramBoundaries) {
  auto udp = [] {
    UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = {};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa), 0);
    return s;
  };
  UniqueFd s1 = udp(), s2 = udp();
  sockaddr_in a1 = {}, a2 = {};
  socklen_t l1 = sizeof a1, l2 = sizeof a2;
  ASSERT_EQ(getsockname(s1.get(), reinterpret_cast<sockaddr *>(&a1), &l1), 0);
  ASSERT_EQ(getsockname(s2.get(), reinterpret_cast<sockaddr *>(&a2), &l2), 0);
  ASSERT_EQ(connect(s1.get(), reinterpret_cast<sockaddr *>(&a2), sizeof a2), 0);
  ASSERT_EQ(connect(s2.get(), reinterpret_cast<sockaddr *>(&a1), sizeof a1), 0);
  int tx = Attach(s1);
  int rx = Attach(s2);
  ASSERT_GE(tx, 0);
  ASSERT_GE(rx, 0);
  ExpectMessageBoundaries(w_, tx, rx);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

TEST_P(GaioTest, SeqpacketWritesKeepMessageBoundaries) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd s1(sv[0]), s2(sv[1]);
  int tx = Attach(s1);
  int rx = Attach(s2);
  ASSERT_GE(tx, 0);
  ASSERT_GE(rx, 0);
  ExpectMessageBoundaries(w_, tx, rx);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* ------------------------------------------------------------------------------------------ */
/* Stats                                                                                        */
/* ------------------------------------------------------------------------------------------ */

TEST_P(GaioTest, Stats) {
  gaio_stats s = Stats();
  EXPECT_EQ(s.submitted, 0u);
  EXPECT_EQ(s.completed, 0u);
  EXPECT_EQ(s.bytes_read, 0u);
  EXPECT_EQ(s.bytes_written, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.queued_results, 0u);
  EXPECT_EQ(s.fds, 0u);

  SocketPair p = TcpPair();
  int a = Attach(p.a);
  int b = Attach(p.b);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(Stats().fds, 2u);

  std::vector<uint8_t> out = Pattern(101, 1500), in(1000);
  int t = 0;
  ASSERT_EQ(gaio_write(w_, a, out.data(), 1000, &t), 0);
  ASSERT_EQ(gaio_read_full(w_, b, in.data(), 1000, &t, 0), 0);
  s = Stats();
  EXPECT_EQ(s.submitted, 2u);
  EXPECT_EQ(s.in_flight, 2u);
  EXPECT_EQ(s.completed, 0u);
  ASSERT_EQ(WaitResults(w_, 2).results.size(), 2u);
  s = Stats();
  EXPECT_EQ(s.completed, 2u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.queued_results, 0u);
  EXPECT_EQ(s.bytes_written, 1000u);
  EXPECT_EQ(s.bytes_read, 1000u);

  /* NULL-buffer reads count too. */
  ASSERT_EQ(gaio_write(w_, a, out.data() + 1000, 500, &t), 0);
  size_t got = 0, results = 1;
  ASSERT_EQ(gaio_read(w_, b, nullptr, 0, &t), 0);
  WaitResults(w_, 2, 20000, [&](const gaio_result *res, int n, size_t *want) {
    for (int j = 0; j < n; j++) {
      if (res[j].fd != b) continue;
      ASSERT_EQ(res[j].error, 0);
      got += res[j].size;
      if (got < 500) {
        ASSERT_EQ(gaio_read(w_, b, nullptr, 0, &t), 0);
        ++*want;
        results++;
      }
    }
  });
  EXPECT_EQ(got, 500u);
  s = Stats();
  EXPECT_EQ(s.bytes_written, 1500u);
  EXPECT_EQ(s.bytes_read, 1500u);
  EXPECT_EQ(s.submitted, 3u + results);
  EXPECT_EQ(s.completed, s.submitted);

  /* A timeout moves no bytes. */
  uint8_t buf[8];
  ASSERT_EQ(gaio_read_deadline(w_, b, buf, sizeof buf, &t, gaio_now() + 20 * kMs), 0);
  ASSERT_EQ(WaitResults(w_, 1).results.size(), 1u);
  s = Stats();
  EXPECT_EQ(s.bytes_read, 1500u);

  /* fds drops once a free is carried out. */
  ASSERT_EQ(gaio_free(w_, a), 0);
  ExpectNoResult(w_, 0);
  EXPECT_EQ(Stats().fds, 1u);
  FreeAndFinish({b});
}

/* gaio_wait() hands out at most max results; the rest stay queued for the next call. */
TEST_P(GaioTest, WaitMaxLeavesRestQueued) {
  std::vector<SocketPair> pairs;
  std::vector<int> fds;
  for (int i = 0; i < 3; i++) {
    pairs.push_back(UnixPair());
    fds.push_back(Attach(pairs.back().a));
    ASSERT_GE(fds.back(), 0);
    ASSERT_TRUE(WriteAll(pairs.back().b.get(), "0123456789", 10));
  }
  uint8_t bufs[3][16];
  int tags[3] = {0, 1, 2};
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_read(w_, fds[i], bufs[i], 16, &tags[i]), 0);
  gaio_result r[8];
  int n = gaio_wait(w_, r, 1, 5000);
  ASSERT_EQ(n, 1);
  gaio_stats s = Stats();
  EXPECT_EQ(s.in_flight, 2u);
  /* How many of the other two are already complete is the backend's business. */
  EXPECT_LE(s.queued_results, 2u);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  std::set<int> seen = {*static_cast<int *>(r[0].ctx)};
  for (const gaio_result &x : c.results) seen.insert(*static_cast<int *>(x.ctx));
  EXPECT_EQ(seen.size(), 3u);
  for (int i = 0; i < 3; i++) EXPECT_EQ(memcmp(bufs[i], "0123456789", 10), 0);
  FreeAndFinish(fds);
}

INSTANTIATE_TEST_SUITE_P(Backends, GaioTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

}  // namespace
