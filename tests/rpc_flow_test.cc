// Flow control of //rpc (README "Flow control"): where calls wait beyond each limit and what
// the caller sees.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Watchdog;

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = in->text;
  out.payload = in->payload;
  closure(&out, data);
}
void h_slow(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  h_say(s, in, closure, data);
}
void h_hold(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  h_say(s, in, closure, data);
}
void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}
Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

struct Server {
  rpc_server *s = nullptr;
  explicit Server(const rpc_server_options &o) {
    EXPECT_EQ(0, rpc_server_create(&s, &o));
    EXPECT_EQ(0, rpc_server_add_service(s, &g_service.base));
    EXPECT_EQ(0, rpc_server_listen(s, "127.0.0.1:0"));
    EXPECT_EQ(0, rpc_server_start(s));
  }
  ~Server() { rpc_server_destroy(s); }
  std::string Target() const { return "127.0.0.1:" + std::to_string(rpc_server_port(s)); }
};

// Submit n calls of Say with a payload of size bytes at once, then collect them: the count of
// each status in *by_status (17 slots).
void Burst(rpc_channel *ch, int n, size_t size, std::vector<int> *by_status, std::string *msg) {
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  std::vector<uint8_t> payload(size, 0x5a);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.payload.data = payload.data();
  req.payload.len = payload.size();
  for (int i = 0; i < n; i++) ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, 60000, cq, nullptr, nullptr));
  by_status->assign(17, 0);
  rpc_completion c[64];
  for (int got = 0; got < n;) {
    int k = rpc_cq_wait(cq, c, 64, 60000);
    ASSERT_GT(k, 0);
    for (int i = 0; i < k; i++) {
      (*by_status)[c[i].status]++;
      if (c[i].status != RPC_STATUS_OK && msg->empty()) *msg = c[i].message;
      if (c[i].reply) protobuf_c_message_free_unpacked(c[i].reply, nullptr);
    }
    got += k;
  }
  rpc_cq_destroy(cq);
}

// The issue 17 observation: thousands of calls at once over one connection whose server allows
// only 2 in flight all succeed, because a handler that answers inside invoke ends its call
// before the server parses the next request: the burst waits in the socket buffers and the
// channel's write queue, never as calls in flight. (A handler that defers its reply makes the
// third concurrent call fail RESOURCE_EXHAUSTED: RpcLimitTest in rpc_test.cc.)
TEST(RpcFlow, BurstOverThePerConnectionLimitWithImmediateHandlersAllSucceeds) {
  Watchdog wd("ImmediateBurst", 60000);
  rpc_server_options o = {};
  o.workers = 1;
  o.max_calls_per_conn = 2;
  Server srv(o);
  rpc_channel *ch = nullptr;
  ASSERT_EQ(0, rpc_channel_create(&ch, srv.Target().c_str(), nullptr));
  std::vector<int> st;
  std::string msg;
  Burst(ch, 5000, 16, &st, &msg);
  EXPECT_EQ(5000, st[RPC_STATUS_OK]) << msg;
  rpc_channel_destroy(ch);
}

// A burst of requests (24 x 1 MiB) far over RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN: the calls
// beyond it wait in the channel and go out as writes make room; all succeed. (That gaio's own write queue can no longer overflow is shown deterministically by
// CallsWaitingForRoomKeepTheirDeadlineAndCanBeCancelled, whose peer never reads.)
TEST(RpcFlow, BurstLargerThanTheWriteQueueWaitsInTheChannel) {
  Watchdog wd("LargeBurst", 120000);
  rpc_server_options o = {};
  o.workers = 1;
  o.max_body = 2 << 20;
  Server srv(o);
  rpc_channel_options co = {};
  co.max_body = 2 << 20;
  rpc_channel *ch = nullptr;
  ASSERT_EQ(0, rpc_channel_create(&ch, srv.Target().c_str(), &co));
  std::vector<int> st;
  std::string msg;
  Burst(ch, 24, 1 << 20, &st, &msg);
  EXPECT_EQ(24, st[RPC_STATUS_OK]) << msg;
  rpc_channel_destroy(ch);
}

// A peer that never reads (a listening socket nobody accepts on): the socket buffers fill, then
// the connection's write queue, then calls wait in the channel. Those complete at their
// deadline (DEADLINE_EXCEEDED) or when cancelled (CANCELLED), exactly once each.
TEST(RpcFlow, CallsWaitingForRoomKeepTheirDeadlineAndCanBeCancelled) {
  Watchdog wd("WaitingForRoom", 60000);
  gaio_test::UniqueFd lfd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(0, bind(lfd.get(), reinterpret_cast<struct sockaddr *>(&a), sizeof a));
  ASSERT_EQ(0, listen(lfd.get(), 4));
  ASSERT_EQ(0, getsockname(lfd.get(), reinterpret_cast<struct sockaddr *>(&a), &len));
  std::string target = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  rpc_channel_options co = {};
  co.max_body = 2 << 20;
  rpc_channel *ch = nullptr;
  ASSERT_EQ(0, rpc_channel_create(&ch, target.c_str(), &co));
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  std::vector<uint8_t> payload(1 << 20, 1);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.payload.data = payload.data();
  req.payload.len = payload.size();
  // 80 MiB: more than the socket buffers (a few MiB), RPC_CHANNEL_MAX_WRITE_BYTES_PER_CONN, and
  // gaio's default write queue per fd (64 MiB; a channel once queued calls there without limit:
  // the write overflowing it failed with -ENOBUFS and every call completed UNAVAILABLE).
  const int n = 80;
  uint64_t last = 0;
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, 1500, cq, reinterpret_cast<void *>(intptr_t(i)), &last));
  }
  ASSERT_EQ(0, rpc_channel_cancel(ch, last));  // the last one waits in the channel
  std::vector<int> by_status(17, 0);
  int last_status = -1;
  rpc_completion c[16];
  for (int got = 0; got < n;) {
    int k = rpc_cq_wait(cq, c, 16, 20000);
    ASSERT_GT(k, 0);
    for (int i = 0; i < k; i++) {
      by_status[c[i].status]++;
      if (intptr_t(c[i].ctx) == n - 1) last_status = c[i].status;
    }
    got += k;
  }
  EXPECT_EQ(RPC_STATUS_CANCELLED, last_status);
  EXPECT_EQ(1, by_status[RPC_STATUS_CANCELLED]);
  EXPECT_EQ(n - 1, by_status[RPC_STATUS_DEADLINE_EXCEEDED]);
  EXPECT_EQ(0, rpc_cq_wait(cq, c, 16, 0));
  rpc_channel_destroy(ch);
  rpc_cq_destroy(cq);
}

}  // namespace
