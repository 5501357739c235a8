// The server keeps its promises under hostile clients and at shutdown (issue 10): no reply is
// lost to a graceful stop or a half-close, a client that does not read harms no other client
// and holds bounded memory, PINGs do not wait behind handlers, GOAWAY ids are exact, and an
// allocation failure is told apart from a malformed request. Raw sockets speak rpc/WIRE.md;
// the suite runs on the automatic backend (rpc_hostile_test) and on epoll
// (rpc_hostile_test_epoll).
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/rpc_wire_util.h"
#include "tests/test_util.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HOSTILE_SANITIZER_ALLOCATOR 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HOSTILE_SANITIZER_ALLOCATOR 1
#endif
#ifdef HOSTILE_SANITIZER_ALLOCATOR
// From <sanitizer/allocator_interface.h>, which gcc's packages do not always install.
extern "C" size_t __sanitizer_get_current_allocated_bytes(void);
#endif

namespace {

using gaio_test::Watchdog;
using rpc_test::EchoFrame;
using rpc_test::Got;
using rpc_test::MethodId;
using rpc_test::PackedRequest;
using rpc_test::RawConn;
using rpc_test::RawFrame;

// Bytes the process has allocated and not freed (the sanitizers replace malloc, and mallinfo2
// with it).
size_t AllocatedBytes() {
#ifdef HOSTILE_SANITIZER_ALLOCATOR
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
#endif
}

// ---- The service: Say records what it ran; Slow spins on the worker thread ----------------

std::mutex g_mu;
std::set<std::string> g_applied;  // texts of the Say calls whose handler ran

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_applied.insert(in->text);
  }
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = std::string("echo:") + in->text;
  std::string payload(in->code > 0 ? size_t(in->code) : 0, 'p');  // code = reply payload size
  out.text = const_cast<char *>(text.c_str());
  out.payload.data = reinterpret_cast<uint8_t *>(&payload[0]);
  out.payload.len = payload.size();
  closure(&out, data);
}

// Busy for delay_ms on the worker thread itself: handler work that holds the loop.
void h_slow(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(in->delay_ms);
  while (std::chrono::steady_clock::now() < until) {
  }
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = std::string("slow:") + in->text;
  out.text = const_cast<char *>(text.c_str());
  closure(&out, data);
}

void h_hold(Test__V1__Echo_Service *, const Test__V1__EchoRequest *, Test__V1__EchoReply_Closure,
            void *data) {
  rpc_call_fail(rpc_server_call(data), RPC_STATUS_UNIMPLEMENTED, "not in this suite");
}

void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in, Test__V1__EchoReply_Closure,
            void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

class RpcHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard<std::mutex> lk(g_mu);
    g_applied.clear();
  }
  void TearDown() override {
    rpc_channel_destroy(ch_);
    rpc_server_destroy(s_);
  }
  void Start(rpc_server_options o = {}) {
    ASSERT_EQ(0, rpc_server_create(&s_, &o));
    ASSERT_EQ(0, rpc_server_add_service(s_, &g_service.base));
    ASSERT_EQ(0, rpc_server_listen(s_, "127.0.0.1:0"));
    ASSERT_EQ(0, rpc_server_start(s_));
    port_ = rpc_server_port(s_);
    ASSERT_GT(port_, 0);
    std::string target = "127.0.0.1:" + std::to_string(port_);
    ASSERT_EQ(0, rpc_channel_create(&ch_, target.c_str(), nullptr));
  }
  // A well-behaved client's Say through the channel; returns the status.
  int Say(const char *text) {
    rpc_method m;
    EXPECT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>(text);
    ProtobufCMessage *reply = nullptr;
    char msg[256];
    int st = rpc_channel_call(ch_, &m, &req.base, 5000, &reply, msg, sizeof msg);
    if (reply) protobuf_c_message_free_unpacked(reply, nullptr);
    EXPECT_EQ(RPC_STATUS_OK, st) << msg;
    return st;
  }
  rpc_server *s_ = nullptr;
  rpc_channel *ch_ = nullptr;
  int port_ = 0;
};

// Send copies of chunk until `chunks` were sent or the peer stopped taking bytes for stall_ms
// (it stopped reading and the socket buffers are full). Returns the bytes sent.
size_t Flood(int fd, const std::string &chunk, size_t chunks, int stall_ms) {
  size_t sent = 0, total = chunk.size() * chunks;
  while (sent < total) {
    size_t off = sent % chunk.size();
    ssize_t n = send(fd, chunk.data() + off, chunk.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, stall_ms) == 0) break;
  }
  return sent;
}

// ---- A graceful stop under continuous load ------------------------------------------------

struct LoadResult {
  int goaways = 0;
  uint32_t goaway_id = 0;
  uint32_t sent_max = 0;          // highest id sent
  std::set<uint32_t> answered;    // ids answered OK
  int not_ok = 0;                 // responses with another status
  bool eof = false;               // the server closed cleanly
  int err = 0;                    // or the connection failed with this errno
};

// One client that pipelines Say calls until it sees the GOAWAY (up to 2048 outstanding, so
// that requests wait in the server's socket when it stops), then sends 50 more (as if they had
// crossed the GOAWAY) and reads until the server closes.
void LoadClient(int port, int k, LoadResult *r, std::atomic<int> *answered_conns) {
  RawConn c(port);
  std::string pending;
  uint32_t next = 1;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!r->eof && r->err == 0 && std::chrono::steady_clock::now() < until) {
    while (r->goaways == 0 && next - 1 - r->answered.size() - r->not_ok < 2048) {
      std::string text = "c" + std::to_string(k) + "-" + std::to_string(next);
      pending += EchoFrame("Say", next, text.c_str()).Bytes();
      r->sent_max = next++;
    }
    pollfd p = {c.fd(), short(POLLIN | (pending.empty() ? 0 : POLLOUT)), 0};
    if (poll(&p, 1, 100) <= 0) continue;
    if (p.revents & POLLOUT) {
      ssize_t n = send(c.fd(), pending.data(), pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) pending.erase(0, size_t(n));
    }
    long got = c.Pump();
    if (got == 0) r->eof = true;
    if (got < 0 && got != -EAGAIN) r->err = int(-got);
    Got g;
    while (c.Buffered(&g)) {
      if (g.type == RPC_TYPE_GOAWAY) {
        r->goaways++;
        r->goaway_id = g.id;
        // Requests that cross the GOAWAY: above its id, they must not run nor be answered.
        for (int i = 0; i < 50 && r->goaways == 1; i++) {
          std::string text = "c" + std::to_string(k) + "-" + std::to_string(next);
          pending += EchoFrame("Say", next, text.c_str()).Bytes();
          r->sent_max = next++;
        }
      } else if (g.type == RPC_TYPE_RESPONSE && g.status == RPC_STATUS_OK) {
        if (r->answered.empty()) answered_conns->fetch_add(1);
        r->answered.insert(g.id);
      } else {
        r->not_ok++;
      }
    }
  }
}

TEST_F(RpcHostileTest, GracefulStopUnderLoadAnswersEveryAcceptedRequestWithoutReset) {
  Watchdog wd("GracefulStopUnderLoad", 60000);
  rpc_server_options o = {};
  o.workers = 2;
  Start(o);
  const int kConns = 4;
  std::vector<LoadResult> res(kConns);
  std::vector<std::thread> th;
  std::atomic<int> answered_conns{0};
  for (int k = 0; k < kConns; k++) th.emplace_back(LoadClient, port_, k, &res[k], &answered_conns);
  // Under load on every connection (each has had answers), then stop.
  for (int i = 0; i < 1000 && answered_conns.load() < kConns; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(kConns, answered_conns.load());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(0, rpc_server_shutdown(s_, 5000));
  for (auto &t : th) t.join();
  std::lock_guard<std::mutex> lk(g_mu);
  for (int k = 0; k < kConns; k++) {
    const LoadResult &r = res[k];
    SCOPED_TRACE("connection " + std::to_string(k));
    EXPECT_EQ(1, r.goaways);
    EXPECT_TRUE(r.eof) << "the server must close after the client, without a reset";
    EXPECT_EQ(0, r.err) << strerror(r.err);
    EXPECT_EQ(0, r.not_ok);
    EXPECT_GT(r.goaway_id, 0u);
    EXPECT_GE(r.sent_max, r.goaway_id + 50) << "requests were sent above the GOAWAY's id";
    // Every request at or below the GOAWAY's id ran and was answered; none above it ran.
    EXPECT_EQ(size_t(r.goaway_id), r.answered.size());
    if (!r.answered.empty()) {
      EXPECT_EQ(r.goaway_id, *r.answered.rbegin());
    }
    for (uint32_t id = 1; id <= r.sent_max; id++) {
      std::string text = "c" + std::to_string(k) + "-" + std::to_string(id);
      bool ran = g_applied.count(text) > 0;
      if (id <= r.goaway_id) {
        EXPECT_TRUE(ran) << "accepted request " << id << " did not run";
      } else {
        EXPECT_FALSE(ran) << "request " << id << " above the GOAWAY id ran";
      }
      if (ran != (id <= r.goaway_id)) break;
    }
  }
}

// ---- A half-close after pipelining ---------------------------------------------------------

void PipelineThenHalfClose(int port, int n, int reply_size) {
  RawConn c(port);
  std::string all;
  for (int i = 1; i <= n; i++) all += EchoFrame("Say", uint32_t(i), "p", 0, reply_size).Bytes();
  c.Send(all);
  c.ShutWrite();
  std::set<uint32_t> ids;
  Got g;
  for (;;) {
    g = c.Next(10000);
    if (!g.ok) break;
    EXPECT_EQ(RPC_TYPE_RESPONSE, g.type);
    EXPECT_EQ(RPC_STATUS_OK, g.status);
    ids.insert(g.id);
  }
  EXPECT_EQ(size_t(n), ids.size()) << "replies lost after the half-close";
  EXPECT_TRUE(g.eof);
  EXPECT_EQ(0, g.err) << strerror(g.err);
}

TEST_F(RpcHostileTest, HalfCloseAfterPipeliningGetsEveryReply) {
  Watchdog wd("HalfClosePipelining", 60000);
  Start();
  for (int round = 0; round < 10; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    PipelineThenHalfClose(port_, 200, 0);
  }
  PipelineThenHalfClose(port_, 200, 64 * 1024);  // 12.5 MiB of replies: over the queue limit
  Say("still serving");
}

// ---- Clients that do not read --------------------------------------------------------------

TEST_F(RpcHostileTest, UnreadPongsHarmNoOtherConnectionAndHoldBoundedMemory) {
  Watchdog wd("UnreadPongs", 60000);
  rpc_server_options o = {};
  o.workers = 1;  // the flooder and the well-behaved client share the worker
  Start(o);
  ASSERT_EQ(RPC_STATUS_OK, Say("warm"));
  size_t before = AllocatedBytes();
  RawConn flood(port_);
  RawFrame ping;
  ping.type = RPC_TYPE_PING;
  std::string chunk;
  for (int i = 0; i < 4096; i++) chunk += ping.Bytes();
  // 1.2 million PINGs would be more PONG writes than a worker's gaio requests (2^20).
  size_t sent = Flood(flood.fd(), chunk, 300, 1000);
  size_t grown = AllocatedBytes() - std::min(before, AllocatedBytes());
  printf("flood: %zu PINGs sent before the server stopped reading; heap grew %zu KiB\n",
         sent / RPC_FRAME_HEADER_SIZE, grown >> 10);
  EXPECT_LT(sent, chunk.size() * 300) << "the server never stopped reading the flood";
  // Bounded by the connection's limit, not by what it sent: the old server grew by 180 MB
  // here. Plain builds measure about the limit (4.2 MiB); under TSan on a loaded machine CI
  // measured 7.3-8.2 MiB, not yet explained, hence twice the limit.
  EXPECT_LE(grown, 2 * size_t(RPC_DEFAULT_MAX_WRITE_BYTES_PER_CONN) + (2u << 20));
  for (int i = 0; i < 200; i++) {
    if (Say("other client") != RPC_STATUS_OK) break;
  }
}

TEST_F(RpcHostileTest, UnreadLargeRepliesHoldBoundedMemoryReleasedAtClose) {
  Watchdog wd("UnreadReplies", 60000);
  rpc_server_options o = {};
  o.workers = 2;
  Start(o);
  ASSERT_EQ(RPC_STATUS_OK, Say("warm"));
  size_t before = AllocatedBytes();
  const int kConns = 4, kCalls = 600, kReply = 64 * 1024;  // 37.5 MiB of replies per client
  std::string reqs;
  for (int i = 1; i <= kCalls; i++) reqs += EchoFrame("Say", uint32_t(i), "big", 0, kReply).Bytes();
  {
    std::vector<std::unique_ptr<RawConn>> conns;
    for (int k = 0; k < kConns; k++) {
      conns.emplace_back(new RawConn(port_));
      ASSERT_TRUE(gaio_test::SetRcvBuf(conns.back()->fd(), 4096));
      Flood(conns.back()->fd(), reqs, 1, 500);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    size_t grown = AllocatedBytes() - std::min(before, AllocatedBytes());
    printf("%d clients not reading: heap grew %zu KiB\n", kConns, grown >> 10);
    // Per connection: the queue limit, plus one reply over it, plus its receive buffer.
    size_t per_conn = RPC_DEFAULT_MAX_WRITE_BYTES_PER_CONN + 2 * size_t(kReply) + (64u << 10);
    EXPECT_LE(grown, kConns * per_conn + (2u << 20));
    EXPECT_EQ(RPC_STATUS_OK, Say("other client"));
  }  // closed with replies unread: the server sees a reset
  size_t after = 0;
  for (int i = 0; i < 100; i++) {
    after = AllocatedBytes();
    if (after <= before + (1u << 20)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(after, before + (1u << 20)) << "memory not released after the clients closed";
  EXPECT_EQ(RPC_STATUS_OK, Say("after"));
}

// ---- PING ahead of handler work -------------------------------------------------------------

TEST_F(RpcHostileTest, PingIsAnsweredAheadOfTheHandlersBeforeIt) {
  Watchdog wd("PingAhead", 30000);
  rpc_server_options o = {};
  o.workers = 1;
  Start(o);
  RawConn c(port_);
  std::string all;
  const int kCalls = 100;  // each spins 2 ms on the worker: 200 ms of handler work
  for (int i = 1; i <= kCalls; i++) all += EchoFrame("Slow", uint32_t(i), "s", 2).Bytes();
  RawFrame ping;
  ping.type = RPC_TYPE_PING;
  ping.id = 4242;
  all += ping.Bytes();
  c.Send(all);
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_TYPE_PONG, g.type) << "the PONG waited behind the handlers";
  EXPECT_EQ(4242u, g.id);
  int replies = g.type == RPC_TYPE_RESPONSE;
  while (replies < kCalls) {
    g = c.Next();
    ASSERT_TRUE(g.ok);
    ASSERT_EQ(RPC_TYPE_RESPONSE, g.type);
    EXPECT_EQ(RPC_STATUS_OK, g.status);
    replies++;
  }
}

// ---- Nothing past a protocol error is acted on ----------------------------------------------

// Every frame the server sends until it closes its side (bounded by Next()'s own timeout).
std::vector<Got> FramesUntilEof(RawConn *c) {
  std::vector<Got> out;
  for (;;) {
    Got g = c->Next();
    if (!g.ok) {
      EXPECT_TRUE(g.eof) << "the server did not end the connection cleanly (errno " << g.err
                         << ")";
      return out;
    }
    out.push_back(g);
  }
}

RawFrame Ping(uint32_t id) {
  RawFrame f;
  f.type = RPC_TYPE_PING;
  f.id = id;
  return f;
}

// A PING behind a frame of the wrong direction, in the same write, is past the protocol error:
// the urgent-frame scan (rpc/buf.c) must not answer it ahead of the main parse. The server sends
// its GOAWAY (id 0: no request accepted) and ends the connection, with no PONG.
TEST_F(RpcHostileTest, PingAfterAProtocolErrorInTheSameWriteIsNotAnswered) {
  Watchdog wd("PingAfterProtocolError", 30000);
  Start();
  for (uint8_t bad : {RPC_TYPE_RESPONSE, RPC_TYPE_PONG, RPC_TYPE_GOAWAY}) {
    SCOPED_TRACE(int(bad));
    RawConn c(port_);
    RawFrame wrong;
    wrong.type = bad;
    wrong.id = 5;
    if (bad != RPC_TYPE_PONG) wrong.body = "x";
    c.Send(Ping(1).Bytes() + wrong.Bytes() + Ping(2).Bytes() + EchoFrame("Say", 3, "a").Bytes());
    std::vector<Got> got = FramesUntilEof(&c);
    ASSERT_EQ(2u, got.size());
    EXPECT_EQ(RPC_TYPE_PONG, got[0].type);  // the PING before the bad frame is answered
    EXPECT_EQ(1u, got[0].id);
    EXPECT_EQ(RPC_TYPE_GOAWAY, got[1].type);
    EXPECT_EQ(0u, got[1].id);
    EXPECT_EQ("protocol error", got[1].body);
  }
  std::lock_guard<std::mutex> lk(g_mu);
  EXPECT_TRUE(g_applied.empty()) << "a request past the protocol error ran";
}

// An oversize frame of the wrong direction is refused as a protocol error too (WIRE.md section
// 8): the PING behind it is not answered either.
TEST_F(RpcHostileTest, PingAfterAnOversizeWrongDirectionFrameIsNotAnswered) {
  Watchdog wd("PingAfterOversize", 30000);
  rpc_server_options o = {};
  o.max_body = 64;
  Start(o);
  RawConn c(port_);
  RawFrame big;
  big.type = RPC_TYPE_RESPONSE;
  big.id = 5;
  big.body = std::string(100, 'b');
  c.Send(big.Bytes() + Ping(2).Bytes());
  std::vector<Got> got = FramesUntilEof(&c);
  ASSERT_EQ(1u, got.size());
  EXPECT_EQ(RPC_TYPE_GOAWAY, got[0].type);
  EXPECT_EQ(0u, got[0].id);
}

// The controls: a PING alone gets its PONG, and so does a PING behind a CANCEL in the same
// write (a frame the server takes); the connection goes on. A PING behind REQUESTs is answered
// while their handlers run: PingIsAnsweredAheadOfTheHandlersBeforeIt.
TEST_F(RpcHostileTest, PingAloneOrBehindACancelIsAnswered) {
  Watchdog wd("PingControls", 30000);
  Start();
  RawConn c(port_);
  RawFrame cancel;
  cancel.type = RPC_TYPE_CANCEL;
  cancel.id = 99;  // not in flight: ignored
  const std::string writes[] = {Ping(7).Bytes(), cancel.Bytes() + Ping(8).Bytes()};
  uint32_t id = 7;
  for (const std::string &w : writes) {
    c.Send(w);
    Got g = c.Next();
    ASSERT_TRUE(g.ok);
    EXPECT_EQ(RPC_TYPE_PONG, g.type);
    EXPECT_EQ(id++, g.id);
  }
  EXPECT_EQ(RPC_STATUS_OK, Say("still served"));
}

// ---- GOAWAY ids ------------------------------------------------------------------------------

// The GOAWAY id the server sends when it stops, after the frames in `reqs` were answered.
uint32_t GoawayIdAfter(rpc_server *s, int port, const std::vector<RawFrame> &reqs) {
  RawConn c(port);
  RawFrame ping;
  ping.type = RPC_TYPE_PING;
  c.Send(ping.Bytes());  // the server has the connection before it stops (a PING is no call)
  EXPECT_EQ(RPC_TYPE_PONG, c.Next().type);
  for (const RawFrame &f : reqs) {
    c.Send(f.Bytes());
    Got g = c.Next();
    EXPECT_TRUE(g.ok);
    EXPECT_EQ(RPC_TYPE_RESPONSE, g.type);
    EXPECT_EQ(f.id, g.id);
  }
  std::thread stop([s] { rpc_server_shutdown(s, 1000); });
  Got g = c.Next();
  EXPECT_TRUE(g.ok);
  EXPECT_EQ(RPC_TYPE_GOAWAY, g.type);
  Got e = c.Next();
  EXPECT_TRUE(e.eof);
  c.ShutWrite();
  stop.join();
  return g.id;
}

TEST_F(RpcHostileTest, GoawayIdIsTheHighestAcceptedIdAfterIdJumps) {
  Watchdog wd("GoawayIdJumps", 30000);
  Start();
  std::vector<RawFrame> reqs = {EchoFrame("Say", 1, "a"), EchoFrame("Say", 0x90000000u, "b")};
  EXPECT_EQ(0x90000000u, GoawayIdAfter(s_, port_, reqs));
}

TEST_F(RpcHostileTest, RequestsAnsweredByTheFrameworkCountAsAccepted) {
  Watchdog wd("GoawayFramework", 30000);
  Start();
  RawFrame unknown = EchoFrame("Say", 7, "x");
  unknown.method = MethodId("test.v1.Echo/Nope");  // UNIMPLEMENTED
  RawFrame garbage = EchoFrame("Say", 9, "x");
  garbage.body = std::string("\xff\xff\xff", 3);   // INVALID_ARGUMENT
  std::vector<RawFrame> reqs = {EchoFrame("Say", 3, "ok"), unknown, garbage};
  EXPECT_EQ(9u, GoawayIdAfter(s_, port_, reqs));
}

TEST_F(RpcHostileTest, NoRequestAcceptedGivesGoawayIdZero) {
  Watchdog wd("GoawayZero", 30000);
  Start();
  EXPECT_EQ(0u, GoawayIdAfter(s_, port_, {}));
}

// ---- Out of memory is not a malformed request ------------------------------------------------

struct FailBig {
  static void *Alloc(void *, size_t n) { return n >= 1024 ? nullptr : malloc(n); }
  static void Free(void *, void *p) { free(p); }
};

TEST_F(RpcHostileTest, AllocationFailureWhileUnpackingIsResourceExhausted) {
  Watchdog wd("UnpackOom", 30000);
  ProtobufCAllocator fail_big = {FailBig::Alloc, FailBig::Free, nullptr};
  rpc_server_options o = {};
  o.allocator = &fail_big;
  Start(o);
  RawConn c(port_);
  RawFrame big = EchoFrame("Say", 1, "big");
  big.body = PackedRequest("big", 0, 0, std::string(4000, 'b'));  // a 4000-byte bytes field
  c.Send(big.Bytes());
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, g.status);
  EXPECT_EQ("out of memory unpacking the request", g.body);
  RawFrame garbage = EchoFrame("Say", 2, "x");
  garbage.body = std::string("\xff\xff\xff", 3);
  c.Send(garbage.Bytes());
  g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_STATUS_INVALID_ARGUMENT, g.status);
  c.Send(EchoFrame("Say", 3, "small").Bytes());  // fits the call's arena: no allocation
  g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_STATUS_OK, g.status);
  EXPECT_EQ(3u, g.id);
}

TEST_F(RpcHostileTest, AllocatorWithoutFunctionsIsRefused) {
  ProtobufCAllocator half = {FailBig::Alloc, nullptr, nullptr};
  rpc_server_options o = {};
  o.allocator = &half;
  rpc_server *s = nullptr;
  EXPECT_EQ(-EINVAL, rpc_server_create(&s, &o));
  EXPECT_EQ(nullptr, s);
  o.allocator = nullptr;
  o.close_linger_ms = -1;
  EXPECT_EQ(-EINVAL, rpc_server_create(&s, &o));
}

// WIRE.md section 4: a proto3 string that is not UTF-8 is not refused by the framework
// (protobuf-c does not check it); the handler gets the bytes as they are.
TEST_F(RpcHostileTest, StringThatIsNotUtf8ReachesTheHandler) {
  Watchdog wd("NotUtf8", 30000);
  Start();
  RawConn c(port_);
  c.Send(EchoFrame("Say", 1, "\xff\xfe").Bytes());
  Got g = c.Next();
  ASSERT_TRUE(g.ok);
  EXPECT_EQ(RPC_STATUS_OK, g.status);
  std::lock_guard<std::mutex> lk(g_mu);
  EXPECT_EQ(1u, g_applied.count("\xff\xfe"));
}

}  // namespace

namespace {

// The fd of this process's listening TCP socket on port, or -1.
int FindListener(int port) {
  for (int fd = 0; fd < 1024; fd++) {
    int acc = 0;
    socklen_t len = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc) continue;
    sockaddr_in a = {};
    len = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0 && a.sin_family == AF_INET &&
        ntohs(a.sin_port) == port)
      return fd;
  }
  return -1;
}

// An accept error that is about the listener itself is reported and the listener closed, not
// retried every 100 ms forever; the server keeps serving its connections.
TEST_F(RpcHostileTest, BrokenListenerIsReportedNotRetried) {
  Watchdog wd("BrokenListener", 30000);
  Start();
  ASSERT_EQ(RPC_STATUS_OK, Say("before"));
  EXPECT_EQ(0, rpc_server_listen_error(s_));
  int lfd = FindListener(port_);
  ASSERT_GE(lfd, 0);
  ASSERT_EQ(0, shutdown(lfd, SHUT_RD));  // Linux: accept() now fails with EINVAL
  int err = 0;
  for (int i = 0; i < 500 && err == 0; i++) {
    err = rpc_server_listen_error(s_);
    if (err == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(-EINVAL, err);
  EXPECT_EQ(-1, FindListener(port_)) << "the broken listener was not closed";
  EXPECT_EQ(RPC_STATUS_OK, Say("after"));
}

}  // namespace
