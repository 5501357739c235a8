// Invariants that hold whatever faults are injected (issue 12; the mechanism is gaio/fault.h).
//
// Faults legitimately change outcomes (a connection ends early, a submit says -ENOMEM, a call
// ends UNAVAILABLE), so these workloads check what may never change, over every backend:
//   - exactly one result per accepted submit (per ctx), and submitted == completed in the stats;
//   - no byte lost, duplicated or misplaced: every byte read is the next byte of the stream sent,
//     a write's result size (also on error) is what the peer can read (equal once the peer
//     reads a clean end of stream), and the watcher's byte counters match the results;
//   - an accept that fails with EMFILE leaves the listener accepting;
//   - every RPC call ends exactly once (per call id, per ctx, per stub closure), with a status
//     in 0..16 and, when OK, the right reply; the server and the channel shut down cleanly;
//   - no fd leaked (per test), no memory leaked (run under --config=asan: LeakSanitizer).
// A hang is a violation too: each test is bounded, and a Watchdog aborts one that is stuck.
//
// Built plainly it runs the same workloads with no fault (a stress test of the invariants).
// Built with --config=fault it injects faults decided by GAIO_FAULT_SEED; `bazel test` runs
// 10 seeds in one process (--gtest_repeat, one seed per repetition, see FaultEnvironment), and
// tools/fault.sh runs one process per seed over many seeds. Every test restarts the fault
// point counter of its thread, so `GAIO_FAULT_SEED=S fault_invariants_test
// --gtest_filter=<test>` replays what that test met under seed S.
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gaio/fault.h"
#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Backends;
using gaio_test::BackendUnavailable;
using gaio_test::CountOpenFds;
using gaio_test::Describe;
using gaio_test::FillPattern;
using gaio_test::Listener;
using gaio_test::PatternMismatch;
using gaio_test::SocketPair;
using gaio_test::TcpPairs;
using gaio_test::UniqueFd;
using gaio_test::UnixPair;
using gaio_test::Watchdog;

constexpr int kWatchdogMs = 30000;   // a stuck test aborts the run (a violation)
constexpr uint64_t kBoundMs = 15000; // a workload not finished by then is a violation
constexpr int kTries = 100;          // tries of a setup call that fails for want of memory,
                                     // then one more with this thread's faults paused

// f() until it returns anything but -ENOMEM: kTries times under faults, then once without (at a
// high rate, a setup of a dozen allocations rarely succeeds; the code under test is what the
// faults are for, not the test's setup).
template <class F>
int Retry(F f) {
  int rc = -ENOMEM;
  for (int i = 0; i < kTries && rc == -ENOMEM; i++) rc = f();
#ifdef GAIO_FAULT_INJECTION
  if (rc == -ENOMEM) {
    gaio__fault_thread_pause(1);
    rc = f();
    gaio__fault_thread_pause(0);
  }
#endif
  return rc;
}

// The seed of this run (1 in a plain build): it also varies the workloads.
uint64_t RunSeed() {
#ifdef GAIO_FAULT_INJECTION
  gaio__fault_config c;
  gaio__fault_get(&c);
  return c.on ? c.seed : 1;
#else
  return 1;
#endif
}

// ---- One seed per repetition, and the counts of the faults injected -------------------------

// With --gtest_repeat, repetition i runs seed GAIO_FAULT_SEED + i. At the end of each one, a
// line "gaio-fault: seed=S points=P short=N ..." gives the faults injected in it (tools/fault.sh
// sums them).
class FaultEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_config c;
    gaio__fault_get(&c);
    if (iteration_ == 0) base_ = c.seed;
    if (c.on) {
      c.seed = base_ + iteration_;
      gaio__fault_set(&c);
    }
    gaio__fault_stats_get(&before_);
    printf("gaio-fault: run seed=%" PRIu64 " rate=%u%s\n", c.seed, c.rate,
           c.on ? "" : " (GAIO_FAULT_SEED unset: nothing injected)");
#else
    printf("gaio-fault: not a fault build (--config=fault): nothing injected\n");
#endif
    iteration_++;
  }

  void TearDown() override {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_config c;
    gaio__fault_get(&c);
    gaio__fault_stats s;
    gaio__fault_stats_get(&s);
    std::string line = "gaio-fault: seed=" + std::to_string(c.seed) +
                       " points=" + std::to_string(s.points - before_.points);
    for (int k = 1; k < GAIO__FAULT_KINDS; k++)
      line += std::string(" ") + gaio__fault_kind_name(k) + "=" +
              std::to_string(s.injected[k] - before_.injected[k]);
    printf("%s\n", line.c_str());
    fflush(stdout);
#endif
  }

 private:
  int iteration_ = 0;
  uint64_t base_ = 0;
#ifdef GAIO_FAULT_INJECTION
  gaio__fault_stats before_{};
#endif
};

const ::testing::Environment *const kEnv __attribute__((unused)) =
    ::testing::AddGlobalTestEnvironment(new FaultEnvironment);

// ---- The fixture ------------------------------------------------------------------------------

class FaultInvariants : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_thread_reset();
#endif
    fds_ = CountOpenFds();
    rng_.seed(RunSeed() * 1000003u + std::hash<std::string>()(Name()));
    dog_.reset(new Watchdog(Name() + " (seed " + std::to_string(RunSeed()) + ")", kWatchdogMs));
  }

  void TearDown() override {
    dog_.reset();
    if (!IsSkipped()) {
      EXPECT_EQ(CountOpenFds(), fds_) << "fds leaked";
    }
  }

  static std::string Name() {
    const ::testing::TestInfo *t = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(t->test_suite_name()) + "." + t->name();
  }

  // A watcher on this test's backend. An allocation failure is retried; a backend that cannot
  // start here skips the test (then NULL).
  gaio_watcher *Create(gaio_options o) {
    o.backend = GetParam().c_str();
    gaio_watcher *w = nullptr;
    int rc = Retry([&] { return gaio_watcher_create(&w, &o); });
    if (BackendUnavailable(rc)) {
      skip_ = "backend " + GetParam() + " unavailable: " + gaio_strerror(rc);
      return nullptr;
    }
    EXPECT_EQ(rc, 0) << gaio_strerror(rc);
    return w;
  }

  // gaio_attach, retried while it says -ENOMEM. Passes ownership on success.
  int Attach(gaio_watcher *w, UniqueFd &fd) {
    int rc = Retry([&] { return gaio_attach(w, fd.get()); });
    EXPECT_EQ(rc, 0) << "gaio_attach: " << gaio_strerror(rc);
    return rc == 0 ? fd.Release() : -1;
  }

  uint64_t Rand(uint64_t lo, uint64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }

  // The RPC workload (RpcCallsEndExactlyOnce), in plaintext or over TLS.
  void RpcCalls(bool tls);

  std::string skip_;
  std::mt19937_64 rng_;

 private:
  int fds_ = 0;
  std::unique_ptr<Watchdog> dog_;
};

// Every accepted submit and its one result. ctx is the Op's address.
struct Op {
  int side = 0;  // 0: client end, 1: server end (echo test); unused elsewhere
  size_t conn = 0;
  int op = 0;    // GAIO_OP_*
  std::vector<uint8_t> buf;
  bool swap = false;
  bool done = false;
};

class Ops {
 public:
  Op *New(int side, size_t conn, int op) {
    ops_.emplace_back(new Op);
    Op *o = ops_.back().get();
    o->side = side;
    o->conn = conn;
    o->op = op;
    return o;
  }
  // The submit was refused: no result will come, the op is forgotten.
  void Drop(Op *o) {
    EXPECT_EQ(ops_.back().get(), o);
    ops_.pop_back();
  }
  // The one result of o; false (and a failure) if it is not an outstanding op of ours.
  Op *Take(const gaio_result &r) {
    Op *o = static_cast<Op *>(r.ctx);
    bool known = false;
    for (auto it = ops_.rbegin(); it != ops_.rend() && !known; ++it) known = it->get() == o;
    EXPECT_TRUE(known) << "a result with a ctx never submitted: " << Describe(r);
    if (!known) return nullptr;
    EXPECT_FALSE(o->done) << "a second result for one submit: " << Describe(r);
    if (o->done) return nullptr;
    EXPECT_EQ(r.op, o->op) << Describe(r);
    o->done = true;
    results_++;
    return o;
  }
  size_t outstanding() const {
    size_t n = 0;
    for (auto &o : ops_) n += !o->done;
    return n;
  }
  size_t accepted() const { return ops_.size(); }
  size_t results() const { return results_; }

 private:
  std::deque<std::unique_ptr<Op>> ops_;
  size_t results_ = 0;
};

// The end of a workload: every accepted submit has had its one result, and the watcher agrees.
void ExpectAllDelivered(gaio_watcher *w, const Ops &ops, uint64_t read_sizes,
                        uint64_t write_sizes) {
  EXPECT_EQ(ops.outstanding(), 0u) << "submits without a result";
  EXPECT_EQ(ops.results(), ops.accepted());
  gaio_stats st;
  gaio_watcher_stats(w, &st);
  EXPECT_EQ(st.submitted, ops.accepted()) << "the watcher counted other submits";
  EXPECT_EQ(st.completed, st.submitted);
  EXPECT_EQ(st.in_flight, 0u);
  EXPECT_EQ(st.queued_results, 0u);
  EXPECT_EQ(st.bytes_read, read_sizes) << "bytes read by the kernel that no result reported";
  EXPECT_EQ(st.bytes_written, write_sizes) << "bytes written that no result reported";
}

// ---- Echo: no byte lost or duplicated, one result per submit ----------------------------------

constexpr size_t kEchoConns = 12;        // 8 TCP, 4 unix
constexpr uint64_t kEchoBytes = 48 << 10; // per connection, each way
constexpr int kMaxWrites = 4;            // writes in flight per end

// One end of a connection.
struct End {
  int fd = -1;
  int pending = 0;        // submits without a result yet
  bool reading = false;
  Op *read_op = nullptr;  // the read outstanding
  bool read_end = false;  // a read ended with EOF or an error
  bool clean_eof = false; // ... with EOF
  bool write_error = false;
  bool free_wanted = false;
  bool freed = false;
  int writes = 0;
  uint64_t received = 0;     // bytes read, each checked against the pattern
  uint64_t write_sizes = 0;  // the sizes of the write results
  bool shut_sent = false;
  bool finished() const { return freed && pending == 0; }
};

struct Conn {
  uint64_t seed = 0; // of the byte pattern
  End c, s;          // the client end writes the pattern and reads the echo; s echoes
  uint64_t queued = 0;
  std::deque<std::vector<uint8_t>> backlog; // bytes s read and has not yet handed to a write
};

class Echo {
 public:
  Echo(FaultInvariants *t, gaio_watcher *w) : t_(t), w_(w) {}

  bool Add(UniqueFd a, UniqueFd b, uint64_t seed) {
    Conn c;
    c.seed = seed;
    c.c.fd = t_->Attach(w_, a);
    c.s.fd = t_->Attach(w_, b);
    if (c.c.fd < 0 || c.s.fd < 0) {
      if (c.c.fd >= 0) close(c.c.fd);  // the watcher owns it: it is closed at destroy anyway
      return false;
    }
    conns_.push_back(std::move(c));
    return true;
  }

  // Drive every connection to its end. Returns false on a hang (nothing more happened in time).
  bool Run() {
    uint64_t t0 = gaio_now();
    gaio_result res[64];
    for (;;) {
      bool all = true;
      for (size_t i = 0; i < conns_.size(); i++) {
        Pump(i);
        all = all && conns_[i].c.finished() && conns_[i].s.finished();
      }
      if (all) return true;
      if (gaio_now() - t0 > kBoundMs * 1000000u) return false;
      int n = gaio_wait(w_, res, 64, 20);
      EXPECT_GE(n, 0) << "gaio_wait: " << gaio_strerror(n);
      if (n < 0) return false;
      for (int i = 0; i < n; i++) OnResult(res[i]);
    }
  }

  // The byte accounting, once every result is in.
  void Check() {
    for (size_t i = 0; i < conns_.size(); i++) {
      const Conn &c = conns_[i];
      SCOPED_TRACE("connection " + std::to_string(i));
      // Each end read no more than the other end's writes reported, and every byte of it
      // matched (checked as it arrived). Writes that failed report what they delivered: once
      // the reader met a clean end of stream (and did not shut itself down by an injected
      // reset, which its failed write would show), it read exactly that.
      EXPECT_LE(c.s.received, c.c.write_sizes);
      EXPECT_LE(c.c.received, c.s.write_sizes);
      EXPECT_LE(c.s.write_sizes, c.s.received) << "echoed more than was received";
      if (c.s.clean_eof && !c.s.write_error) {
        EXPECT_EQ(c.s.received, c.c.write_sizes);
      }
      if (c.c.clean_eof && !c.c.write_error) {
        EXPECT_EQ(c.c.received, c.s.write_sizes);
      }
      // Without any fault, everything arrives.
      if (!Faulted()) {
        EXPECT_EQ(c.c.received, kEchoBytes);
        EXPECT_EQ(c.s.received, kEchoBytes);
      }
    }
    ExpectAllDelivered(w_, ops_, read_sizes_, write_sizes_);
  }

  std::string State() const {
    std::string s;
    for (size_t i = 0; i < conns_.size(); i++) {
      const Conn &c = conns_[i];
      char line[256];
      snprintf(line, sizeof line,
               "conn %zu: client pending=%d rd_end=%d freed=%d got=%" PRIu64
               " | server pending=%d rd_end=%d freed=%d got=%" PRIu64 " backlog=%zu\n",
               i, c.c.pending, c.c.read_end, c.c.freed, c.c.received, c.s.pending, c.s.read_end,
               c.s.freed, c.s.received, c.backlog.size());
      s += line;
    }
    return s;
  }

 private:
  static bool Faulted() {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_config c;
    gaio__fault_get(&c);
    return c.on && c.rate > 0;
#else
    return false;
#endif
  }

  // A submit: 0 (a result will come), or -ENOMEM (none will come: try again later). Anything
  // else is a failure.
  bool Submit(Op *o, int rc, End &e) {
    if (rc == 0) {
      e.pending++;
      return true;
    }
    ops_.Drop(o);
    EXPECT_EQ(rc, -ENOMEM) << "submit refused: " << gaio_strerror(rc);
    if (rc != -ENOMEM) e.free_wanted = true;
    return false;
  }

  void Pump(size_t i) {
    Conn &c = conns_[i];
    PumpClient(i, c);
    PumpServer(i, c);
    for (End *e : {&c.c, &c.s}) {
      if (e->free_wanted && !e->freed) {
        int rc = gaio_free(w_, e->fd);
        EXPECT_TRUE(rc == 0 || rc == -ENOMEM) << "gaio_free: " << gaio_strerror(rc);
        e->freed = rc == 0 || rc != -ENOMEM;
      }
    }
  }

  void PumpClient(size_t i, Conn &c) {
    End &e = c.c;
    if (e.free_wanted) return;
    while (c.queued < kEchoBytes && e.writes < kMaxWrites && !e.write_error) {
      size_t len =
          static_cast<size_t>(std::min<uint64_t>(t_->Rand(1, 16 << 10), kEchoBytes - c.queued));
      Op *o = ops_.New(0, i, GAIO_OP_WRITE);
      o->buf.resize(len);
      FillPattern(c.seed, c.queued, o->buf.data(), len);
      if (!Submit(o, gaio_write(w_, e.fd, o->buf.data(), len, o), e)) break;
      c.queued += len;
      e.writes++;
    }
    if (c.queued == kEchoBytes && e.writes == 0 && !e.write_error && !e.shut_sent) {
      Op *o = ops_.New(0, i, GAIO_OP_SHUTDOWN);
      e.shut_sent = Submit(o, gaio_shutdown(w_, e.fd, o), e);
    }
    if (!e.reading && !e.read_end) Read(i, 0, e);
    // Now and then the client cancels its read (between waits, as gaio_cancel() wants): it
    // ends -ECANCELED with the bytes it had, or it had ended already (-ENOENT).
    if (e.reading && t_->Rand(0, 15) == 0) {
      int rc = gaio_cancel(w_, e.fd, e.read_op);
      EXPECT_TRUE(rc == 0 || rc == -ENOENT || rc == -ENOMEM)
          << "gaio_cancel: " << gaio_strerror(rc);
    }
  }

  void PumpServer(size_t i, Conn &c) {
    End &e = c.s;
    if (e.free_wanted) return;
    while (!c.backlog.empty() && e.writes < kMaxWrites && !e.write_error) {
      Op *o = ops_.New(1, i, GAIO_OP_WRITE);
      o->buf = c.backlog.front();
      if (!Submit(o, gaio_write(w_, e.fd, o->buf.data(), o->buf.size(), o), e)) break;
      c.backlog.pop_front();
      e.writes++;
    }
    // The client's end of stream is echoed once every byte before it is.
    if (e.clean_eof && c.backlog.empty() && e.writes == 0 && !e.write_error && !e.shut_sent) {
      Op *o = ops_.New(1, i, GAIO_OP_SHUTDOWN);
      e.shut_sent = Submit(o, gaio_shutdown(w_, e.fd, o), e);
    }
    if (!e.reading && !e.read_end) Read(i, 1, e);
  }

  // A read of a random kind: into a buffer, into the swap buffer, or a read-full; the client's
  // have a deadline of a few ms now and then (-ETIMEDOUT, with the bytes a read-full had).
  void Read(size_t i, int side, End &e) {
    uint64_t kind = t_->Rand(0, 2);
    int op = kind == 2 ? GAIO_OP_READ_FULL : GAIO_OP_READ;
    uint64_t deadline = 0;
    if (side == 0 && t_->Rand(0, 7) == 0) deadline = gaio_now() + t_->Rand(1, 5) * 1000000u;
    Op *o = ops_.New(side, i, op);
    int rc;
    if (kind == 1) {
      o->swap = true;
      rc = gaio_read_deadline(w_, e.fd, nullptr, 0, o, deadline);
    } else {
      o->buf.resize(kind == 2 ? t_->Rand(1, 4096) : t_->Rand(1, 16 << 10));
      rc = op == GAIO_OP_READ_FULL
               ? gaio_read_full(w_, e.fd, o->buf.data(), o->buf.size(), o, deadline)
               : gaio_read_deadline(w_, e.fd, o->buf.data(), o->buf.size(), o, deadline);
    }
    e.reading = Submit(o, rc, e);
    if (e.reading) e.read_op = o;
  }

  void OnResult(const gaio_result &r) {
    Op *o = ops_.Take(r);
    if (o == nullptr) return;
    Conn &c = conns_[o->conn];
    End &e = o->side == 0 ? c.c : c.s;
    e.pending--;
    if (o->op == GAIO_OP_WRITE) {
      OnWrite(e, o, r);
    } else if (o->op == GAIO_OP_SHUTDOWN) {
      if (r.error != 0) e.free_wanted = true;
      if (o->side == 1 || r.error != 0) e.free_wanted = true; // the server is done after it
    } else {
      OnRead(c, e, o, r);
    }
  }

  void OnWrite(End &e, Op *o, const gaio_result &r) {
    e.writes--;
    write_sizes_ += r.size;
    e.write_sizes += r.size;
    EXPECT_LE(r.size, o->buf.size()) << Describe(r);
    if (r.error == 0) {
      EXPECT_EQ(r.size, o->buf.size()) << "a write that succeeded wrote less: " << Describe(r);
      EXPECT_FALSE(e.write_error) << "a write succeeded after one failed (a gap in the stream)";
      return;
    }
    if (r.error != -ECANCELED) e.write_error = true;
    e.free_wanted = true;
  }

  void OnRead(Conn &c, End &e, Op *o, const gaio_result &r) {
    e.reading = false;
    e.read_op = nullptr;
    read_sizes_ += r.size;
    const uint8_t *data = o->swap ? static_cast<const uint8_t *>(r.buf) : o->buf.data();
    EXPECT_EQ(r.size > 0 && o->swap, (r.flags & GAIO_RESULT_SWAP) != 0) << Describe(r);
    if (!o->swap) {
      EXPECT_LE(r.size, o->buf.size()) << Describe(r);
    }
    if (r.size > 0) {
      // Bytes come with errors too: a read-full cut short by EOF or a reset reports them.
      size_t bad = PatternMismatch(c.seed, e.received, data, r.size);
      EXPECT_EQ(bad, SIZE_MAX) << "byte " << e.received + bad << " of the stream is wrong ("
                               << (o->side ? "server" : "client") << " side) " << Describe(r);
      if (o->side == 1) c.backlog.emplace_back(data, data + r.size);
      e.received += r.size;
    }
    if (r.error == 0) {
      if (o->op == GAIO_OP_READ_FULL) {
        EXPECT_EQ(r.size, o->buf.size()) << Describe(r);
      }
      return;
    }
    // A deadline or a cancel ends this read only; a cancel after the free ends the stream.
    if ((r.error == -ETIMEDOUT || r.error == -ECANCELED) && !e.free_wanted) return;
    e.read_end = true;
    if (r.error == GAIO_EOF) {
      e.clean_eof = true;
      if (o->side == 0) e.free_wanted = true; // the client has its echo
    } else {
      e.free_wanted = true;
    }
  }

  FaultInvariants *t_;
  gaio_watcher *w_;
  std::vector<Conn> conns_;
  Ops ops_;
  uint64_t read_sizes_ = 0, write_sizes_ = 0;
};

// Echo over 8 TCP and 4 unix connections, both ends on one watcher; reads of every kind; on
// io_uring a 4-entry ring, so that its submission queue fills up all the time.
TEST_P(FaultInvariants, EchoKeepsEveryByteOnce) {
  gaio_options o = {};
  o.ring_entries = 4;
  o.read_max = 4096;
  o.swap_size = 16 << 10; // a small swap buffer: NULL-buffer reads wait for it now and then
  gaio_watcher *w = Create(o);
  if (w == nullptr) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    return;
  }
  {
    Echo echo(this, w);
    std::vector<SocketPair> tcp = TcpPairs(8);
    uint64_t seed = RunSeed() << 8;
    for (auto &p : tcp) ASSERT_TRUE(echo.Add(std::move(p.a), std::move(p.b), seed++));
    for (size_t i = 8; i < kEchoConns; i++) {
      SocketPair p = UnixPair();
      ASSERT_TRUE(echo.Add(std::move(p.a), std::move(p.b), seed++));
    }
    EXPECT_TRUE(echo.Run()) << "the echo did not end in time:\n" << echo.State();
    echo.Check();
  }
  gaio_watcher_destroy(w);
}

// ---- Accept: EMFILE and the like leave the listener accepting ---------------------------------

uint16_t PortOf(int fd, bool peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len)
                : getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len);
  return rc == 0 ? ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port) : 0;
}

// Has the other end closed this client connection? (Nothing is ever sent on it.)
bool ClosedByPeer(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

uint64_t InjectedAllocs() {
#ifdef GAIO_FAULT_INJECTION
  gaio__fault_stats st;
  gaio__fault_stats_get(&st);
  return st.injected[GAIO__FAULT_ALLOC];
#else
  return 0;
#endif
}

// Clients connect in bursts while a few accepts are kept queued; accept errors (EMFILE, ...) are
// answered by accepting again. Every client connection must end up accepted, or closed by the
// watcher (io_uring without memory to keep a connection its multishot accept took beyond the
// accepts queued: gaio.h, gaio_accept); none may be left hanging in between.
TEST_P(FaultInvariants, ListenerKeepsAcceptingAfterErrors) {
  constexpr size_t kClients = 24;
  constexpr int kQueued = 4; // accepts in flight: on io_uring, a multishot accept serves them
  gaio_watcher *w = Create(gaio_options{});
  if (w == nullptr) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    return;
  }
  uint64_t allocs0 = InjectedAllocs();
  {
    Listener l(kClients * 2);
    ASSERT_TRUE(l.ok());
    UniqueFd lfd(l.Release());
    int fd = Attach(w, lfd);
    ASSERT_GE(fd, 0);
    Ops ops;
    std::vector<UniqueFd> clients;
    std::map<uint16_t, size_t> by_port;
    std::vector<int> fate; // 0: waiting, 1: accepted, 2: closed by the watcher
    struct sockaddr_storage peer;
    size_t settled = 0, accepted = 0, dropped = 0;
    int queued = 0, errors = 0;
    bool freed = false;
    uint64_t t0 = gaio_now();
    gaio_result res[16];
    while (queued > 0 || !freed) {
      // Clients arrive in bursts of 6 while accepts are served.
      if (clients.size() < kClients && clients.size() <= settled + 8) {
        for (int k = 0; k < 6 && clients.size() < kClients; k++) {
          clients.push_back(l.Connect());
          ASSERT_TRUE(clients.back().valid());
          by_port[PortOf(clients.back().get(), false)] = fate.size();
          fate.push_back(0);
        }
      }
      for (size_t i = 0; i < fate.size(); i++) {
        if (fate[i] == 0 && ClosedByPeer(clients[i].get())) {
          fate[i] = 2;
          settled++;
          dropped++;
        }
      }
      while (!freed && queued < kQueued) {
        Op *o = ops.New(0, 0, GAIO_OP_ACCEPT);
        // One of them asks for the peer address (never served by a multishot accept).
        int rc = gaio_accept(w, fd, queued == 0 ? &peer : nullptr, o);
        if (rc != 0) {
          ops.Drop(o);
          EXPECT_EQ(rc, -ENOMEM) << gaio_strerror(rc);
          break;
        }
        queued++;
      }
      if (!freed && settled == kClients) {
        int rc = gaio_free(w, fd); // the accepts still queued end -ECANCELED
        EXPECT_TRUE(rc == 0 || rc == -ENOMEM) << gaio_strerror(rc);
        freed = rc == 0 || rc != -ENOMEM;
      }
      if (gaio_now() - t0 > kBoundMs * 1000000u) {
        ADD_FAILURE() << "accepted " << accepted << " and lost " << dropped << " of " << kClients
                      << " connections (" << errors << " accept errors): the listener stopped";
        break;
      }
      int n = gaio_wait(w, res, 16, 20);
      ASSERT_GE(n, 0) << gaio_strerror(n);
      for (int i = 0; i < n; i++) {
        Op *o = ops.Take(res[i]);
        if (o == nullptr) continue;
        queued--;
        if (res[i].error == 0) {
          EXPECT_GE(res[i].conn_fd, 0) << Describe(res[i]);
          auto it = by_port.find(PortOf(res[i].conn_fd, true));
          EXPECT_TRUE(it != by_port.end()) << "a connection of no client";
          if (it != by_port.end()) {
            EXPECT_EQ(fate[it->second], 0) << "client " << it->second << " accepted twice";
            fate[it->second] = 1;
            settled++;
            accepted++;
          }
          close(res[i].conn_fd);
          continue;
        }
        EXPECT_EQ(res[i].conn_fd, -1) << Describe(res[i]);
        int v = gaio_accept_verdict(res[i].error);
        EXPECT_TRUE(v == GAIO_ACCEPT_NEXT || v == GAIO_ACCEPT_BACKOFF ||
                    (v == GAIO_ACCEPT_GONE && freed))
            << "the listener broke: " << Describe(res[i]);
        errors += v != GAIO_ACCEPT_GONE;
      }
    }
    EXPECT_EQ(settled, kClients);
    // Only io_uring drops, and only for want of memory.
    if (GetParam() != "uring" || InjectedAllocs() == allocs0) {
      EXPECT_EQ(dropped, 0u) << "connections closed by the watcher, never accepted";
    }
    EXPECT_EQ(ops.outstanding(), 0u);
    gaio_stats st;
    gaio_watcher_stats(w, &st);
    EXPECT_EQ(st.submitted, ops.accepted());
    EXPECT_EQ(st.completed, st.submitted);
  }
  gaio_watcher_destroy(w);
}

// ---- Datagrams: each arrives whole and once ----------------------------------------------------

// A unix datagram socket pair loses nothing and never splits a datagram: whatever the faults
// (only EAGAIN and EINTR fit a datagram, and refused submits are retried), every datagram sent
// arrives once and whole, in order.
TEST_P(FaultInvariants, DatagramsArriveWholeAndOnce) {
  constexpr uint32_t kDatagrams = 300;
  gaio_options o = {};
  o.ring_entries = 4;
  gaio_watcher *w = Create(o);
  if (w == nullptr) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    return;
  }
  {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd a(sv[0]), b(sv[1]);
    int tx = Attach(w, a), rx = Attach(w, b);
    ASSERT_GE(tx, 0);
    ASSERT_GE(rx, 0);
    Ops ops;
    uint32_t sent = 0, received = 0, sends = 0, recvs = 0;
    uint64_t read_sizes = 0, write_sizes = 0;
    uint64_t t0 = gaio_now();
    gaio_result res[32];
    // Datagram i is 8..2048 bytes of pattern i; its first 4 bytes say i.
    auto fill = [&](uint32_t i, std::vector<uint8_t> &buf) {
      buf.resize(8 + (i * 7919u) % 2041u);
      FillPattern(1000 + i, 0, buf.data(), buf.size());
      memcpy(buf.data(), &i, sizeof i);
    };
    while (received < kDatagrams && gaio_now() - t0 < kBoundMs * 1000000u) {
      while (sent < kDatagrams && sends < 8) {
        Op *op = ops.New(0, sent, GAIO_OP_SENDTO);
        fill(sent, op->buf);
        int rc = gaio_sendto(w, tx, op->buf.data(), op->buf.size(), nullptr, 0, op, 0);
        if (rc != 0) {
          ops.Drop(op);
          EXPECT_EQ(rc, -ENOMEM) << gaio_strerror(rc);
          break;
        }
        sent++;
        sends++;
      }
      while (recvs < 4) {
        Op *op = ops.New(1, 0, GAIO_OP_RECVFROM);
        bool swap = Rand(0, 1) == 0;
        if (!swap) op->buf.resize(4096);
        op->swap = swap;
        int rc = gaio_recvfrom(w, rx, swap ? nullptr : op->buf.data(), op->buf.size(), nullptr,
                               op, 0);
        if (rc != 0) {
          ops.Drop(op);
          EXPECT_EQ(rc, -ENOMEM) << gaio_strerror(rc);
          break;
        }
        recvs++;
      }
      int n = gaio_wait(w, res, 32, 20);
      ASSERT_GE(n, 0) << gaio_strerror(n);
      for (int k = 0; k < n; k++) {
        const gaio_result &r = res[k];
        Op *op = ops.Take(r);
        if (op == nullptr) continue;
        if (op->op == GAIO_OP_SENDTO) {
          sends--;
          write_sizes += r.size;
          EXPECT_EQ(r.error, 0) << Describe(r);
          EXPECT_EQ(r.size, r.error == 0 ? op->buf.size() : 0u) << "a datagram cut " << Describe(r);
          continue;
        }
        recvs--;
        read_sizes += r.size;
        EXPECT_EQ(r.error, 0) << Describe(r);
        EXPECT_EQ(r.flags & GAIO_RESULT_TRUNC, 0u) << Describe(r);
        if (r.error != 0) continue;
        const uint8_t *data = op->swap ? static_cast<const uint8_t *>(r.buf) : op->buf.data();
        uint32_t i = 0;
        ASSERT_GE(r.size, sizeof i) << Describe(r);
        memcpy(&i, data, sizeof i);
        EXPECT_EQ(i, received) << "datagrams out of order, lost or twice";
        std::vector<uint8_t> want;
        fill(i, want);
        EXPECT_EQ(r.size, want.size()) << "datagram " << i << " is not whole";
        EXPECT_TRUE(r.size == want.size() && memcmp(data, want.data(), r.size) == 0)
            << "datagram " << i << " corrupted";
        received++;
      }
    }
    EXPECT_EQ(received, kDatagrams) << "datagrams that never arrived (" << sent << " sent)";
    // The receives left end -ECANCELED when rx is freed.
    for (int fd : {tx, rx}) {
      int rc = Retry([&] { return gaio_free(w, fd); });
      EXPECT_EQ(rc, 0) << gaio_strerror(rc);
    }
    while (ops.outstanding() > 0 && gaio_now() - t0 < kBoundMs * 1000000u) {
      int n = gaio_wait(w, res, 32, 20);
      ASSERT_GE(n, 0);
      for (int k = 0; k < n; k++) {
        if (ops.Take(res[k]) == nullptr) continue;
        read_sizes += res[k].size;
        EXPECT_TRUE(res[k].error == -ECANCELED) << Describe(res[k]);
      }
    }
    ExpectAllDelivered(w, ops, read_sizes, write_sizes);
  }
  gaio_watcher_destroy(w);
}

// ---- RPC: every call ends exactly once ------------------------------------------------------

void SayHandler(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
                Test__V1__EchoReply_Closure closure, void *data) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = std::string("echo:") + in->text;
  out.text = const_cast<char *>(text.c_str());
  out.payload = in->payload;
  closure(&out, data);
}

void FailHandler(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
                 Test__V1__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

// Slow: replied to later by a thread of the test (the reply crosses to the worker's inbox).
class Replier {
 public:
  Replier() : th_([this] { Run(); }) {}
  ~Replier() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    th_.join();
  }
  void Push(Test__V1__EchoReply_Closure closure, void *data, const Test__V1__EchoRequest *in) {
    Item it{closure, data, in->text, std::string(reinterpret_cast<char *>(in->payload.data),
                                                 in->payload.len)};
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(std::move(it));
    }
    cv_.notify_all();
  }

 private:
  struct Item {
    Test__V1__EchoReply_Closure closure;
    void *data;
    std::string text, payload;
  };
  void Run() {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_thread_reset();
#endif
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !q_.empty(); });
      if (q_.empty()) return; // stop_: every call held was answered (the server waits for it)
      Item it = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
      std::string text = "echo:" + it.text;
      out.text = const_cast<char *>(text.c_str());
      out.payload.data = reinterpret_cast<uint8_t *>(const_cast<char *>(it.payload.data()));
      out.payload.len = it.payload.size();
      it.closure(&out, it.data);
      lk.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> q_;
  bool stop_ = false;
  std::thread th_;
};

Replier *g_replier;

void SlowHandler(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
                 Test__V1__EchoReply_Closure closure, void *data) {
  g_replier->Push(closure, data, in);
}

// Hold replies at once here: nothing in this suite may outlive its test.
#define h_say SayHandler
#define h_slow SlowHandler
#define h_hold SayHandler
#define h_fail FailHandler
Test__V1__Echo_Service g_echo_service = TEST__V1__ECHO__INIT(h_);
#undef h_say
#undef h_slow
#undef h_hold
#undef h_fail

// Where the TLS workload's certificates are (tests/test_util.h: MakeTestCerts); "" when they
// could not be made. tools/fault.sh runs a process per seed, and making them takes longer than
// the workload: so they are made once a day per user and shared, in a folder that appears
// whole (made under another name, then renamed; a process that loses the race uses the
// winner's).
const std::string &CertDir() {
  static std::once_flag once;
  static std::string dir;
  std::call_once(once, [] {
    const char *t = getenv("TEST_TMPDIR");
    char day[16];
    time_t now = time(nullptr);
    struct tm tm_now;
    strftime(day, sizeof day, "%Y%m%d", gmtime_r(&now, &tm_now));
    std::string d = std::string(t ? t : "/tmp") + "/gaio_fault_certs_" + std::to_string(getuid()) +
                    "_" + day;
    if (access((d + "/server.pem").c_str(), R_OK) == 0) {
      dir = d;
      return;
    }
    std::string mine = d + ".tmp" + std::to_string(getpid());
    if (!gaio_test::MakeTestCerts(mine)) return;
    if (rename(mine.c_str(), d.c_str()) != 0) {  // another process made it first
      std::string rm = "rm -rf '" + mine + "'";
      if (system(rm.c_str()) != 0) return;
      if (access((d + "/server.pem").c_str(), R_OK) != 0) return;
    }
    dir = d;
  });
  return dir;
}

// A running server on 127.0.0.1 (on a tls: listener when tls is given), made again from
// scratch while a step fails for want of memory (a server whose start failed is only fit to be
// destroyed).
int TryServer(const std::string &backend, size_t max_write, const rpc_tls_server_options *tls,
              rpc_server **out) {
  rpc_server_options o = {};
  o.tls = tls;
  o.workers = 2;
  o.backend = backend.c_str();
  o.close_linger_ms = 200;
  o.max_write_bytes_per_conn = max_write;
  rpc_server *s = nullptr;
  int rc = rpc_server_create(&s, &o);
  if (rc != 0) return rc;
  rc = rpc_server_add_service(s, &g_echo_service.base);
  if (rc == 0) rc = rpc_server_listen(s, tls ? "tls:127.0.0.1:0" : "127.0.0.1:0");
  if (rc == 0) rc = rpc_server_start(s);
  if (rc == 0) {
    *out = s;
    return 0;
  }
  rpc_server_destroy(s);
  return rc;
}

rpc_server *StartServer(const std::string &backend, size_t max_write,
                        const rpc_tls_server_options *tls) {
  rpc_server *s = nullptr;
  int rc = Retry([&] { return TryServer(backend, max_write, tls, &s); });
  EXPECT_EQ(rc, 0) << "no server: " << gaio_strerror(rc);
  return s;
}

struct StubCalls {
  std::atomic<int> closures[32];
  std::atomic<int> bad_status{0};
};

StubCalls *g_stubs;

void StubClosure(const ProtobufCMessage *reply, void *data) {
  int i = static_cast<int>(reinterpret_cast<intptr_t>(data));
  g_stubs->closures[i]++;
  const char *msg = nullptr;
  int st = rpc_last_status(&msg);
  if (st < 0 || st > 16 || (st == RPC_STATUS_OK) != (reply != nullptr)) g_stubs->bad_status++;
}

struct CallRec {
  int kind = 0; // 0 Say, 1 Fail, 2 Say with a short deadline, 3 Say cancelled, 4 Slow,
                // 5 Slow with a short deadline
  std::string text;
  std::string payload;
  int code = 0;
  uint64_t id = 0;
  int completions = 0;
};

// Asynchronous, stub and blocking calls of every kind; by the seed, a channel with keepalive, a
// server that stops reading a connection at 16 KiB queued, and a server shut down first (with
// calls in flight) or last. Over TLS, faults also cut records, fail the buffers of records and
// reset connections during handshakes.
void FaultInvariants::RpcCalls(bool tls) {
  constexpr int kCalls = 120;
  constexpr int kStubCalls = 16;
  constexpr int kBlocking = 8;
  {
    // Skip where the backend cannot start (a watcher of its own says so).
    gaio_watcher *probe = Create(gaio_options{});
    if (probe == nullptr) {
      if (!skip_.empty()) GTEST_SKIP() << skip_;
      return;
    }
    gaio_watcher_destroy(probe);
  }
  std::string ca, cert, key;
  rpc_tls_server_options ts = {};
  rpc_tls_client_options tc = {};
  if (tls) {
    ASSERT_FALSE(CertDir().empty()) << "making the test certificates failed";
    ca = CertDir() + "/ca.pem";
    cert = CertDir() + "/server.pem";
    key = CertDir() + "/server.key";
    ts.cert_file = cert.c_str();
    ts.key_file = key.c_str();
    tc.ca_file = ca.c_str();
  }
  Replier replier; // after the server is gone: the server waits for the calls it holds
  g_replier = &replier;
  bool server_first = Rand(0, 1) == 1;
  rpc_server *srv = StartServer(GetParam(), Rand(0, 1) ? 16u << 10 : 0, tls ? &ts : nullptr);
  ASSERT_NE(srv, nullptr);
  std::string target = "127.0.0.1:" + std::to_string(rpc_server_port(srv));
  rpc_channel_options co = {};
  if (tls) co.tls = &tc;  // every TCP endpoint speaks TLS; the name checked is 127.0.0.1
  co.backend = GetParam().c_str();
  co.backoff_initial_ms = 1;
  co.backoff_max_ms = 20;
  co.connect_timeout_ms = 2000;
  co.keepalive_ms = Rand(0, 1) ? 20 : 0;
  rpc_channel *ch = nullptr;
  int rc = Retry([&] { return rpc_channel_create(&ch, target.c_str(), &co); });
  ASSERT_EQ(rc, 0) << gaio_strerror(rc);
  rpc_cq *cq = nullptr;
  rc = Retry([&] { return rpc_cq_create(&cq); });
  ASSERT_EQ(rc, 0);

  rpc_method say, fail, slow;
  ASSERT_EQ(0, rpc_method_find(&say, &test__v1__echo__descriptor, "Say"));
  ASSERT_EQ(0, rpc_method_find(&slow, &test__v1__echo__descriptor, "Slow"));
  ASSERT_EQ(0, rpc_method_find(&fail, &test__v1__echo__descriptor, "Fail"));

  // Blocking calls from another thread, meanwhile.
  std::atomic<int> blocking_bad{0};
  std::thread blocker([&] {
#ifdef GAIO_FAULT_INJECTION
    gaio__fault_thread_reset();
#endif
    for (int i = 0; i < kBlocking; i++) {
      Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
      std::string text = "b" + std::to_string(i);
      req.text = const_cast<char *>(text.c_str());
      ProtobufCMessage *reply = nullptr;
      char msg[128];
      int st = rpc_channel_call(ch, &say, &req.base, -1, &reply, msg, sizeof msg);
      bool ok = st == -ENOMEM ||
                (st >= 0 && st <= 16 && (st == RPC_STATUS_OK) == (reply != nullptr));
      if (st == RPC_STATUS_OK && reply != nullptr) {
        auto *r = reinterpret_cast<Test__V1__EchoReply *>(reply);
        ok = ok && std::string(r->text) == "echo:" + text;
      }
      if (!ok) blocking_bad++;
      if (reply != nullptr) protobuf_c_message_free_unpacked(reply, nullptr);
    }
  });

  // Stub calls: each closure runs exactly once, also when the call is not even submitted.
  StubCalls stubs;
  for (auto &c : stubs.closures) c = 0;
  g_stubs = &stubs;
  ProtobufCService *svc = nullptr;
  Retry([&] {
    svc = rpc_channel_service(ch, &test__v1__echo__descriptor);
    return svc != nullptr ? 0 : -ENOMEM;
  });
  ASSERT_NE(svc, nullptr);
  for (int i = 0; i < kStubCalls; i++) {
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>("stub");
    test__v1__echo__say(svc, &req, reinterpret_cast<Test__V1__EchoReply_Closure>(StubClosure),
                        reinterpret_cast<void *>(static_cast<intptr_t>(i)));
  }

  // Asynchronous calls of every kind.
  std::vector<CallRec> calls(kCalls);
  std::set<uint64_t> ids;
  int accepted = 0, refused = 0;
  for (int i = 0; i < kCalls; i++) {
    CallRec &c = calls[i];
    c.kind = static_cast<int>(Rand(0, 5));
    c.text = "t" + std::to_string(i);
    c.payload.assign(static_cast<size_t>(Rand(0, 8 << 10)), static_cast<char>('a' + i % 26));
    c.code = static_cast<int>(Rand(1, 16));
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>(c.text.c_str());
    req.code = c.code;
    req.payload.data = reinterpret_cast<uint8_t *>(const_cast<char *>(c.payload.data()));
    req.payload.len = c.payload.size();
    int timeout = c.kind == 2 || c.kind == 5 ? static_cast<int>(Rand(1, 30)) : -1;
    const rpc_method *m = c.kind == 1 ? &fail : c.kind >= 4 ? &slow : &say;
    rc = rpc_channel_submit(ch, m, &req.base, timeout, cq,
                            reinterpret_cast<void *>(static_cast<intptr_t>(i + 1)), &c.id);
    if (rc != 0) {
      EXPECT_EQ(rc, -ENOMEM) << "submit: " << gaio_strerror(rc);
      c.kind = -1;
      refused++;
      continue;
    }
    accepted++;
    EXPECT_TRUE(ids.insert(c.id).second) << "call id " << c.id << " given twice";
    if (c.kind == 3) {
      int crc = rpc_channel_cancel(ch, c.id);
      EXPECT_TRUE(crc == 0 || crc == -ENOMEM) << gaio_strerror(crc);
    }
  }

  // Collect: every accepted call completes once, within the bound.
  int completed = 0;
  std::set<uint64_t> seen;
  auto collect = [&](int timeout_ms) {
    rpc_completion batch[32];
    int n = rpc_cq_wait(cq, batch, 32, timeout_ms);
    EXPECT_GE(n, 0);
    for (int k = 0; k < n; k++) {
      const rpc_completion &cp = batch[k];
      intptr_t i = reinterpret_cast<intptr_t>(cp.ctx) - 1;
      completed++;
      EXPECT_TRUE(seen.insert(cp.call_id).second) << "call id " << cp.call_id << " completed twice";
      EXPECT_TRUE(i >= 0 && i < kCalls) << "a completion with a ctx never submitted";
      EXPECT_GE(cp.status, 0);
      EXPECT_LE(cp.status, 16);
      EXPECT_EQ(cp.status == RPC_STATUS_OK, cp.reply != nullptr) << cp.status << " " << cp.message;
      if (i >= 0 && i < kCalls) {
        CallRec &c = calls[i];
        EXPECT_EQ(cp.call_id, c.id);
        EXPECT_EQ(++c.completions, 1) << "call " << i << " completed twice";
        if (cp.status == RPC_STATUS_OK) {
          EXPECT_NE(c.kind, 1) << "a Fail call succeeded";
          auto *r = reinterpret_cast<Test__V1__EchoReply *>(cp.reply);
          EXPECT_EQ(std::string(r->text), "echo:" + c.text);
          EXPECT_EQ(std::string(reinterpret_cast<char *>(r->payload.data), r->payload.len),
                    c.payload)
              << "a reply's payload is not the request's";
        }
      }
      if (cp.reply != nullptr) protobuf_c_message_free_unpacked(cp.reply, nullptr);
    }
  };
  EXPECT_EQ(rpc_server_listen_error(srv), 0)
      << "a listener broke: " << gaio_strerror(rpc_server_listen_error(srv));
  if (server_first) {
    EXPECT_EQ(rpc_server_shutdown(srv, 20), 0);
  }
  uint64_t t0 = gaio_now();
  while (completed < accepted && gaio_now() - t0 < kBoundMs * 1000000u) collect(50);
  EXPECT_EQ(completed, accepted) << "calls that never ended (" << refused << " refused at submit)";
  blocker.join();
  EXPECT_EQ(blocking_bad.load(), 0) << "blocking calls with a bad outcome";

  // Clean shutdown: the channel first (it completes what is left CANCELLED), then the server.
  EXPECT_EQ(rpc_channel_destroy(ch), 0);
  collect(0);
  EXPECT_EQ(completed, accepted);
  for (int i = 0; i < kStubCalls; i++) EXPECT_EQ(stubs.closures[i].load(), 1) << "stub call " << i;
  EXPECT_EQ(stubs.bad_status.load(), 0);
  EXPECT_EQ(rpc_server_shutdown(srv, 100), 0);
  rpc_server_destroy(srv);
  g_replier = nullptr;
  rpc_cq_destroy(cq);
  g_stubs = nullptr;
}

TEST_P(FaultInvariants, RpcCallsEndExactlyOnce) { RpcCalls(false); }

TEST_P(FaultInvariants, RpcCallsEndExactlyOnceOverTls) { RpcCalls(true); }

INSTANTIATE_TEST_SUITE_P(Backends, FaultInvariants, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

}  // namespace
