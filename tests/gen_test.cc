// The typed helpers that rpc_proto_library generates (rpc/protoc_gen_gaio_rpc.py) for
// tests/gen_test.proto: blocking calls, async submits and typed replies against a real server,
// for OK, every error status, a deadline, a cancel and a lost connection; the method
// descriptors resolved at build time; the embedded descriptor against protoc's own.
#include <errno.h>

#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/rpc.h"
#include "tests/gen_test.rpc.h"
#include "tests/test_util.h"

namespace {

constexpr int kTimeoutMs = 5000;  // deadline of calls that should not time out
constexpr int kShortMs = 50;      // deadline of calls that should

// Calls HoldOn keeps until Release() answers them (any held call must be answered once).
struct Held {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<rpc_call *> calls;

  void Add(rpc_call *c) {
    std::lock_guard<std::mutex> lk(mu);
    calls.push_back(c);
    cv.notify_all();
  }
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::milliseconds(kTimeoutMs), [&] { return calls.size() >= n; });
  }
  void Release() {
    std::vector<rpc_call *> v;
    {
      std::lock_guard<std::mutex> lk(mu);
      v.swap(calls);
    }
    for (rpc_call *c : v) rpc_call_fail(c, RPC_STATUS_ABORTED, "released");
  }
};

Held g_held;

void te_say_hello(Test__Gen__V1__TypedEcho_Service *, const Test__V1__EchoRequest *in,
                  Test__Gen__V1__Outer__Inner_Closure closure, void *data) {
  Test__Gen__V1__Outer__Inner out = TEST__GEN__V1__OUTER__INNER__INIT;
  std::string text = std::string("hello, ") + in->text;
  out.text = const_cast<char *>(text.c_str());
  closure(&out, data);
}

void te_fail_with(Test__Gen__V1__TypedEcho_Service *, const Test__V1__EchoRequest *in,
                  Test__Gen__V1__Outer__Inner_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

void te_hold_on(Test__Gen__V1__TypedEcho_Service *, const Test__V1__EchoRequest *,
                Test__Gen__V1__Outer__Inner_Closure, void *data) {
  g_held.Add(rpc_server_call(data));
}

void te_check_health(Test__Gen__V1__TypedEcho_Service *,
                     const Gaio__Health__V1__HealthCheckRequest *,
                     Gaio__Health__V1__HealthCheckResponse_Closure closure, void *data) {
  Gaio__Health__V1__HealthCheckResponse out = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  out.status = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  closure(&out, data);
}

Test__Gen__V1__TypedEcho_Service g_impl = TEST__GEN__V1__TYPED_ECHO__INIT(te_);

class GenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(rpc_server_create(&srv_, nullptr), 0);
    ASSERT_EQ(test__gen__v1__typed_echo__serve(srv_, &g_impl), 0);
    ASSERT_EQ(rpc_server_listen(srv_, "127.0.0.1:0"), 0);
    ASSERT_EQ(rpc_server_start(srv_), 0);
    std::string target = "127.0.0.1:" + std::to_string(rpc_server_port(srv_));
    ASSERT_EQ(rpc_channel_create(&ch_, target.c_str(), nullptr), 0);
    ASSERT_EQ(rpc_cq_create(&cq_), 0);
  }
  void TearDown() override {
    rpc_channel_destroy(ch_);
    g_held.Release();
    rpc_server_destroy(srv_);
    rpc_cq_destroy(cq_);
  }
  // Waits for exactly one completion.
  rpc_completion WaitOne() {
    rpc_completion c[2];
    EXPECT_EQ(rpc_cq_wait(cq_, c, 2, kTimeoutMs), 1);
    return c[0];
  }

  rpc_server *srv_ = nullptr;
  rpc_channel *ch_ = nullptr;
  rpc_cq *cq_ = nullptr;
};

TEST_F(GenTest, BlockingCallOk) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("typed");
  Test__Gen__V1__Outer__Inner *reply = nullptr;
  char msg[RPC_MAX_ERROR_MESSAGE + 1] = "untouched";
  rpc_call_options o = {};
  o.timeout_ms = kTimeoutMs;
  ASSERT_EQ(test__gen__v1__typed_echo__say_hello_call(ch_, &req, &reply, &o, msg, sizeof msg),
            RPC_STATUS_OK);
  ASSERT_NE(reply, nullptr);
  EXPECT_STREQ(reply->text, "hello, typed");
  protobuf_c_message_free_unpacked(&reply->base, nullptr);

  // A method whose types come from an imported file; NULL options: the channel's defaults.
  Gaio__Health__V1__HealthCheckRequest h = GAIO__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Gaio__Health__V1__HealthCheckResponse *hr = nullptr;
  ASSERT_EQ(test__gen__v1__typed_echo__check_health_call(ch_, &h, &hr, nullptr, nullptr, 0),
            RPC_STATUS_OK);
  EXPECT_EQ(hr->status, GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  gaio__health__v1__health_check_response__free_unpacked(hr, nullptr);
}

TEST_F(GenTest, EveryErrorStatusBlockingAndAsync) {
  for (int code = RPC_STATUS_CANCELLED; code <= RPC_STATUS_UNAUTHENTICATED; code++) {
    SCOPED_TRACE(rpc_status_name(code));
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    std::string text = std::string("failed with ") + rpc_status_name(code);
    req.text = const_cast<char *>(text.c_str());
    req.code = code;
    Test__Gen__V1__Outer__Inner *reply = reinterpret_cast<Test__Gen__V1__Outer__Inner *>(&req);
    char msg[RPC_MAX_ERROR_MESSAGE + 1];
    EXPECT_EQ(test__gen__v1__typed_echo__fail_with_call(ch_, &req, &reply, nullptr, msg, sizeof msg),
              code);
    EXPECT_EQ(reply, nullptr);
    EXPECT_EQ(std::string(msg), text);

    uint64_t id = 0;
    ASSERT_EQ(test__gen__v1__typed_echo__fail_with_submit(ch_, &req, nullptr, cq_, &req, &id), 0);
    rpc_completion c = WaitOne();
    EXPECT_EQ(c.status, code);
    EXPECT_EQ(c.ctx, &req);
    EXPECT_EQ(c.call_id, id);
    EXPECT_EQ(std::string(c.message), text);
    EXPECT_EQ(test__gen__v1__typed_echo__fail_with_reply(&c), nullptr);
  }
}

TEST_F(GenTest, AsyncSubmitsAndTypedReplies) {
  constexpr int kCalls = 32;
  std::vector<std::string> texts(kCalls);
  for (int i = 0; i < kCalls; i++) {
    texts[i] = "call " + std::to_string(i);
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>(texts[i].c_str());  // packed before submit returns
    ASSERT_EQ(test__gen__v1__typed_echo__say_hello_submit(ch_, &req, nullptr, cq_,
                                                          reinterpret_cast<void *>(intptr_t(i)),
                                                          nullptr),
              0);
  }
  int got = 0;
  rpc_completion out[kCalls];
  while (got < kCalls) {
    int n = rpc_cq_wait(cq_, out, kCalls, kTimeoutMs);
    ASSERT_GT(n, 0);
    for (int k = 0; k < n; k++, got++) {
      int i = int(intptr_t(out[k].ctx));
      ASSERT_EQ(out[k].status, RPC_STATUS_OK);
      Test__Gen__V1__Outer__Inner *r = test__gen__v1__typed_echo__say_hello_reply(&out[k]);
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(std::string(r->text), "hello, " + texts[i]);
      protobuf_c_message_free_unpacked(&r->base, nullptr);
    }
  }
  EXPECT_EQ(rpc_cq_wait(cq_, out, kCalls, 0), 0);  // exactly one completion per call
}

TEST_F(GenTest, TypedReplyChecksStatusAndType) {
  Gaio__Health__V1__HealthCheckResponse other = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  rpc_completion c = {};
  c.status = RPC_STATUS_OK;
  c.reply = &other.base;  // another message type than SayHello's reply
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_reply(&c), nullptr);
  EXPECT_EQ(test__gen__v1__typed_echo__check_health_reply(&c),
            reinterpret_cast<Gaio__Health__V1__HealthCheckResponse *>(&other));
  c.status = RPC_STATUS_INTERNAL;
  EXPECT_EQ(test__gen__v1__typed_echo__check_health_reply(&c), nullptr);
  c.status = RPC_STATUS_OK;
  c.reply = nullptr;
  EXPECT_EQ(test__gen__v1__typed_echo__check_health_reply(&c), nullptr);
  EXPECT_EQ(test__gen__v1__typed_echo__check_health_reply(nullptr), nullptr);
}

TEST_F(GenTest, DeadlineBlockingAndAsync) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  rpc_call_options o = {};
  o.timeout_ms = kShortMs;
  Test__Gen__V1__Outer__Inner *reply = nullptr;
  EXPECT_EQ(test__gen__v1__typed_echo__hold_on_call(ch_, &req, &reply, &o, nullptr, 0),
            RPC_STATUS_DEADLINE_EXCEEDED);
  EXPECT_EQ(reply, nullptr);
  ASSERT_EQ(test__gen__v1__typed_echo__hold_on_submit(ch_, &req, &o, cq_, nullptr, nullptr), 0);
  rpc_completion c = WaitOne();
  EXPECT_EQ(c.status, RPC_STATUS_DEADLINE_EXCEEDED);
  EXPECT_EQ(test__gen__v1__typed_echo__hold_on_reply(&c), nullptr);
}

TEST_F(GenTest, CancelAsync) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  uint64_t id = 0;
  ASSERT_EQ(test__gen__v1__typed_echo__hold_on_submit(ch_, &req, nullptr, cq_, nullptr, &id), 0);
  ASSERT_TRUE(g_held.WaitFor(1));  // the server has it
  ASSERT_EQ(rpc_channel_cancel(ch_, id), 0);
  rpc_completion c = WaitOne();
  EXPECT_EQ(c.status, RPC_STATUS_CANCELLED);
  EXPECT_EQ(test__gen__v1__typed_echo__hold_on_reply(&c), nullptr);
}

// A "server" that accepts a connection, waits for the request and closes it.
void AcceptReadClose(const gaio_test::Listener &l) {
  gaio_test::UniqueFd conn = l.Accept();
  ASSERT_TRUE(conn.valid());
  ASSERT_TRUE(gaio_test::WaitReadable(conn.get(), kTimeoutMs));  // the REQUEST is there
}

// A connection lost with the call in flight: the call completes UNAVAILABLE. One listener and
// channel per way of calling, so that each accept gets the connection the call went on.
TEST(GenLostConnection, BlockingAndAsyncCompleteUnavailable) {
  gaio_test::Listener l[2];
  rpc_channel *ch[2];
  for (int i = 0; i < 2; i++) {
    ASSERT_TRUE(l[i].ok());
    std::string target = "127.0.0.1:" + std::to_string(l[i].port());
    ASSERT_EQ(rpc_channel_create(&ch[i], target.c_str(), nullptr), 0);
  }
  rpc_cq *cq;
  ASSERT_EQ(rpc_cq_create(&cq), 0);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  rpc_call_options o = {};
  o.timeout_ms = kTimeoutMs;

  int st = -1;
  Test__Gen__V1__Outer__Inner *reply = nullptr;
  std::thread caller([&] {
    st = test__gen__v1__typed_echo__say_hello_call(ch[0], &req, &reply, &o, nullptr, 0);
  });
  AcceptReadClose(l[0]);
  caller.join();
  EXPECT_EQ(st, RPC_STATUS_UNAVAILABLE);
  EXPECT_EQ(reply, nullptr);

  ASSERT_EQ(test__gen__v1__typed_echo__say_hello_submit(ch[1], &req, &o, cq, nullptr, nullptr), 0);
  AcceptReadClose(l[1]);
  rpc_completion c[2];
  ASSERT_EQ(rpc_cq_wait(cq, c, 2, kTimeoutMs), 1);
  EXPECT_EQ(c[0].status, RPC_STATUS_UNAVAILABLE);
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_reply(&c[0]), nullptr);
  rpc_channel_destroy(ch[0]);
  rpc_channel_destroy(ch[1]);
  rpc_cq_destroy(cq);
}

TEST_F(GenTest, BadArguments) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_call(ch_, &req, nullptr, nullptr, nullptr, 0),
            -EINVAL);
  Test__Gen__V1__Outer__Inner *reply = nullptr;
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_call(ch_, nullptr, &reply, nullptr, nullptr, 0),
            -EINVAL);
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_call(nullptr, &req, &reply, nullptr, nullptr, 0),
            -EINVAL);
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_submit(ch_, nullptr, nullptr, cq_, nullptr,
                                                        nullptr),
            -EINVAL);

  rpc_server *s;
  ASSERT_EQ(rpc_server_create(&s, nullptr), 0);
  EXPECT_EQ(test__gen__v1__typed_echo__serve(s, nullptr), -EINVAL);
  Test__Gen__V1__TypedEcho_Service zeroed = {};  // not initialised with the INIT macro
  EXPECT_EQ(test__gen__v1__typed_echo__serve(s, &zeroed), -EINVAL);
  EXPECT_EQ(test__gen__v1__typed_echo__serve(s, &g_impl), 0);
  EXPECT_EQ(test__gen__v1__typed_echo__serve(s, &g_impl), -EEXIST);
  rpc_server_destroy(s);
}

// The ids computed by the generator equal rpc_method_id() of the full names, and the
// descriptors are the generated ones, for every method in .proto order.
TEST(GenMethods, ResolvedAtBuildTime) {
  const rpc_method *gen[] = {
      &test__gen__v1__typed_echo__say_hello_method,
      &test__gen__v1__typed_echo__fail_with_method,
      &test__gen__v1__typed_echo__hold_on_method,
      &test__gen__v1__typed_echo__check_health_method,
  };
  const ProtobufCServiceDescriptor *svc = &test__gen__v1__typed_echo__descriptor;
  ASSERT_EQ(svc->n_methods, sizeof gen / sizeof gen[0]);
  for (unsigned i = 0; i < svc->n_methods; i++) {
    std::string full = std::string(svc->name) + "/" + svc->methods[i].name;
    SCOPED_TRACE(full);
    EXPECT_EQ(gen[i]->id, rpc_method_id(full.data(), full.size()));
    EXPECT_EQ(gen[i]->input, svc->methods[i].input);
    EXPECT_EQ(gen[i]->output, svc->methods[i].output);
    rpc_method m;
    ASSERT_EQ(rpc_method_at(&m, svc, i), 0);
    EXPECT_EQ(gen[i]->id, m.id);
  }
  // And one literal: FNV-1a of the name, as WIRE.md defines it.
  EXPECT_EQ(test__gen__v1__typed_echo__say_hello_method.id,
            rpc_method_id("test.gen.v1.TypedEcho/SayHello", 30));
  // The imported file's own helpers.
  EXPECT_EQ(test__v1__echo__say_method.id, rpc_method_id("test.v1.Echo/Say", 16));
  EXPECT_EQ(gaio__health__v1__health__check_method.id,
            rpc_method_id("gaio.health.v1.Health/Check", 27));
}

// The embedded FileDescriptorProto is byte for byte the one in protoc's --descriptor_set_out
// (a FileDescriptorSet: field 1, length-delimited, one file), and its deps are the imports.
TEST(GenDescriptor, EqualsProtocDescriptorSet) {
  std::ifstream f("tests/gen_test.desc", std::ios::binary);
  ASSERT_TRUE(f.good());
  std::vector<uint8_t> set((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const rpc_proto_file &pf = tests_gen_test__proto_file;
  EXPECT_STREQ(pf.name, "tests/gen_test.proto");
  std::vector<uint8_t> want = {0x0a};
  for (size_t n = pf.descriptor_len; ; n >>= 7) {  // varint length
    want.push_back(uint8_t((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
    if (n < 0x80) break;
  }
  want.insert(want.end(), pf.descriptor, pf.descriptor + pf.descriptor_len);
  EXPECT_EQ(set, want);

  ASSERT_NE(pf.deps, nullptr);
  EXPECT_EQ(pf.deps[0], &rpc_health__proto_file);  // .proto import order
  EXPECT_EQ(pf.deps[1], &tests_rpc_test__proto_file);
  EXPECT_EQ(pf.deps[2], nullptr);
  EXPECT_STREQ(pf.deps[0]->name, "rpc/health.proto");
  ASSERT_NE(rpc_health__proto_file.deps, nullptr);
  EXPECT_EQ(rpc_health__proto_file.deps[0], nullptr);  // imports nothing
}

}  // namespace
