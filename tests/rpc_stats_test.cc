// Issue 13: the histogram shape, server and channel counters, the admin service, log lines,
// rpc_strerror and the error texts that name what failed, and gaio's loop metrics.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gaio/gaio.h"
#include "rpc/admin.pb-c.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/rpc_wire_util.h"
#include "tests/test_util.h"

namespace {

using rpc_test::Got;
using rpc_test::RawConn;
using rpc_test::RawFrame;

// ---- The histogram ---------------------------------------------------------------------------

TEST(Histogram, BoundsAreLinearToEightThenFourPerPowerOfTwo) {
  const uint64_t want[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40};
  for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++)
    EXPECT_EQ(want[i], rpc_histogram_bound(i)) << i;
  EXPECT_EQ(104u, RPC_HIST_BOUNDS);
  EXPECT_EQ(105u, RPC_HIST_BUCKETS);
  EXPECT_EQ(112u * 1024 * 1024, rpc_histogram_bound(102));  // 7/8 of 2^27
  EXPECT_EQ(uint64_t(1) << 27, rpc_histogram_bound(103));   // 134.2 s
  EXPECT_EQ(UINT64_MAX, rpc_histogram_bound(104));
  for (unsigned i = 1; i < RPC_HIST_BOUNDS; i++)
    EXPECT_LT(rpc_histogram_bound(i - 1), rpc_histogram_bound(i)) << i;
}

TEST(Histogram, ABoundBelongsToItsBucketAndOneMoreToTheNext) {
  EXPECT_EQ(0u, rpc_histogram_index(0));
  EXPECT_EQ(0u, rpc_histogram_index(1));
  EXPECT_EQ(1u, rpc_histogram_index(2));
  EXPECT_EQ(7u, rpc_histogram_index(8));
  EXPECT_EQ(8u, rpc_histogram_index(9));
  EXPECT_EQ(8u, rpc_histogram_index(10));
  EXPECT_EQ(9u, rpc_histogram_index(11));
  EXPECT_EQ(11u, rpc_histogram_index(16));
  EXPECT_EQ(12u, rpc_histogram_index(17));
  EXPECT_EQ(103u, rpc_histogram_index(uint64_t(1) << 27));
  EXPECT_EQ(104u, rpc_histogram_index((uint64_t(1) << 27) + 1));
  EXPECT_EQ(104u, rpc_histogram_index(UINT64_MAX));
  for (unsigned i = 0; i < RPC_HIST_BOUNDS; i++) {
    EXPECT_EQ(i, rpc_histogram_index(rpc_histogram_bound(i))) << i;
    EXPECT_EQ(i + 1, rpc_histogram_index(rpc_histogram_bound(i) + 1)) << i;
  }
}

TEST(Histogram, PercentilesAreTheBoundOfTheBucketCappedAtTheMax) {
  rpc_histogram h = {};
  EXPECT_EQ(0u, rpc_histogram_percentile(&h, 0.5));
  for (uint64_t v = 1; v <= 100; v++) rpc_histogram_record(&h, v);
  EXPECT_EQ(100u, h.count);
  EXPECT_EQ(5050u, h.sum_us);
  EXPECT_EQ(100u, h.max_us);
  EXPECT_EQ(56u, rpc_histogram_percentile(&h, 0.5));   // the 50th value, 50, is in (48, 56]
  EXPECT_EQ(96u, rpc_histogram_percentile(&h, 0.9));   // 90 in (80, 96]
  EXPECT_EQ(100u, rpc_histogram_percentile(&h, 0.99)); // 99 in (96, 112], capped at max 100
  EXPECT_EQ(100u, rpc_histogram_percentile(&h, 1.0));
  EXPECT_EQ(1u, rpc_histogram_percentile(&h, 0.01));   // the 1st value, 1
  EXPECT_EQ(8u, h.counts[rpc_histogram_index(56)]);    // 49..56
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  rpc_histogram a = {}, b = {}, all = {};
  for (uint64_t v = 0; v < 5000; v += 7) {
    rpc_histogram_record(v % 2 ? &a : &b, v * v);
    rpc_histogram_record(&all, v * v);
  }
  rpc_histogram_record(&b, uint64_t(1) << 40);  // above the last bound
  rpc_histogram_record(&all, uint64_t(1) << 40);
  rpc_histogram_merge(&a, &b);
  EXPECT_EQ(0, memcmp(&a, &all, sizeof a));
  EXPECT_EQ(1u, all.counts[RPC_HIST_BOUNDS]);
  EXPECT_EQ(uint64_t(1) << 40, rpc_histogram_percentile(&all, 1.0));
}

// ---- A test service ----------------------------------------------------------------------------

std::atomic<rpc_call *> g_held{nullptr};

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = in->text;
  closure(&out, data);
}

void h_slow(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  h_say(s, in, closure, data);
}

// Held until Release(): a call in flight for as long as a test wants.
void h_hold(Test__V1__Echo_Service *, const Test__V1__EchoRequest *,
            Test__V1__EchoReply_Closure, void *data) {
  g_held.store(rpc_server_call(data));
}

void Release() {
  rpc_call *c = g_held.exchange(nullptr);
  if (c) {
    Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
    rpc_call_reply(c, &out.base);
  }
}

void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

// Log lines, from any thread.
class LogSink {
 public:
  static void Fn(void *arg, int level, const char *line) {
    auto *self = static_cast<LogSink *>(arg);
    std::lock_guard<std::mutex> g(self->mu_);
    self->lines_.push_back(std::string(rpc_log_level_name(level)) + " " + line);
  }
  // Whether a line containing text arrives within ms.
  bool WaitFor(const std::string &text, int ms = 5000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    do {
      if (Count(text) > 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } while (std::chrono::steady_clock::now() < end);
    return false;
  }
  int Count(const std::string &text) {
    std::lock_guard<std::mutex> g(mu_);
    int n = 0;
    for (const auto &l : lines_) n += l.find(text) != std::string::npos;
    return n;
  }
  std::string All() {
    std::lock_guard<std::mutex> g(mu_);
    std::string s;
    for (const auto &l : lines_) s += l + "\n";
    return s;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> lines_;
};

std::string Target(int port) { return "127.0.0.1:" + std::to_string(port); }

// The local address of a connected socket, as the server names its peer.
std::string LocalAddr(int fd) {
  sockaddr_in a = {};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a.sin_port));
}

uint32_t Id(const char *name) { return rpc_method_id(name, strlen(name)); }

RawFrame Say(uint32_t id, const std::string &text) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text.c_str());
  std::string body(protobuf_c_message_get_packed_size(&req.base), '\0');
  protobuf_c_message_pack(&req.base, reinterpret_cast<uint8_t *>(&body[0]));
  RawFrame f;
  f.id = id;
  f.method = Id("test.v1.Echo/Say");
  f.body = body;
  return f;
}

// Polls the server's counters until pred holds (or 5 s pass); returns the last snapshot.
template <typename Pred>
rpc_server_stats WaitStats(rpc_server *s, Pred pred) {
  rpc_server_stats st;
  for (int i = 0; i < 1000; i++) {
    EXPECT_EQ(0, rpc_server_get_stats(s, &st));
    if (pred(st)) return st;
    rpc_server_stats_free(&st);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(0, rpc_server_get_stats(s, &st));
  ADD_FAILURE() << "the counters never got there";
  return st;
}

const rpc_method_stats *Method(const rpc_server_stats &st, const char *name) {
  for (size_t i = 0; i < st.nmethods; i++)
    if (strcmp(st.methods[i].method, name) == 0) return &st.methods[i];
  return nullptr;
}

class RpcStatsTest : public ::testing::Test {
 protected:
  void Start(rpc_server_options o, bool admin = false) {
    o.log = LogSink::Fn;
    o.log_arg = &log_;
    o.log_level = RPC_LOG_DEBUG;
    ASSERT_EQ(0, rpc_server_create(&srv_, &o));
    ASSERT_EQ(0, rpc_server_add_service(srv_, &g_service.base));
    if (admin) {
      ASSERT_EQ(0, rpc_server_enable_admin(srv_));
    }
    ASSERT_EQ(0, rpc_server_listen(srv_, "127.0.0.1:0"));
    ASSERT_EQ(0, rpc_server_start(srv_));
    port_ = rpc_server_port(srv_);
  }
  void Connect() {
    rpc_channel_options co = {};
    ASSERT_EQ(0, rpc_channel_create(&ch_, Target(port_).c_str(), &co));
  }
  void TearDown() override {
    Release();
    rpc_channel_destroy(ch_);
    rpc_server_destroy(srv_);
  }
  // A call of test.v1.Echo/<name>; returns its status.
  int Call(const char *name, int code = 0, const char *text = "hi") {
    std::string full = std::string("test.v1.Echo/") + name;
    rpc_method m;
    rpc_method_init(&m, full.c_str(), &test__v1__echo_request__descriptor,
                    &test__v1__echo_reply__descriptor);
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>(text);
    req.code = code;
    ProtobufCMessage *reply = nullptr;
    char msg[RPC_MAX_ERROR_MESSAGE + 1];
    int st = rpc_channel_call(ch_, &m, &req.base, 5000, &reply, msg, sizeof msg);
    last_msg_ = msg;
    if (reply) protobuf_c_message_free_unpacked(reply, nullptr);
    return st;
  }

  LogSink log_;
  rpc_server *srv_ = nullptr;
  rpc_channel *ch_ = nullptr;
  int port_ = 0;
  std::string last_msg_;
};

// ---- Server counters and the admin service ---------------------------------------------------

TEST_F(RpcStatsTest, AdminGetStatsCountsCallsByMethodAndStatus) {
  gaio_test::Watchdog wd("AdminGetStats", 20000);
  rpc_server_options o = {};
  o.workers = 2;
  Start(o, true);
  Connect();
  for (int i = 0; i < 3; i++) ASSERT_EQ(RPC_STATUS_OK, Call("Say"));
  ASSERT_EQ(RPC_STATUS_NOT_FOUND, Call("Fail", RPC_STATUS_NOT_FOUND));
  ASSERT_EQ(RPC_STATUS_NOT_FOUND, Call("Fail", RPC_STATUS_NOT_FOUND));
  ASSERT_EQ(RPC_STATUS_PERMISSION_DENIED, Call("Fail", RPC_STATUS_PERMISSION_DENIED));
  ASSERT_EQ(RPC_STATUS_UNIMPLEMENTED, Call("Nope"));
  char want[64];
  snprintf(want, sizeof want, "unknown method id 0x%08x", Id("test.v1.Echo/Nope"));
  EXPECT_EQ(want, last_msg_);

  rpc_method get;
  ASSERT_EQ(0, rpc_method_find(&get, &gaio__admin__v1__admin__descriptor, "GetStats"));
  EXPECT_EQ(Id("gaio.admin.v1.Admin/GetStats"), get.id);
  Gaio__Admin__V1__StatsRequest req = GAIO__ADMIN__V1__STATS_REQUEST__INIT;
  ProtobufCMessage *reply = nullptr;
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call(ch_, &get, &req.base, 5000, &reply, nullptr, 0));
  auto *st = reinterpret_cast<Gaio__Admin__V1__ServerStats *>(reply);
  const char *env = getenv("GAIO_BACKEND");
  if (env && *env) EXPECT_STREQ(env, st->backend);  // rpc_stats_test_epoll
  else EXPECT_TRUE(std::string(st->backend) == "uring" || std::string(st->backend) == "epoll");
  EXPECT_EQ(2u, st->workers);
  EXPECT_EQ(1u, st->connections_accepted);
  EXPECT_EQ(1u, st->connections_open);
  EXPECT_EQ(1u, st->calls_unimplemented);
  EXPECT_EQ(0u, st->calls_refused);
  EXPECT_EQ(0u, st->goaways_sent);
  ASSERT_EQ(5u, st->n_connections_closed);
  EXPECT_STREQ("peer", st->connections_closed[0]->name);
  EXPECT_STREQ("error", st->connections_closed[4]->name);
  for (size_t i = 0; i < st->n_connections_closed; i++) EXPECT_EQ(0u, st->connections_closed[i]->value);
  ASSERT_EQ(5u, st->n_protocol_errors);
  EXPECT_STREQ("bad_magic", st->protocol_errors[0]->name);
  ASSERT_EQ(1u, st->n_listeners);
  EXPECT_EQ(Target(port_), st->listeners[0]->address);
  EXPECT_EQ(1u, st->listeners[0]->accepted);
  ASSERT_NE(nullptr, st->loop);
  EXPECT_GT(st->loop->polls, 0u);
  EXPECT_GT(st->loop->reads, 0u);
  EXPECT_GT(st->loop->read_bytes, 0u);
  EXPECT_GT(st->loop->completions, 0u);
  // Every hosted method, in registration order: Echo's four, then the admin's.
  ASSERT_EQ(5u, st->n_methods);
  const char *names[] = {"test.v1.Echo/Say", "test.v1.Echo/Slow", "test.v1.Echo/Hold",
                         "test.v1.Echo/Fail", "gaio.admin.v1.Admin/GetStats"};
  for (size_t i = 0; i < 5; i++) EXPECT_STREQ(names[i], st->methods[i]->method);
  const auto *say = st->methods[0];
  EXPECT_EQ(3u, say->started);
  EXPECT_EQ(0u, say->in_flight);
  ASSERT_EQ(1u, say->n_completed);
  EXPECT_EQ(0u, say->completed[0]->code);
  EXPECT_STREQ("OK", say->completed[0]->name);
  EXPECT_EQ(3u, say->completed[0]->count);
  EXPECT_EQ(3u * 4, say->request_bytes);   // "hi": field tag, length, 2 bytes
  EXPECT_EQ(3u * 4, say->response_bytes);  // echoed
  ASSERT_NE(nullptr, say->latency);
  EXPECT_EQ(3u, say->latency->count);
  EXPECT_EQ(RPC_HIST_BOUNDS, say->latency->n_bounds_us);
  EXPECT_EQ(RPC_HIST_BUCKETS, say->latency->n_counts);
  EXPECT_EQ(1u, say->latency->bounds_us[0]);
  EXPECT_EQ(uint64_t(1) << 27, say->latency->bounds_us[RPC_HIST_BOUNDS - 1]);
  uint64_t sum = 0;
  for (size_t i = 0; i < say->latency->n_counts; i++) sum += say->latency->counts[i];
  EXPECT_EQ(3u, sum);
  const auto *fail = st->methods[3];
  EXPECT_EQ(3u, fail->started);
  ASSERT_EQ(2u, fail->n_completed);
  EXPECT_EQ(unsigned(RPC_STATUS_NOT_FOUND), fail->completed[0]->code);
  EXPECT_EQ(2u, fail->completed[0]->count);
  EXPECT_EQ(unsigned(RPC_STATUS_PERMISSION_DENIED), fail->completed[1]->code);
  EXPECT_STREQ("PERMISSION_DENIED", fail->completed[1]->name);
  EXPECT_EQ(1u, fail->completed[1]->count);
  EXPECT_EQ(0u, st->methods[1]->started);
  EXPECT_EQ(0u, st->methods[1]->n_completed);
  const auto *self = st->methods[4];  // this very call: started, not yet finished
  EXPECT_EQ(1u, self->started);
  EXPECT_EQ(1u, self->in_flight);
  EXPECT_EQ(0u, self->n_completed);
  protobuf_c_message_free_unpacked(reply, nullptr);
  EXPECT_EQ(-EEXIST, rpc_server_enable_admin(srv_));
}

TEST_F(RpcStatsTest, StatsOffLeavesMethodCountersAtZeroButCountsConnections) {
  gaio_test::Watchdog wd("StatsOff", 20000);
  rpc_server_options o = {};
  o.stats = -1;
  Start(o);
  Connect();
  ASSERT_EQ(RPC_STATUS_OK, Call("Say"));
  ASSERT_EQ(RPC_STATUS_UNIMPLEMENTED, Call("Nope"));
  rpc_server_stats st;
  ASSERT_EQ(0, rpc_server_get_stats(srv_, &st));
  const rpc_method_stats *say = Method(st, "test.v1.Echo/Say");
  ASSERT_NE(nullptr, say);
  EXPECT_EQ(0u, say->started);
  EXPECT_EQ(0u, say->completed[RPC_STATUS_OK]);
  EXPECT_EQ(0u, say->latency.count);
  EXPECT_EQ(1u, st.connections_accepted);
  EXPECT_EQ(1u, st.connections_open);
  EXPECT_EQ(1u, st.calls_unimplemented);
  rpc_server_stats_free(&st);
  rpc_server_options bad = {};
  bad.stats = 1;
  rpc_server *s = nullptr;
  EXPECT_EQ(-EINVAL, rpc_server_create(&s, &bad));
}

// 1000 requests in one write: one worker batch finishes more calls than its latency array holds
// (LAT_BATCH, 256 in rpc/server.c), so it is flushed mid-batch: every call is still counted once.
TEST_F(RpcStatsTest, ALatencyIsRecordedForEveryCallOfABigBatch) {
  gaio_test::Watchdog wd("BigBatchLatency", 20000);
  Start(rpc_server_options{});
  RawConn c(port_);
  std::string burst;
  for (uint32_t id = 1; id <= 1000; id++) burst += Say(id, "x").Bytes();
  c.Send(burst);
  for (int i = 0; i < 1000; i++) {
    Got g = c.Next();
    ASSERT_TRUE(g.ok) << i;
    ASSERT_EQ(RPC_TYPE_RESPONSE, g.type);
  }
  rpc_server_stats st = WaitStats(srv_, [](const rpc_server_stats &s) {
    const rpc_method_stats *say = Method(s, "test.v1.Echo/Say");
    return say && say->latency.count == 1000;
  });
  const rpc_method_stats *say = Method(st, "test.v1.Echo/Say");
  ASSERT_NE(nullptr, say);
  EXPECT_EQ(1000u, say->completed[RPC_STATUS_OK]);
  EXPECT_EQ(1000u, say->latency.count);
  rpc_server_stats_free(&st);
}

// ---- Log lines and the counters of what they report -----------------------------------------

TEST_F(RpcStatsTest, BadMagicIsLoggedWithThePeerAndCountedByKind) {
  gaio_test::Watchdog wd("BadMagicLog", 20000);
  rpc_server_options o = {};
  o.close_linger_ms = 100;  // the raw client does not close: the server gives up after 100 ms
  Start(o);
  RawConn c(port_);
  std::string peer = LocalAddr(c.fd());
  c.Send(std::string(24, 'x'));
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_TYPE_GOAWAY, g.type);
  EXPECT_TRUE(log_.WaitFor("WARN peer " + peer + ": protocol error (bad_magic); closing the connection"))
      << log_.All();
  EXPECT_TRUE(c.Next().eof);
  EXPECT_TRUE(log_.WaitFor("INFO peer " + peer + ": connection closed (protocol_error)")) << log_.All();
  rpc_server_stats st = WaitStats(srv_, [](const rpc_server_stats &s) {
    return s.connections_closed[RPC_CLOSE_PROTOCOL] == 1;
  });
  EXPECT_EQ(1u, st.protocol_errors[RPC_PERR_BAD_MAGIC]);
  EXPECT_EQ(0u, st.protocol_errors[RPC_PERR_BAD_VERSION]);
  EXPECT_EQ(1u, st.goaways_sent);
  EXPECT_EQ(0u, st.connections_open);
  EXPECT_EQ(1, log_.Count(": protocol error ("));
  EXPECT_EQ(1, log_.Count(": connection closed ("));
  EXPECT_EQ(1, log_.Count("DEBUG peer " + peer + ": connection accepted"));
  rpc_server_stats_free(&st);
}

TEST_F(RpcStatsTest, ResponseFromAClientIsABadTypeProtocolError) {
  gaio_test::Watchdog wd("BadTypeLog", 20000);
  Start(rpc_server_options{});
  RawConn c(port_);
  std::string peer = LocalAddr(c.fd());
  RawFrame f;
  f.type = RPC_TYPE_RESPONSE;
  c.Send(f.Bytes());
  EXPECT_TRUE(log_.WaitFor("WARN peer " + peer + ": protocol error (bad_type)")) << log_.All();
  rpc_server_stats st = WaitStats(srv_, [](const rpc_server_stats &s) {
    return s.protocol_errors[RPC_PERR_BAD_TYPE] == 1;
  });
  rpc_server_stats_free(&st);
}

TEST_F(RpcStatsTest, IdleCloseIsLoggedAndCounted) {
  gaio_test::Watchdog wd("IdleLog", 20000);
  rpc_server_options o = {};
  o.idle_timeout_ms = 100;
  Start(o);
  RawConn c(port_);
  std::string peer = LocalAddr(c.fd());
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_TYPE_GOAWAY, g.type);
  EXPECT_EQ("idle timeout", g.body);
  EXPECT_TRUE(c.Next().eof);
  c.ShutWrite();
  EXPECT_TRUE(log_.WaitFor("INFO peer " + peer + ": connection closed (idle)")) << log_.All();
  rpc_server_stats st = WaitStats(srv_, [](const rpc_server_stats &s) {
    return s.connections_closed[RPC_CLOSE_IDLE] == 1;
  });
  EXPECT_EQ(1u, st.goaways_sent);
  EXPECT_EQ(1u, st.connections_accepted);
  EXPECT_EQ(0u, st.connections_open);
  rpc_server_stats_free(&st);
}

TEST_F(RpcStatsTest, RefusedAndUnimplementedCallsAreLoggedWithPeerMethodAndReason) {
  gaio_test::Watchdog wd("RefusedLog", 20000);
  rpc_server_options o = {};
  o.max_calls_per_conn = 1;
  o.workers = 1;
  Start(o);
  RawConn c(port_);
  std::string peer = LocalAddr(c.fd());
  RawFrame hold = Say(1, "h");
  hold.method = Id("test.v1.Echo/Hold");
  c.Send(hold.Bytes());
  for (int i = 0; i < 500 && !g_held.load(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_NE(nullptr, g_held.load());
  c.Send(Say(2, "x").Bytes());
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(2u, g.id);
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, g.status);
  EXPECT_TRUE(log_.WaitFor("INFO peer " + peer + ": call test.v1.Echo/Say refused: RESOURCE_EXHAUSTED "
                           "too many calls in flight on this connection"))
      << log_.All();
  RawFrame nope = Say(3, "n");
  nope.method = 0x1234abcd;
  c.Send(nope.Bytes());
  g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_STATUS_UNIMPLEMENTED, g.status);
  EXPECT_EQ("unknown method id 0x1234abcd", g.body);
  EXPECT_TRUE(log_.WaitFor("INFO peer " + peer +
                           ": call 0x1234abcd refused: UNIMPLEMENTED unknown method id 0x1234abcd"))
      << log_.All();
  rpc_server_stats st;
  ASSERT_EQ(0, rpc_server_get_stats(srv_, &st));
  EXPECT_EQ(1u, st.calls_refused);
  EXPECT_EQ(1u, st.calls_unimplemented);
  const rpc_method_stats *say = Method(st, "test.v1.Echo/Say");
  const rpc_method_stats *h = Method(st, "test.v1.Echo/Hold");
  EXPECT_EQ(0u, say->started);
  EXPECT_EQ(1u, say->completed[RPC_STATUS_RESOURCE_EXHAUSTED]);
  EXPECT_EQ(1u, h->started);
  EXPECT_EQ(1u, h->in_flight);
  rpc_server_stats_free(&st);
  Release();
  g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(1u, g.id);
  st = WaitStats(srv_, [](const rpc_server_stats &s) {
    const rpc_method_stats *m = Method(s, "test.v1.Echo/Hold");
    return m && m->completed[RPC_STATUS_OK] == 1;
  });
  h = Method(st, "test.v1.Echo/Hold");
  EXPECT_EQ(0u, h->in_flight);
  EXPECT_EQ(1u, h->latency.count);
  rpc_server_stats_free(&st);
}

// ---- The channel ---------------------------------------------------------------------------------

// A port nothing listens on: bound and closed again (the kernel refuses connections to it).
int DeadPort() {
  gaio_test::Listener l;
  return l.port();
}

TEST(RpcChannelStats, ConnectFailureNamesTheEndpointInTheCallLogAndStats) {
  gaio_test::Watchdog wd("ChannelRefused", 20000);
  int port = DeadPort();
  LogSink log;
  rpc_channel_options co = {};
  co.log = LogSink::Fn;
  co.log_arg = &log;
  co.backoff_initial_ms = 1000;
  rpc_channel *ch = nullptr;
  ASSERT_EQ(0, rpc_channel_create(&ch, Target(port).c_str(), &co));
  rpc_method m;
  rpc_method_init(&m, "test.v1.Echo/Say", &test__v1__echo_request__descriptor,
                  &test__v1__echo_reply__descriptor);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  ProtobufCMessage *reply = nullptr;
  char msg[RPC_MAX_ERROR_MESSAGE + 1];
  ASSERT_EQ(RPC_STATUS_UNAVAILABLE, rpc_channel_call(ch, &m, &req.base, 5000, &reply, msg, sizeof msg));
  // "127.0.0.1:P: connect: Connection refused; retrying in 0.8 s" (1 s +- 20% jitter)
  std::string prefix = Target(port) + ": connect: Connection refused; retrying in ";
  std::string text = msg;
  ASSERT_EQ(prefix, text.substr(0, prefix.size())) << text;
  ASSERT_EQ(" s", text.substr(text.size() - 2));
  double s = atof(text.substr(prefix.size()).c_str());
  EXPECT_GE(s, 0.8);
  EXPECT_LE(s, 1.2);
  EXPECT_TRUE(log.WaitFor("WARN " + text)) << log.All();
  rpc_channel_stats st;
  ASSERT_EQ(0, rpc_channel_get_stats(ch, &st));
  ASSERT_EQ(1u, st.nendpoints);
  EXPECT_EQ(Target(port), st.endpoints[0].address);
  EXPECT_EQ(RPC_ENDPOINT_BACKOFF, st.endpoints[0].state);
  EXPECT_STREQ("backoff", rpc_endpoint_state_name(st.endpoints[0].state));
  EXPECT_EQ(1u, st.endpoints[0].connect_failures);
  EXPECT_EQ(0u, st.endpoints[0].connects);
  EXPECT_EQ(text, st.endpoints[0].last_error);
  EXPECT_LE(st.endpoints[0].backoff_remaining_ms, 1200u);
  EXPECT_EQ(1u, st.unsent[RPC_STATUS_UNAVAILABLE]);
  rpc_channel_stats_free(&st);
  EXPECT_EQ(0, rpc_channel_destroy(ch));
}

TEST_F(RpcStatsTest, ChannelCountsCallsPerEndpointAndLogsReady) {
  gaio_test::Watchdog wd("ChannelStats", 20000);
  Start(rpc_server_options{});
  LogSink clog;
  rpc_channel_options co = {};
  co.log = LogSink::Fn;
  co.log_arg = &clog;
  ASSERT_EQ(0, rpc_channel_create(&ch_, Target(port_).c_str(), &co));
  ASSERT_EQ(RPC_STATUS_OK, Call("Say"));
  ASSERT_EQ(RPC_STATUS_OK, Call("Say"));
  ASSERT_EQ(RPC_STATUS_ABORTED, Call("Fail", RPC_STATUS_ABORTED));
  EXPECT_TRUE(clog.WaitFor("INFO " + Target(port_) + ": ready")) << clog.All();
  rpc_channel_stats st;
  ASSERT_EQ(0, rpc_channel_get_stats(ch_, &st));
  ASSERT_EQ(1u, st.nendpoints);
  EXPECT_EQ(RPC_ENDPOINT_READY, st.endpoints[0].state);
  EXPECT_EQ(1u, st.endpoints[0].connects);
  EXPECT_EQ(0u, st.endpoints[0].connect_failures);
  EXPECT_STREQ("", st.endpoints[0].last_error);
  EXPECT_EQ(2u, st.endpoints[0].calls[RPC_STATUS_OK]);
  EXPECT_EQ(1u, st.endpoints[0].calls[RPC_STATUS_ABORTED]);
  EXPECT_EQ(3u, st.endpoints[0].latency.count);
  rpc_channel_stats_free(&st);
  EXPECT_EQ(0, rpc_channel_destroy(ch_));  // before clog goes
  ch_ = nullptr;
}

// ---- Errors that say what failed ----------------------------------------------------------------

TEST(RpcErrors, PortsAbove65535AreRefused) {
  rpc_server *s = nullptr;
  ASSERT_EQ(0, rpc_server_create(&s, nullptr));
  EXPECT_EQ(-EINVAL, rpc_server_listen(s, "127.0.0.1:99999"));  // was port 34463
  EXPECT_EQ(-EINVAL, rpc_server_listen(s, "127.0.0.1:65536"));
  EXPECT_EQ(-EINVAL, rpc_server_listen(s, "127.0.0.1:12x"));
  EXPECT_EQ(-EINVAL, rpc_server_listen(s, "127.0.0.1:-1"));
  rpc_server_destroy(s);
  rpc_channel *ch = nullptr;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "127.0.0.1:99999", nullptr));
  EXPECT_EQ(nullptr, ch);
  ASSERT_EQ(0, rpc_channel_create(&ch, "127.0.0.1:65535", nullptr));
  EXPECT_EQ(0, rpc_channel_destroy(ch));
}

TEST(RpcErrors, AnUnknownBackendSaysSoInOptionsAndEnvironment) {
  const char *msg = "unknown gaio backend name (in the backend option or GAIO_BACKEND; use \"uring\" or \"epoll\")";
  EXPECT_STREQ(msg, rpc_strerror(GAIO_EBACKEND));
  rpc_channel_options co = {};
  co.backend = "kqueue";
  rpc_channel *ch = nullptr;
  EXPECT_EQ(GAIO_EBACKEND, rpc_channel_create(&ch, "127.0.0.1:1", &co));
  rpc_server_options so = {};
  so.backend = "kqueue";
  rpc_server *s = nullptr;
  ASSERT_EQ(0, rpc_server_create(&s, &so));
  ASSERT_EQ(0, rpc_server_add_service(s, &g_service.base));
  ASSERT_EQ(0, rpc_server_listen(s, "127.0.0.1:0"));
  EXPECT_EQ(GAIO_EBACKEND, rpc_server_start(s));
  rpc_server_destroy(s);
  const char *old = getenv("GAIO_BACKEND");
  std::string saved = old ? old : "";
  setenv("GAIO_BACKEND", "nonsense", 1);
  EXPECT_EQ(GAIO_EBACKEND, rpc_channel_create(&ch, "127.0.0.1:1", nullptr));
  if (old) setenv("GAIO_BACKEND", saved.c_str(), 1);
  else unsetenv("GAIO_BACKEND");
}

TEST(RpcErrors, StrerrorNamesErrnoAndRpcMeanings) {
  EXPECT_STREQ("Connection refused", rpc_strerror(-ECONNREFUSED));
  EXPECT_STREQ("Invalid argument", rpc_strerror(-EINVAL));
  EXPECT_STREQ("end of stream", rpc_strerror(GAIO_EOF));
  EXPECT_STREQ("too many calls pending (the channel's max_pending_calls or a completion queue's limit)",
               rpc_strerror(-ENOBUFS));
  EXPECT_STREQ("the channel or server is shutting down", rpc_strerror(-ESHUTDOWN));
  EXPECT_STREQ("unknown error", rpc_strerror(-100000));
  EXPECT_STREQ("WARN", rpc_log_level_name(RPC_LOG_WARN));
  EXPECT_STREQ("?", rpc_log_level_name(9));
  EXPECT_STREQ("protocol_error", rpc_close_cause_name(RPC_CLOSE_PROTOCOL));
  EXPECT_STREQ("oversize", rpc_protocol_error_name(RPC_PERR_OVERSIZE));
}

// ---- gaio's loop metrics, on every backend -----------------------------------------------------

class LoopMetrics : public ::testing::TestWithParam<std::string> {};

TEST_P(LoopMetrics, PollsIdleTimeEventsReadsAndWritesAreCounted) {
  gaio_options o = {};
  o.backend = GetParam().c_str();
  gaio_watcher *w = nullptr;
  int rc = gaio_watcher_create(&w, &o);
  if (GetParam() == "uring" && rc < 0) GTEST_SKIP() << "io_uring: " << gaio_strerror(rc);
  ASSERT_EQ(0, rc);
  int sv[2];
  ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
  ASSERT_EQ(0, gaio_attach(w, sv[0]));
  char buf[16];
  ASSERT_EQ(0, gaio_read(w, sv[0], buf, sizeof buf, nullptr));
  gaio_result r[4];
  // Nothing to read: the loop blocks in the kernel until the timer, 20 ms later.
  ASSERT_EQ(0, gaio_timer(w, reinterpret_cast<void *>(1), gaio_now() + 20 * 1000000ull));
  int n = 0;
  while (n == 0) n = gaio_wait(w, r, 4, 5000);
  ASSERT_EQ(1, n);
  EXPECT_EQ(GAIO_OP_TIMER, r[0].op);
  gaio_stats st;
  gaio_watcher_stats(w, &st);
  EXPECT_GE(st.polls, 1u);
  EXPECT_GE(st.idle_ns, 15u * 1000000u);  // blocked until the timer (a lower bound, not speed)
  EXPECT_EQ(0u, st.reads);
  ASSERT_EQ(5, write(sv[1], "hello", 5));
  n = 0;
  while (n == 0) n = gaio_wait(w, r, 4, 5000);
  ASSERT_EQ(1, n);
  EXPECT_EQ(5u, r[0].size);
  ASSERT_EQ(0, gaio_write(w, sv[0], "abc", 3, nullptr));
  n = 0;
  while (n == 0) n = gaio_wait(w, r, 4, 5000);
  ASSERT_EQ(1, n);
  gaio_stats st2;
  gaio_watcher_stats(w, &st2);
  EXPECT_GT(st2.polls, st.polls);
  EXPECT_GE(st2.events, 1u);
  EXPECT_EQ(1u, st2.reads);
  EXPECT_EQ(5u, st2.bytes_read);
  EXPECT_EQ(1u, st2.writes);
  EXPECT_EQ(3u, st2.bytes_written);
  EXPECT_EQ(3u, st2.completed);
  close(sv[1]);
  gaio_watcher_destroy(w);
}

INSTANTIATE_TEST_SUITE_P(Backends, LoopMetrics, ::testing::Values("epoll", "uring"),
                         [](const ::testing::TestParamInfo<std::string> &i) { return i.param; });

}  // namespace
