// The example echo/calculator service (examples/rpc_calc_service.c) hosted on an rpc_server on
// 127.0.0.1:0: Sleep waits on one timer thread per service, up to a named number of pending
// calls, ends early when cancelled, and leaves no call unanswered when stopped.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "examples/rpc_calc.pb-c.h"
#include "examples/rpc_calc_service.h"
#include "gtest/gtest.h"
#include "rpc/health.pb-c.h"
#include "rpc/rpc.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Watchdog;
using Clock = std::chrono::steady_clock;

// Above SLEEP_MAX_PENDING + 1, so that the server's own per-connection limit (1024 by default)
// is not what refuses the calls of these tests.
constexpr unsigned kMaxCallsPerConn = 8192;

// Threads of this process: the entries of /proc/self/task.
int CountThreads() {
  DIR *d = opendir("/proc/self/task");
  if (!d) {
    ADD_FAILURE() << "opendir /proc/self/task";
    return -1;
  }
  int n = 0;
  while (struct dirent *e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

long MsSince(Clock::time_point t0) {
  return long(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

struct Done {
  int status;
  std::string message;
  std::string text;  // the reply's text, status OK only
};

class ExampleCalc : public ::testing::Test {
 protected:
  void Start(unsigned max_pending) {
    ASSERT_EQ(0, calc_service_create(&cs_, max_pending));
    rpc_server_options o = {};
    o.max_calls_per_conn = kMaxCallsPerConn;
    ASSERT_EQ(0, rpc_server_create(&srv_, &o));
    ASSERT_EQ(0, calc_service_add(cs_, srv_));
    ASSERT_EQ(0, rpc_server_enable_health(srv_));  // as the example servers do (rpc_serve.c)
    ASSERT_EQ(0, rpc_server_listen(srv_, "127.0.0.1:0"));
    ASSERT_EQ(0, rpc_server_start(srv_));
    std::string target = "127.0.0.1:" + std::to_string(rpc_server_port(srv_));
    ASSERT_EQ(0, rpc_channel_create(&ch_, target.c_str(), nullptr));
    ASSERT_EQ(0, rpc_cq_create(&cq_));
    ASSERT_EQ(0, rpc_method_find(&sleep_, &demo__v1__echo__descriptor, "Sleep"));
    ASSERT_EQ(0, rpc_method_find(&say_, &demo__v1__echo__descriptor, "Say"));
    std::string text;
    ASSERT_EQ(RPC_STATUS_OK, Call(&say_, 0, 5000, &text));  // connected before any test step
    ASSERT_EQ("echo: hi", text);
  }

  // The channel first (its calls complete CANCELLED), then the server (its shutdown waits for
  // the pending sleeps, which the timer thread completes once they are marked cancelled), then
  // the service.
  void TearDown() override {
    rpc_channel_destroy(ch_);
    rpc_cq_destroy(cq_);
    rpc_server_destroy(srv_);
    calc_service_destroy(cs_);
  }

  // A blocking Say (text "hi") or Sleep; returns the status, fills *out with the reply's text
  // or the error message.
  int Call(const rpc_method *m, int delay_ms, int timeout_ms, std::string *out) {
    Demo__V1__EchoRequest req = DEMO__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>("hi");
    req.delay_ms = delay_ms;
    ProtobufCMessage *reply = nullptr;
    char msg[256] = "";
    int st = rpc_channel_call(ch_, m, &req.base, timeout_ms, &reply, msg, sizeof msg);
    *out = msg;
    if (reply) {
      *out = reinterpret_cast<Demo__V1__EchoReply *>(reply)->text;
      protobuf_c_message_free_unpacked(reply, nullptr);
    }
    return st;
  }

  // Submit n async Sleep calls; their ids go to *ids when not null.
  void SubmitSleeps(int n, int delay_ms, int timeout_ms, std::vector<uint64_t> *ids = nullptr) {
    Demo__V1__EchoRequest req = DEMO__V1__ECHO_REQUEST__INIT;
    req.delay_ms = delay_ms;
    for (int i = 0; i < n; i++) {
      uint64_t id = 0;
      ASSERT_EQ(0, rpc_channel_submit(ch_, &sleep_, &req.base, timeout_ms, cq_, nullptr, &id));
      if (ids) ids->push_back(id);
    }
  }

  // Collect up to n completions within ms; each batch, on_batch() runs (to sample state).
  std::vector<Done> Collect(size_t n, int ms, const std::function<void()> &on_batch = nullptr) {
    std::vector<Done> all;
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    rpc_completion batch[64];
    while (all.size() < n && Clock::now() < until) {
      int k = rpc_cq_wait(cq_, batch, int(std::min<size_t>(64, n - all.size())), 10);
      EXPECT_GE(k, 0);
      for (int i = 0; i < k; i++) {
        Done d{batch[i].status, batch[i].message, ""};
        if (batch[i].reply) {
          d.text = reinterpret_cast<Demo__V1__EchoReply *>(batch[i].reply)->text;
          protobuf_c_message_free_unpacked(batch[i].reply, nullptr);
        }
        all.push_back(d);
      }
      if (on_batch) on_batch();
    }
    return all;
  }

  // Wait (polling, bounded) until exactly n sleeps are pending in the service.
  bool WaitPending(size_t n, int ms) {
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (calc_service_pending(cs_) != n) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  calc_service *cs_ = nullptr;
  rpc_server *srv_ = nullptr;
  rpc_channel *ch_ = nullptr;
  rpc_cq *cq_ = nullptr;
  rpc_method sleep_{}, say_{};
};

TEST_F(ExampleCalc, SayAddDivideAnswerAtOnce) {
  Watchdog wd("SayAddDivideAnswerAtOnce", 20000);
  Start(0);
  rpc_method add, div;
  ASSERT_EQ(0, rpc_method_find(&add, &demo__v1__calculator__descriptor, "Add"));
  ASSERT_EQ(0, rpc_method_find(&div, &demo__v1__calculator__descriptor, "Divide"));
  Demo__V1__CalcRequest req = DEMO__V1__CALC_REQUEST__INIT;
  req.a = 40;
  req.b = 2;
  ProtobufCMessage *reply = nullptr;
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call(ch_, &add, &req.base, 5000, &reply, nullptr, 0));
  EXPECT_EQ(42, reinterpret_cast<Demo__V1__CalcReply *>(reply)->result);
  protobuf_c_message_free_unpacked(reply, nullptr);
  req.b = 0;
  char msg[64];
  EXPECT_EQ(RPC_STATUS_INVALID_ARGUMENT,
            rpc_channel_call(ch_, &div, &req.base, 5000, &reply, msg, sizeof msg));
  EXPECT_STREQ("division by zero", msg);
  req.a = INT64_MAX;
  req.b = 1;
  EXPECT_EQ(RPC_STATUS_OUT_OF_RANGE,
            rpc_channel_call(ch_, &add, &req.base, 5000, &reply, msg, sizeof msg));
}

// The regression test of the thread-per-call Sleep: 2000 concurrent sleeps made ~2000 threads,
// whose 5 ms wakeups starved the server's workers. Now they wait on the service's one timer
// thread, created with the service, so the thread count does not move while they are pending.
TEST_F(ExampleCalc, TwoThousandSleepsAddNoThread) {
  Watchdog wd("TwoThousandSleepsAddNoThread", 60000);
  Start(0);
  const int kCalls = 2000, kDelayMs = 200;
  const int baseline = CountThreads();
  auto t0 = Clock::now();
  SubmitSleeps(kCalls, kDelayMs, 30000);
  int peak_threads = CountThreads();
  size_t peak_pending = calc_service_pending(cs_);
  auto done = Collect(kCalls, 30000, [&] {
    peak_threads = std::max(peak_threads, CountThreads());
    peak_pending = std::max(peak_pending, calc_service_pending(cs_));
  });
  long ms = MsSince(t0);
  ASSERT_EQ(size_t(kCalls), done.size());
  int ok = 0;
  for (auto &d : done) ok += d.status == RPC_STATUS_OK && d.text == "woke up";
  EXPECT_EQ(kCalls, ok);
  printf("baseline %d threads, peak %d; peak %zu sleeps pending; all done in %ld ms\n", baseline,
         peak_threads, peak_pending, ms);
  EXPECT_LT(peak_threads, baseline + 4);
  EXPECT_GE(ms, kDelayMs);
  EXPECT_LT(ms, 20000);  // concurrent: one after the other would take 400 s
  EXPECT_TRUE(WaitPending(0, 1000));
}

// The service takes its limit as a parameter: with 8, the 9th concurrent sleep is refused at
// once, and it says why.
TEST_F(ExampleCalc, SleepBeyondTheLimitIsResourceExhausted) {
  Watchdog wd("SleepBeyondTheLimit", 30000);
  Start(8);
  std::vector<uint64_t> ids;
  SubmitSleeps(8, 60000, 60000, &ids);
  ASSERT_TRUE(WaitPending(8, 10000));
  std::string msg;
  auto t0 = Clock::now();
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, Call(&sleep_, 1, 5000, &msg));
  EXPECT_EQ("too many Sleep calls pending (limit 8)", msg);
  EXPECT_LT(MsSince(t0), 2000);
  EXPECT_EQ(RPC_STATUS_OK, Call(&say_, 0, 5000, &msg));  // other methods are not limited
  EXPECT_EQ(8u, calc_service_pending(cs_));
  for (uint64_t id : ids) ASSERT_EQ(0, rpc_channel_cancel(ch_, id));
  auto done = Collect(8, 5000);
  ASSERT_EQ(8u, done.size());
  for (auto &d : done) EXPECT_EQ(RPC_STATUS_CANCELLED, d.status);
  EXPECT_TRUE(WaitPending(0, 2000));  // the service saw the CANCELs; a slot is free again
  EXPECT_EQ(RPC_STATUS_OK, Call(&sleep_, 1, 5000, &msg));
  EXPECT_EQ("woke up", msg);
}

// The default limit is the named one: SLEEP_MAX_PENDING sleeps wait, the next is refused.
TEST_F(ExampleCalc, DefaultLimitIsSleepMaxPending) {
  Watchdog wd("DefaultLimitIsSleepMaxPending", 120000);
  Start(0);
  SubmitSleeps(int(SLEEP_MAX_PENDING), 60000, 60000);
  ASSERT_TRUE(WaitPending(SLEEP_MAX_PENDING, 60000));
  std::string msg;
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, Call(&sleep_, 1, 5000, &msg));
  EXPECT_EQ("too many Sleep calls pending (limit " + std::to_string(SLEEP_MAX_PENDING) + ")", msg);
  // TearDown answers the 4096: the channel completes them CANCELLED, the server's shutdown
  // waits until the timer thread has completed every one of them.
}

TEST_F(ExampleCalc, DeadlineEndsSleepEarly) {
  Watchdog wd("DeadlineEndsSleepEarly", 30000);
  Start(0);
  std::string msg;
  auto t0 = Clock::now();
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, Call(&sleep_, 5000, 100, &msg));
  long ms = MsSince(t0);
  EXPECT_GE(ms, 90);
  EXPECT_LT(ms, 2000);
  // The server marked the call cancelled at its deadline; the service completes it at its next
  // sweep (SLEEP_SWEEP_MS), not after the 5 s.
  EXPECT_TRUE(WaitPending(0, 2000));
  EXPECT_LT(MsSince(t0), 3000);
}

TEST_F(ExampleCalc, CancelEndsSleepEarly) {
  Watchdog wd("CancelEndsSleepEarly", 30000);
  Start(0);
  std::vector<uint64_t> ids;
  auto t0 = Clock::now();
  SubmitSleeps(1, 5000, 10000, &ids);
  ASSERT_TRUE(WaitPending(1, 5000));
  ASSERT_EQ(0, rpc_channel_cancel(ch_, ids[0]));
  auto done = Collect(1, 5000);
  ASSERT_EQ(1u, done.size());
  EXPECT_EQ(RPC_STATUS_CANCELLED, done[0].status);
  EXPECT_TRUE(WaitPending(0, 2000));  // the server got the CANCEL; the sweep ended the sleep
  EXPECT_LT(MsSince(t0), 4000);
}

// The server's shutdown waits for handlers that hold calls; the pending sleeps must not make it
// wait for their delay: once the server marks them cancelled, the next sweep completes them.
TEST_F(ExampleCalc, ServerShutdownAnswersPendingSleeps) {
  Watchdog wd("ServerShutdownAnswersPendingSleeps", 30000);
  Start(0);
  const int kCalls = 100;
  SubmitSleeps(kCalls, 60000, 60000);
  ASSERT_TRUE(WaitPending(kCalls, 10000));
  auto t0 = Clock::now();
  ASSERT_EQ(0, rpc_server_shutdown(srv_, 0));
  EXPECT_LT(MsSince(t0), 5000);
  EXPECT_EQ(0u, calc_service_pending(cs_));
  auto done = Collect(kCalls, 10000);
  ASSERT_EQ(size_t(kCalls), done.size());
  for (auto &d : done) EXPECT_EQ(RPC_STATUS_UNAVAILABLE, d.status) << d.message;
}

// calc_service_stop() answers every pending sleep UNAVAILABLE at once, joins the timer thread,
// and refuses later sleeps the same way; the other methods keep working.
TEST_F(ExampleCalc, StopAnswersPendingSleepsUnavailable) {
  Watchdog wd("StopAnswersPendingSleeps", 30000);
  Start(0);
  const int kCalls = 50;
  SubmitSleeps(kCalls, 60000, 60000);
  ASSERT_TRUE(WaitPending(kCalls, 10000));
  auto t0 = Clock::now();
  calc_service_stop(cs_);
  auto done = Collect(kCalls, 10000);
  EXPECT_LT(MsSince(t0), 5000);
  ASSERT_EQ(size_t(kCalls), done.size());
  for (auto &d : done) {
    EXPECT_EQ(RPC_STATUS_UNAVAILABLE, d.status);
    EXPECT_EQ("service stopping", d.message);
  }
  std::string msg;
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, Call(&sleep_, 1, 5000, &msg));
  EXPECT_EQ("service stopping", msg);
  EXPECT_EQ(RPC_STATUS_OK, Call(&say_, 0, 5000, &msg));
  calc_service_stop(cs_);  // idempotent
}

// rpc.h and health.proto: Check of a hosted service answers SERVING; of a service the server
// does not host it fails NOT_FOUND "unknown service" with no response (as gRPC's Check does),
// never SERVICE_UNKNOWN, which is left to a streaming Watch. (rpc_test's HealthCheck asserts
// the status only.)
TEST_F(ExampleCalc, HealthCheckOfAnUnknownServiceIsNotFound) {
  Watchdog wd("HealthCheckOfAnUnknownServiceIsNotFound", 20000);
  Start(0);
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &gaio__health__v1__health__descriptor, "Check"));
  Gaio__Health__V1__HealthCheckRequest req = GAIO__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = const_cast<char *>("demo.v1.Echo");
  ProtobufCMessage *reply = nullptr;
  char msg[64] = "";
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call(ch_, &m, &req.base, 5000, &reply, msg, sizeof msg));
  EXPECT_EQ(GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
            reinterpret_cast<Gaio__Health__V1__HealthCheckResponse *>(reply)->status);
  protobuf_c_message_free_unpacked(reply, nullptr);
  req.service = const_cast<char *>("demo.v1.NoSuchService");
  EXPECT_EQ(RPC_STATUS_NOT_FOUND,
            rpc_channel_call(ch_, &m, &req.base, 5000, &reply, msg, sizeof msg));
  EXPECT_STREQ("unknown service", msg);
  EXPECT_EQ(nullptr, reply);
}

TEST(ExampleCalcService, CreateRejectsALimitAboveSleepMaxPending) {
  calc_service *cs = reinterpret_cast<calc_service *>(1);
  EXPECT_EQ(-EINVAL, calc_service_create(&cs, SLEEP_MAX_PENDING + 1));
  EXPECT_EQ(nullptr, cs);
  calc_service_destroy(nullptr);
}

}  // namespace
