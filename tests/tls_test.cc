// TLS and mutual TLS (issue 14): calls over "tls:" listeners and endpoints, the peer's verified
// identity in an interceptor, and every refusal: a plaintext client on a TLS port, a TLS client
// on a plaintext port, garbage, a client certificate from a foreign CA or expired, a stalled
// handshake, too many handshakes, a server certificate the client rejects, a server that cuts
// a record or closes the session, a client that cuts a record or sends a fatal alert (its held
// calls end once each, UNAVAILABLE, and the server keeps serving), and close_notify at every
// graceful end, both ways (drain, idle, GOAWAY, channel destroy). The certificates are made by the `openssl` command in
// TEST_TMPDIR when the suite starts. Runs on the automatic backend (tls_test) and on epoll
// (tls_test_epoll).
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/rpc_wire_util.h"
#include "tests/test_util.h"

// Test hook of //rpc (server_setup.c): the TLS refusals a server counted, and the last reason.
extern "C" unsigned long rpc__srv_tls_refusals(rpc_server *s, char *why, size_t why_len);

namespace {

using gaio_test::Watchdog;

std::string g_dir;  // where the certificates are

std::string P(const std::string &name) { return g_dir + "/" + name; }

std::string ReadFile(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}


class TlsEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    const char *t = getenv("TEST_TMPDIR");
    g_dir = std::string(t ? t : "/tmp") + "/tls_certs";
    ASSERT_TRUE(gaio_test::MakeTestCerts(g_dir)) << "making the test certificates failed";
  }
};
::testing::Environment *const g_env = ::testing::AddGlobalTestEnvironment(new TlsEnv);

// ---- The service --------------------------------------------------------------------------

void Reply(Test__V1__EchoReply_Closure closure, void *data, const Test__V1__EchoRequest *in) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = in->text;
  out.payload = in->payload;
  closure(&out, data);
}

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  Reply(closure, data, in);
}

// Replies after delay_ms from another thread (or earlier when cancelled).
void h_slow(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  int ms = in->delay_ms;
  std::string text = in->text;
  std::thread([=] {
    rpc_call *c = rpc_server_call(data);
    for (int i = 0; i < ms && !rpc_call_cancelled(c); i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
    out.text = const_cast<char *>(text.c_str());
    closure(&out, data);
  }).detach();
}

void h_hold(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  h_slow(s, in, closure, data);
}

void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}

Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

// ---- Authorisation by identity: only spiffe://example/ns/billing may call Echo/Say ----------

struct Seen {
  std::atomic<int> tls{0};
  std::atomic<int> ended_ok{0}, ended_unavailable{0}, ended_other{0};  // after()
  std::mutex mu;        // the workers run interceptors concurrently
  std::string subject;  // of the last call
  std::string Subject() {
    std::lock_guard<std::mutex> l(mu);
    return subject;
  }
};

int AuthBefore(void *arg, rpc_call *call, const char **message) {
  Seen *seen = static_cast<Seen *>(arg);
  rpc_peer p;
  if (rpc_call_peer(call, &p) != 0) return RPC_STATUS_UNAVAILABLE;
  seen->tls += p.tls;
  if (p.tls_subject) {
    std::lock_guard<std::mutex> l(seen->mu);
    seen->subject = p.tls_subject;
  }
  if (strcmp(rpc_call_method(call), "test.v1.Echo/Say") != 0) return RPC_STATUS_OK;
  if (rpc_peer_has_san(&p, "URI:spiffe://example/ns/billing")) return RPC_STATUS_OK;
  *message = "only spiffe://example/ns/billing may call Say";
  return RPC_STATUS_PERMISSION_DENIED;
}

// Counts how each call ended: after() runs exactly once per call.
void CountAfter(void *arg, const rpc_call *, const rpc_call_outcome *o) {
  Seen *seen = static_cast<Seen *>(arg);
  if (o->status == RPC_STATUS_OK) seen->ended_ok++;
  else if (o->status == RPC_STATUS_UNAVAILABLE) seen->ended_unavailable++;
  else seen->ended_other++;
}

// ---- Calls --------------------------------------------------------------------------------

struct Result {
  int status = -1;
  std::string message;
  std::string text;
  size_t payload = 0;
};

Result Call(rpc_channel *ch, const char *method, const std::string &text, int timeout_ms = 5000,
            const std::string &payload = "", int delay_ms = 0) {
  rpc_method m;
  EXPECT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, method));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text.c_str());
  req.delay_ms = delay_ms;
  req.payload.data = reinterpret_cast<uint8_t *>(const_cast<char *>(payload.data()));
  req.payload.len = payload.size();
  ProtobufCMessage *reply = nullptr;
  char msg[512] = "";
  Result r;
  r.status = rpc_channel_call(ch, &m, &req.base, timeout_ms, &reply, msg, sizeof msg);
  r.message = msg;
  if (reply) {
    auto *er = reinterpret_cast<Test__V1__EchoReply *>(reply);
    r.text = er->text;
    r.payload = er->payload.len;
    if (!payload.empty()) {
      EXPECT_EQ(0, memcmp(er->payload.data, payload.data(), payload.size()));
    }
    protobuf_c_message_free_unpacked(reply, nullptr);
  }
  return r;
}

rpc_tls_server_options ServerTls(int client_cert = RPC_TLS_CLIENT_CERT_REQUIRED) {
  static std::string cert, key, ca;
  cert = P("server.pem");
  key = P("server.key");
  ca = P("ca.pem");
  rpc_tls_server_options t = {};
  t.cert_file = cert.c_str();
  t.key_file = key.c_str();
  t.client_ca_file = ca.c_str();
  t.client_cert = client_cert;
  return t;
}

// Client TLS options: trust `ca`, present `who` (a certificate name, "" for none).
struct ClientTls {
  std::string ca, cert, key;
  rpc_tls_client_options o = {};
  ClientTls(const std::string &who, const std::string &ca_name = "ca") {
    ca = P(ca_name + ".pem");
    o.ca_file = ca.c_str();
    if (!who.empty()) {
      cert = P(who + ".pem");
      key = P(who + ".key");
      o.cert_file = cert.c_str();
      o.key_file = key.c_str();
    }
  }
};

class TlsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (rpc_channel *ch : chans_) EXPECT_EQ(0, rpc_channel_destroy(ch));
    rpc_server_destroy(s_);
  }

  // A started server with a TLS listener.
  void Start(rpc_tls_server_options t, unsigned workers = 2, int idle_timeout_ms = 0) {
    rpc_server_options o = {};
    o.workers = workers;
    o.idle_timeout_ms = idle_timeout_ms;
    o.max_body = 8u << 20;
    o.tls = &t;
    ASSERT_EQ(0, rpc_server_create(&s_, &o));
    ASSERT_EQ(0, rpc_server_add_service(s_, &g_service.base));
    rpc_server_interceptor ic = {AuthBefore, CountAfter, &seen_};
    ASSERT_EQ(0, rpc_server_add_interceptor(s_, &ic));
    ASSERT_EQ(0, rpc_server_listen(s_, "tls:127.0.0.1:0"));
    tls_port_ = rpc_server_port(s_);
    ASSERT_EQ(0, rpc_server_start(s_));
  }

  rpc_channel *Chan(const std::string &target, const rpc_tls_client_options *tls,
                    int wait_for_ready = 0) {
    rpc_channel_options o = {};
    o.tls = tls;
    o.wait_for_ready = wait_for_ready;
    o.connect_timeout_ms = 3000;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 100;
    o.max_body = 8u << 20;
    rpc_channel *ch = nullptr;
    EXPECT_EQ(0, rpc_channel_create(&ch, target.c_str(), &o));
    if (ch) chans_.push_back(ch);
    return ch;
  }

  std::string Tls() { return "tls:127.0.0.1:" + std::to_string(tls_port_); }

  unsigned long Refusals(std::string *why = nullptr) {
    char buf[256] = "";
    unsigned long n = rpc__srv_tls_refusals(s_, buf, sizeof buf);
    if (why) *why = buf;
    return n;
  }

  // Waits (bounded) until the server counted n refusals; returns the last reason. A refused
  // channel reconnects every 50 ms and may be refused again before the count is read: for
  // those, at_least accepts more than n (each refusal has the same reason).
  std::string WaitRefusals(unsigned long n, bool at_least = false) {
    std::string why;
    for (int i = 0; i < 500 && Refusals(&why) < n; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (at_least)
      EXPECT_LE(n, Refusals(&why));
    else
      EXPECT_EQ(n, Refusals(&why));
    return why;
  }

  rpc_server *s_ = nullptr;
  int tls_port_ = 0;
  Seen seen_;
  std::vector<rpc_channel *> chans_;
};

// A blocking TCP connection to 127.0.0.1:port.
gaio_test::UniqueFd Connect(int port) {
  gaio_test::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(0, connect(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a));
  return fd;
}

// Reads until EOF or a reset, for at most ms. Returns true when the server closed.
bool ClosedWithin(int fd, int ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
  return false;
}

// ---- Calls over mutual TLS, and the identity ----------------------------------------------

TEST_F(TlsTest, MutualTlsCallCarriesTheVerifiedIdentity) {
  Watchdog wd("MutualTlsCallCarriesTheVerifiedIdentity", 30000);
  Start(ServerTls());
  ClientTls billing("billing");
  rpc_channel *ch = Chan(Tls(), &billing.o);
  Result r = Call(ch, "Say", "hello");
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
  EXPECT_EQ("hello", r.text);
  EXPECT_EQ(1, seen_.tls.load());
  EXPECT_EQ("CN=billing", seen_.Subject());
  EXPECT_EQ(0u, Refusals());
}

TEST_F(TlsTest, InterceptorAuthorisesBySan) {
  Watchdog wd("InterceptorAuthorisesBySan", 30000);
  Start(ServerTls());
  ClientTls other("other");
  rpc_channel *ch = Chan(Tls(), &other.o);
  Result r = Call(ch, "Say", "may I?");
  EXPECT_EQ(RPC_STATUS_PERMISSION_DENIED, r.status);
  EXPECT_EQ("only spiffe://example/ns/billing may call Say", r.message);
  // Another method is open to any verified client.
  r = Call(ch, "Fail", "no", 5000, "", 0);
  EXPECT_EQ(RPC_STATUS_UNKNOWN, r.status);  // Fail with code 0: UNKNOWN
  EXPECT_EQ("CN=other", seen_.Subject());
}

TEST_F(TlsTest, OptionalClientCertGivesNoIdentity) {
  Watchdog wd("OptionalClientCertGivesNoIdentity", 30000);
  Start(ServerTls(RPC_TLS_CLIENT_CERT_OPTIONAL));
  ClientTls anon("");
  rpc_channel *ch = Chan(Tls(), &anon.o);
  Result r = Call(ch, "Say", "anyone");
  EXPECT_EQ(RPC_STATUS_PERMISSION_DENIED, r.status);
  EXPECT_EQ(1, seen_.tls.load());
  EXPECT_EQ("", seen_.Subject());
}

TEST_F(TlsTest, PemInMemoryAndHostNameFromTheTarget) {
  Watchdog wd("PemInMemoryAndHostNameFromTheTarget", 30000);
  std::string cert = ReadFile(P("server.pem")), key = ReadFile(P("server.key"));
  std::string ca = ReadFile(P("ca.pem"));
  rpc_tls_server_options t = {};
  t.cert_pem = cert.c_str();
  t.key_pem = key.c_str();
  t.client_ca_pem = ca.c_str();
  t.client_cert = RPC_TLS_CLIENT_CERT_REQUIRED;
  Start(t);
  std::string ccert = ReadFile(P("billing.pem")), ckey = ReadFile(P("billing.key"));
  rpc_tls_client_options c = {};
  c.ca_pem = ca.c_str();
  c.cert_pem = ccert.c_str();
  c.key_pem = ckey.c_str();
  // "localhost" is checked against the server's DNS SAN and sent as SNI.
  rpc_channel *ch = Chan("localhost:" + std::to_string(tls_port_), &c);
  Result r = Call(ch, "Say", "pem");
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
}

TEST_F(TlsTest, LargeMessagesCrossRecordBoundaries) {
  Watchdog wd("LargeMessagesCrossRecordBoundaries", 60000);
  Start(ServerTls());
  ClientTls billing("billing");
  rpc_channel *ch = Chan(Tls(), &billing.o);
  std::string big(1u << 20, '\0');
  for (size_t i = 0; i < big.size(); i++) big[i] = char(i * 131 + (i >> 11));
  for (int i = 0; i < 3; i++) {
    Result r = Call(ch, "Say", "big", 20000, big);
    EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
    EXPECT_EQ(big.size(), r.payload);
  }
}

// Many calls in flight on one connection, large and small replies mixed: the server seals a
// batch's replies into one buffer of records, and its ciphertext reads grow while they come
// full (then shrink back). Every reply must come back once, with its own bytes.
TEST_F(TlsTest, PipelinedLargeAndSmallRepliesKeepTheirBytes) {
  Watchdog wd("PipelinedLargeAndSmallRepliesKeepTheirBytes", 60000);
  Start(ServerTls());
  ClientTls billing("billing");
  rpc_channel *ch = Chan(Tls(), &billing.o);
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  const size_t kCalls = 96, kSizes[] = {0, 100, 16384, 16403, 40000, 300000};
  std::vector<std::string> payloads(kCalls), texts(kCalls);
  for (size_t i = 0; i < kCalls; i++) {
    payloads[i].resize(kSizes[i % 6]);
    for (size_t k = 0; k < payloads[i].size(); k++) payloads[i][k] = char(i * 7 + k * 13 + (k >> 9));
    texts[i] = "call " + std::to_string(i);
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.text = const_cast<char *>(texts[i].c_str());
    req.payload.data = reinterpret_cast<uint8_t *>(&payloads[i][0]);
    req.payload.len = payloads[i].size();
    ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, 30000, cq, reinterpret_cast<void *>(i), nullptr));
  }
  std::vector<int> seen(kCalls);
  size_t done = 0;
  rpc_completion out[64];
  while (done < kCalls) {
    int n = rpc_cq_wait(cq, out, 64, 30000);
    ASSERT_GT(n, 0);
    for (int j = 0; j < n; j++) {
      size_t i = reinterpret_cast<size_t>(out[j].ctx);
      ASSERT_LT(i, kCalls);
      seen[i]++;
      EXPECT_EQ(RPC_STATUS_OK, out[j].status) << out[j].message;
      auto *r = reinterpret_cast<Test__V1__EchoReply *>(out[j].reply);
      if (r) {
        EXPECT_EQ(texts[i], r->text);
        EXPECT_EQ(payloads[i], std::string(reinterpret_cast<char *>(r->payload.data), r->payload.len))
            << "call " << i;
        protobuf_c_message_free_unpacked(out[j].reply, nullptr);
      }
    }
    done += size_t(n);
  }
  for (size_t i = 0; i < kCalls; i++) EXPECT_EQ(1, seen[i]) << "call " << i;
  // The connection still serves after its buffers shrank back.
  Result r = Call(ch, "Say", "after");
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
  rpc_cq_destroy(cq);
}

TEST_F(TlsTest, ManyConcurrentConnections) {
  Watchdog wd("ManyConcurrentConnections", 120000);
  Start(ServerTls());
  ClientTls billing("billing");
  const int kChannels = 16, kCalls = 50;
  std::vector<rpc_channel *> chs;
  for (int i = 0; i < kChannels; i++) chs.push_back(Chan(Tls(), &billing.o));
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  for (int k = 0; k < kCalls; k++)
    for (int i = 0; i < kChannels; i++) {
      std::string text = std::to_string(i) + "/" + std::to_string(k);
      Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
      req.text = const_cast<char *>(text.c_str());
      ASSERT_EQ(0, rpc_channel_submit(chs[size_t(i)], &m, &req.base, 20000, cq, nullptr, nullptr));
    }
  int ok = 0, done = 0;
  rpc_completion out[64];
  while (done < kChannels * kCalls) {
    int n = rpc_cq_wait(cq, out, 64, 30000);
    ASSERT_GT(n, 0);
    for (int j = 0; j < n; j++) {
      ok += out[j].status == RPC_STATUS_OK;
      if (out[j].reply) protobuf_c_message_free_unpacked(out[j].reply, nullptr);
    }
    done += n;
  }
  EXPECT_EQ(kChannels * kCalls, ok);
  for (rpc_channel *ch : chans_) EXPECT_EQ(0, rpc_channel_destroy(ch));
  chans_.clear();
  rpc_cq_destroy(cq);
}

TEST_F(TlsTest, DeadlineCancelAndGoawayOverTls) {
  Watchdog wd("DeadlineCancelAndGoawayOverTls", 60000);
  Start(ServerTls());
  ClientTls billing("billing");
  rpc_channel *ch = Chan(Tls(), &billing.o);
  Result r = Call(ch, "Slow", "late", 100, "", 3000);
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, r.status);
  // Cancel.
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Slow"));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("cancel me");
  req.delay_ms = 3000;
  uint64_t id = 0;
  ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, 10000, cq, nullptr, &id));
  ASSERT_EQ(0, rpc_channel_cancel(ch, id));
  rpc_completion c;
  ASSERT_EQ(1, rpc_cq_wait(cq, &c, 1, 10000));
  EXPECT_EQ(RPC_STATUS_CANCELLED, c.status);
  // GOAWAY: a call in flight at shutdown is answered, then the server is gone.
  req.text = const_cast<char *>("drained");
  req.delay_ms = 200;
  ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, 10000, cq, nullptr, &id));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the call reaches the server
  EXPECT_EQ(0, rpc_server_shutdown(s_, 5000));
  ASSERT_EQ(1, rpc_cq_wait(cq, &c, 1, 10000));
  EXPECT_EQ(RPC_STATUS_OK, c.status) << c.message;
  if (c.reply) protobuf_c_message_free_unpacked(c.reply, nullptr);
  r = Call(ch, "Say", "after", 2000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_EQ(0, rpc_channel_destroy(ch));
  chans_.clear();
  rpc_cq_destroy(cq);
}

// ---- Refusals: a clear reason, and the server keeps serving -------------------------------

TEST_F(TlsTest, PlaintextClientOnTlsPortIsRefused) {
  Watchdog wd("PlaintextClientOnTlsPortIsRefused", 30000);
  Start(ServerTls());
  rpc_channel *plain = Chan("127.0.0.1:" + std::to_string(tls_port_), nullptr);
  Result r = Call(plain, "Say", "clear text", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status) << r.message;
  std::string why = WaitRefusals(1, true);
  EXPECT_NE(std::string::npos, why.find("TLS handshake failed")) << why;
  ClientTls billing("billing");
  EXPECT_EQ(RPC_STATUS_OK, Call(Chan(Tls(), &billing.o), "Say", "still here").status);
}

TEST_F(TlsTest, GarbageHandshakeIsRefused) {
  Watchdog wd("GarbageHandshakeIsRefused", 30000);
  Start(ServerTls());
  gaio_test::UniqueFd fd = Connect(tls_port_);
  std::string junk(300, '\x16');  // a handshake record type, then nonsense
  for (size_t i = 1; i < junk.size(); i++) junk[i] = char(i * 7);
  ASSERT_EQ(ssize_t(junk.size()), send(fd.get(), junk.data(), junk.size(), MSG_NOSIGNAL));
  EXPECT_TRUE(ClosedWithin(fd.get(), 5000));
  std::string why = WaitRefusals(1);
  EXPECT_NE(std::string::npos, why.find("TLS handshake failed")) << why;
  ClientTls billing("billing");
  EXPECT_EQ(RPC_STATUS_OK, Call(Chan(Tls(), &billing.o), "Say", "still here").status);
}

TEST_F(TlsTest, TlsClientOnPlaintextPortFailsUnavailable) {
  Watchdog wd("TlsClientOnPlaintextPortFailsUnavailable", 30000);
  rpc_server_options o = {};
  ASSERT_EQ(0, rpc_server_create(&s_, &o));
  ASSERT_EQ(0, rpc_server_add_service(s_, &g_service.base));
  ASSERT_EQ(0, rpc_server_listen(s_, "127.0.0.1:0"));
  ASSERT_EQ(0, rpc_server_start(s_));
  ClientTls billing("billing");
  rpc_channel *ch = Chan("127.0.0.1:" + std::to_string(rpc_server_port(s_)), &billing.o);
  Result r = Call(ch, "Say", "hello?", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_NE(std::string::npos, r.message.find("TLS")) << r.message;
  rpc_channel *plain = Chan("127.0.0.1:" + std::to_string(rpc_server_port(s_)), nullptr);
  EXPECT_EQ(RPC_STATUS_OK, Call(plain, "Say", "plain works").status);
}

TEST_F(TlsTest, ClientCertFromForeignCaIsRefused) {
  Watchdog wd("ClientCertFromForeignCaIsRefused", 30000);
  Start(ServerTls());
  ClientTls foreign("foreign");
  Result r = Call(Chan(Tls(), &foreign.o), "Say", "let me in", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_NE(std::string::npos, r.message.find("unknown ca")) << r.message;
  std::string why = WaitRefusals(1, true);
  EXPECT_NE(std::string::npos, why.find("certificate verify failed")) << why;
  ClientTls billing("billing");
  EXPECT_EQ(RPC_STATUS_OK, Call(Chan(Tls(), &billing.o), "Say", "still here").status);
}

TEST_F(TlsTest, ExpiredClientCertIsRefused) {
  Watchdog wd("ExpiredClientCertIsRefused", 30000);
  Start(ServerTls());
  ClientTls expired("expired");
  Result r = Call(Chan(Tls(), &expired.o), "Say", "old", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  std::string why = WaitRefusals(1, true);
  EXPECT_NE(std::string::npos, why.find("certificate has expired")) << why;
}

TEST_F(TlsTest, MissingClientCertIsRefusedWhenRequired) {
  Watchdog wd("MissingClientCertIsRefusedWhenRequired", 30000);
  Start(ServerTls());
  ClientTls anon("");
  Result r = Call(Chan(Tls(), &anon.o), "Say", "anon", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  std::string why = WaitRefusals(1, true);
  EXPECT_NE(std::string::npos, why.find("certificate")) << why;
}

TEST_F(TlsTest, ClientRejectsServerCertWithTheVerifyReason) {
  Watchdog wd("ClientRejectsServerCertWithTheVerifyReason", 30000);
  Start(ServerTls());
  ClientTls wrong_ca("billing", "foreign_ca");
  Result r = Call(Chan(Tls(), &wrong_ca.o), "Say", "who are you", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_NE(std::string::npos, r.message.find("certificate verify failed")) << r.message;
  // OpenSSL's verification reason: the chain ends at a CA this client does not trust.
  EXPECT_NE(std::string::npos, r.message.find("self-signed certificate in certificate chain")) << r.message;
  // The name is checked too.
  ClientTls billing("billing");
  billing.o.server_name = "billing.example";
  r = Call(Chan(Tls(), &billing.o), "Say", "name", 3000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_NE(std::string::npos, r.message.find("hostname mismatch")) << r.message;
}

TEST_F(TlsTest, StalledHandshakeTimesOut) {
  Watchdog wd("StalledHandshakeTimesOut", 30000);
  rpc_tls_server_options t = ServerTls();
  t.handshake_timeout_ms = 200;
  Start(t);
  gaio_test::UniqueFd fd = Connect(tls_port_);
  EXPECT_TRUE(ClosedWithin(fd.get(), 5000));
  EXPECT_EQ("TLS handshake timed out", WaitRefusals(1));
  ClientTls billing("billing");
  EXPECT_EQ(RPC_STATUS_OK, Call(Chan(Tls(), &billing.o), "Say", "still here").status);
}

TEST_F(TlsTest, HandshakesInProgressAreBounded) {
  Watchdog wd("HandshakesInProgressAreBounded", 30000);
  rpc_tls_server_options t = ServerTls();
  t.max_handshakes = 2;
  Start(t);
  std::vector<gaio_test::UniqueFd> fds;
  for (int i = 0; i < 3; i++) fds.push_back(Connect(tls_port_));
  EXPECT_EQ("too many TLS handshakes in progress", WaitRefusals(1));
  int closed = 0;
  for (auto &fd : fds) closed += ClosedWithin(fd.get(), 300);
  EXPECT_EQ(1, closed);
  fds.clear();  // the stalled ones go: handshakes can start again
  ClientTls billing("billing");
  Result r = Call(Chan(Tls(), &billing.o, 1), "Say", "room again", 5000);
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
}

TEST_F(TlsTest, UnixListenerStaysPlainWithPeerCred) {
  Watchdog wd("UnixListenerStaysPlainWithPeerCred", 30000);
  rpc_tls_server_options t = ServerTls();
  rpc_server_options o = {};
  o.tls = &t;
  ASSERT_EQ(0, rpc_server_create(&s_, &o));
  ASSERT_EQ(0, rpc_server_add_service(s_, &g_service.base));
  EXPECT_EQ(-EINVAL, rpc_server_listen(s_, "tls:unix:/tmp/x.sock"));
  std::string path = "/tmp/gaio_tls_test_" + std::to_string(getpid()) + ".sock";
  ASSERT_EQ(0, rpc_server_listen(s_, ("unix:" + path).c_str()));
  ASSERT_EQ(0, rpc_server_start(s_));
  ClientTls billing("billing");
  // The channel's TLS options apply to TCP endpoints only.
  Result r = Call(Chan("unix:" + path, &billing.o), "Say", "local");
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.message;
}

// A one-connection TLS server written with OpenSSL directly (blocking, on its own thread): it
// completes the handshake, reads the client's request (unless read_request is false), then
// ends the session its own way. It sends no session ticket: nothing the client has not asked
// for is left unread.
class FakeTlsServer {
 public:
  explicit FakeTlsServer(std::function<void(SSL *, int)> end, bool read_request = true)
      : end_(std::move(end)) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    EXPECT_EQ(1, SSL_CTX_use_certificate_chain_file(ctx_, P("server.pem").c_str()));
    EXPECT_EQ(1, SSL_CTX_use_PrivateKey_file(ctx_, P("server.key").c_str(), SSL_FILETYPE_PEM));
    SSL_CTX_set_num_tickets(ctx_, 0);
    EXPECT_TRUE(listener_.ok());
    th_ = std::thread([this, read_request] {
      gaio_test::UniqueFd fd = listener_.Accept();
      timeval tv = {10, 0};  // a read that hangs fails the test instead of the watchdog
      setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL *ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd.get());
      char buf[256];
      if (SSL_accept(ssl) == 1 && (!read_request || SSL_read(ssl, buf, sizeof buf) > 0))
        end_(ssl, fd.get());
      SSL_free(ssl);
    });
  }
  ~FakeTlsServer() {
    th_.join();
    SSL_CTX_free(ctx_);
  }
  int port() const { return listener_.port(); }

 private:
  std::function<void(SSL *, int)> end_;
  SSL_CTX *ctx_;
  gaio_test::Listener listener_;
  std::thread th_;
};

TEST_F(TlsTest, RecordCutMidwayEndsTheCallOnce) {
  Watchdog wd("RecordCutMidwayEndsTheCallOnce", 30000);
  FakeTlsServer fake([](SSL *, int fd) {
    // An application-data record header announcing 100 bytes, then 10 of them, then the end.
    const unsigned char cut[15] = {0x17, 0x03, 0x03, 0x00, 0x64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    EXPECT_EQ(15, send(fd, cut, sizeof cut, MSG_NOSIGNAL));
    shutdown(fd, SHUT_WR);
  });
  ClientTls billing("billing");
  rpc_channel *ch = Chan("tls:127.0.0.1:" + std::to_string(fake.port()), &billing.o);
  Result r = Call(ch, "Say", "cut", 5000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_EQ("127.0.0.1:" + std::to_string(fake.port()) + ": connection closed by the server",
            r.message);
}

TEST_F(TlsTest, CloseNotifyFromThePeerEndsTheCallOnce) {
  Watchdog wd("CloseNotifyFromThePeerEndsTheCallOnce", 30000);
  FakeTlsServer fake([](SSL *ssl, int) { SSL_shutdown(ssl); });
  ClientTls billing("billing");
  rpc_channel *ch = Chan("tls:127.0.0.1:" + std::to_string(fake.port()), &billing.o);
  Result r = Call(ch, "Say", "bye", 5000);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_EQ("127.0.0.1:" + std::to_string(fake.port()) + ": connection closed by the server",
            r.message);
}

// A client written with OpenSSL directly (blocking): it completes a mutual-TLS handshake as
// "billing", sends whole records, and can then misbehave at the record layer.
class RawTlsClient {
 public:
  explicit RawTlsClient(int port) : fd_(Connect(port)) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    EXPECT_EQ(1, SSL_CTX_load_verify_locations(ctx_, P("ca.pem").c_str(), nullptr));
    EXPECT_EQ(1, SSL_CTX_use_certificate_chain_file(ctx_, P("billing.pem").c_str()));
    EXPECT_EQ(1, SSL_CTX_use_PrivateKey_file(ctx_, P("billing.key").c_str(), SSL_FILETYPE_PEM));
    static const unsigned char alpn[] = "\x08" RPC_TLS_ALPN;
    EXPECT_EQ(0, SSL_CTX_set_alpn_protos(ctx_, alpn, sizeof alpn - 1));
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_.get());
    EXPECT_EQ(1, SSL_connect(ssl_)) << ERR_reason_error_string(ERR_get_error());
  }
  ~RawTlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  void Send(const std::string &b) {
    EXPECT_EQ(int(b.size()), SSL_write(ssl_, b.data(), int(b.size())));
  }
  // The records of b, encrypted but not sent.
  std::string Seal(const std::string &b) {
    BIO *mem = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl_, mem);  // the socket stays the read side
    EXPECT_EQ(int(b.size()), SSL_write(ssl_, b.data(), int(b.size())));
    char *p = nullptr;
    long n = BIO_get_mem_data(mem, &p);
    return std::string(p, size_t(n));
  }
  // Makes OpenSSL send a fatal alert of its own (bad_record_mac, encrypted under the session's
  // keys): it is handed an application-data record that does not decrypt.
  void SendFatalAlert() {
    std::string bogus = {'\x17', '\x03', '\x03', '\x00', '\x20'};
    bogus.append(32, '\x5a');
    BIO *mem = BIO_new_mem_buf(bogus.data(), int(bogus.size()));
    SSL_set0_rbio(ssl_, mem);  // the socket stays the write side, where the alert goes
    char buf[64];
    EXPECT_GT(0, SSL_read(ssl_, buf, sizeof buf));
    EXPECT_EQ(SSL_ERROR_SSL, SSL_get_error(ssl_, -1));
    ERR_clear_error();
  }
  // Reads the plaintext into *plain until SSL_read() ends, for at most 10 s. Returns how it
  // ended: SSL_ERROR_ZERO_RETURN when the server sent close_notify.
  int ReadToEnd(std::string *plain) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    timeval tv = {10, 0};
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (;;) {
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        plain->append(buf, size_t(n));
        continue;
      }
      int e = SSL_get_error(ssl_, n);
      ERR_clear_error();
      // With SO_RCVTIMEO, recv() can fail EINTR instead of restarting; OpenSSL says WANT_READ.
      // Seen on the io_uring backend before //rpc's watchers were one_thread, on a thread that
      // had entered a ring's loop (gaio.h, BACKENDS); kept as a guard for any other cause.
      if (e == SSL_ERROR_WANT_READ && errno == EINTR && std::chrono::steady_clock::now() < end)
        continue;
      return e;
    }
  }
  // Sends close_notify (the first half of SSL_shutdown(): no wait for the server's).
  void SendCloseNotify() { EXPECT_LE(0, SSL_shutdown(ssl_)); }
  int fd() const { return fd_.get(); }

 private:
  gaio_test::UniqueFd fd_;
  SSL_CTX *ctx_ = nullptr;
  SSL *ssl_ = nullptr;
};

// The frames of plaintext bytes, as "TYPE id" strings (RESPONSE bodies left out, GOAWAY
// reasons kept): "RESPONSE 1", "GOAWAY 1 server shutting down". Bytes that do not parse end
// the list with "garbage".
std::vector<std::string> Frames(const std::string &plain) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < plain.size()) {
    rpc_frame f;
    int n = rpc_frame_parse(reinterpret_cast<const uint8_t *>(plain.data()) + at,
                            plain.size() - at, 1u << 20, &f);
    if (n <= 0) {
      out.push_back("garbage");
      break;
    }
    std::string s = f.type == RPC_TYPE_RESPONSE ? "RESPONSE" : f.type == RPC_TYPE_GOAWAY ? "GOAWAY" : "other";
    s += " " + std::to_string(f.request_id);
    if (f.type == RPC_TYPE_GOAWAY) s += " " + std::string(reinterpret_cast<const char *>(f.body), f.body_len);
    out.push_back(s);
    at += size_t(n);
  }
  return out;
}

// Two calls that hold (Hold: up to 5 s, until cancelled) reach the server over c.
void HoldTwo(RawTlsClient *c, Seen *seen) {
  c->Send(rpc_test::EchoFrame("Hold", 1, "one", 5000).Bytes() +
          rpc_test::EchoFrame("Hold", 3, "two", 5000).Bytes());
  for (int i = 0; i < 500 && seen->tls.load() < 2; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(2, seen->tls.load());
}

// Both held calls end exactly once, UNAVAILABLE (the connection went away: nothing is sent),
// and the server keeps serving.
void ExpectBothEndedOnceAndServing(Seen *seen, rpc_channel *good) {
  for (int i = 0; i < 500 && seen->ended_unavailable.load() < 2; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(RPC_STATUS_OK, Call(good, "Say", "still here").status);
  EXPECT_EQ(2, seen->ended_unavailable.load());
  EXPECT_EQ(1, seen->ended_ok.load());  // the good call only
  EXPECT_EQ(0, seen->ended_other.load());
}

TEST_F(TlsTest, ClientRecordCutMidwayEndsItsCallsOnceEach) {
  Watchdog wd("ClientRecordCutMidwayEndsItsCallsOnceEach", 30000);
  Start(ServerTls());
  RawTlsClient c(tls_port_);
  HoldTwo(&c, &seen_);
  // A real record of a third request, cut in the middle, then the end of the stream.
  std::string rec = c.Seal(rpc_test::EchoFrame("Say", 5, "cut").Bytes());
  ASSERT_GT(rec.size(), 10u);
  ASSERT_EQ(ssize_t(rec.size() / 2), send(c.fd(), rec.data(), rec.size() / 2, MSG_NOSIGNAL));
  shutdown(c.fd(), SHUT_WR);
  EXPECT_TRUE(ClosedWithin(c.fd(), 5000));
  ClientTls billing("billing");
  ExpectBothEndedOnceAndServing(&seen_, Chan(Tls(), &billing.o));
  EXPECT_EQ(0u, Refusals());  // the handshake had succeeded: not a refusal
}

TEST_F(TlsTest, AlertFromTheClientEndsItsCallsOnceEach) {
  Watchdog wd("AlertFromTheClientEndsItsCallsOnceEach", 30000);
  Start(ServerTls());
  RawTlsClient c(tls_port_);
  HoldTwo(&c, &seen_);
  c.SendFatalAlert();
  EXPECT_TRUE(ClosedWithin(c.fd(), 5000));  // the server ends the connection, unasked
  ClientTls billing("billing");
  ExpectBothEndedOnceAndServing(&seen_, Chan(Tls(), &billing.o));
}

// ---- close_notify: a graceful end is a clean end of the TLS stream ------------------------

// A Say call (id 1) over c, answered (its after() ran) before this returns.
void SayAnswered(RawTlsClient *c, Seen *seen, const char *text) {
  c->Send(rpc_test::EchoFrame("Say", 1, text).Bytes());
  for (int i = 0; i < 500 && seen->ended_ok.load() < 1; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(1, seen->ended_ok.load());
}

// A Say call answered, then the client's close_notify and FIN: the frames the server sent,
// read up to its own close_notify (which must come).
std::vector<std::string> SayThenCloseNotify(RawTlsClient *c, Seen *seen, const char *text) {
  SayAnswered(c, seen, text);
  c->SendCloseNotify();
  shutdown(c->fd(), SHUT_WR);
  std::string plain;
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, c->ReadToEnd(&plain));
  return Frames(plain);
}

// The server's drain: the reply, the GOAWAY, then close_notify before the half-close (an
// OpenSSL 3 peer otherwise reads "unexpected eof while reading").
TEST_F(TlsTest, DrainEndsWithCloseNotifyAfterTheGoaway) {
  Watchdog wd("DrainEndsWithCloseNotifyAfterTheGoaway", 30000);
  Start(ServerTls());
  RawTlsClient c(tls_port_);
  SayAnswered(&c, &seen_, "last");
  std::thread shut([this] { EXPECT_EQ(0, rpc_server_shutdown(s_, 1000)); });
  std::string plain;
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, c.ReadToEnd(&plain));
  EXPECT_EQ((std::vector<std::string>{"RESPONSE 1", "GOAWAY 1 server shutting down"}), Frames(plain));
  shutdown(c.fd(), SHUT_WR);  // the server's linger ends at our FIN
  shut.join();
}

TEST_F(TlsTest, IdleCloseEndsWithCloseNotify) {
  Watchdog wd("IdleCloseEndsWithCloseNotify", 30000);
  Start(ServerTls(), 2, 200);
  RawTlsClient c(tls_port_);
  std::string plain;
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, c.ReadToEnd(&plain));
  EXPECT_EQ((std::vector<std::string>{"GOAWAY 0 idle timeout"}), Frames(plain));
}

// A protocol error ends the connection gracefully at the TLS layer (the stream is whole): the
// GOAWAY, then close_notify.
TEST_F(TlsTest, ProtocolErrorGoawayIsFollowedByCloseNotify) {
  Watchdog wd("ProtocolErrorGoawayIsFollowedByCloseNotify", 30000);
  Start(ServerTls());
  RawTlsClient c(tls_port_);
  c.Send(std::string(RPC_FRAME_HEADER_SIZE, 'x'));  // no magic: a frame that does not parse
  std::string plain;
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, c.ReadToEnd(&plain));
  EXPECT_EQ((std::vector<std::string>{"GOAWAY 0 protocol error"}), Frames(plain));
}

// The handshake timer gives way to the idle timeout once the handshake is done: with no idle
// timeout, a connection quiet past the handshake timeout stays open (it was closed as idle).
TEST_F(TlsTest, HandshakeTimeoutDoesNotCloseAQuietConnection) {
  Watchdog wd("HandshakeTimeoutDoesNotCloseAQuietConnection", 30000);
  rpc_tls_server_options t = ServerTls();
  t.handshake_timeout_ms = 100;
  Start(t, 2, -1);
  RawTlsClient c(tls_port_);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the handshake timeout
  EXPECT_EQ((std::vector<std::string>{"RESPONSE 1"}), SayThenCloseNotify(&c, &seen_, "still open"));
}

// The peer's close_notify, then its FIN: a clean close by the peer (as a plaintext FIN), and
// the server answers with its own close_notify.
TEST_F(TlsTest, CloseNotifyFromTheClientIsACleanPeerClose) {
  Watchdog wd("CloseNotifyFromTheClientIsACleanPeerClose", 30000);
  Start(ServerTls());
  RawTlsClient c(tls_port_);
  EXPECT_EQ((std::vector<std::string>{"RESPONSE 1"}), SayThenCloseNotify(&c, &seen_, "bye"));
  rpc_server_stats st = {};
  for (int i = 0; i < 500; i++) {
    ASSERT_EQ(0, rpc_server_get_stats(s_, &st));
    uint64_t closed = 0;
    for (uint64_t n : st.connections_closed) closed += n;
    if (closed > 0) break;
    rpc_server_stats_free(&st);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(1u, st.connections_closed[RPC_CLOSE_PEER]);
  EXPECT_EQ(0u, st.connections_closed[RPC_CLOSE_ERROR]);
  EXPECT_EQ(0u, st.connections_closed[RPC_CLOSE_PROTOCOL]);
  rpc_server_stats_free(&st);
  EXPECT_EQ(0u, Refusals());
}

// The fake server's next read: SSL_ERROR_ZERO_RETURN when the channel sent close_notify (-2:
// bytes came instead).
int ReadEnd(SSL *ssl) {
  char buf[64];
  int n = SSL_read(ssl, buf, sizeof buf);
  int e = n > 0 ? -2 : SSL_get_error(ssl, n);
  ERR_clear_error();
  return e;
}

// Waits (at most 5 s) until v is set (no longer -1); returns it.
int WaitSet(const std::atomic<int> &v) {
  for (int i = 0; i < 1000 && v.load() == -1; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return v.load();
}

// The channel's end of a connection: destroyed with nothing in flight, the channel sends
// close_notify before it closes. The server (OpenSSL directly) speaks no frame at all.
TEST_F(TlsTest, ChannelDestroySendsCloseNotify) {
  Watchdog wd("ChannelDestroySendsCloseNotify", 30000);
  std::atomic<int> accepted{-1}, ended{-1};
  FakeTlsServer fake(
      [&](SSL *ssl, int) {
        accepted = 1;
        ended = ReadEnd(ssl);
      },
      false);
  ClientTls billing("billing");
  rpc_channel *ch = Chan("tls:127.0.0.1:" + std::to_string(fake.port()), &billing.o);
  ASSERT_EQ(1, WaitSet(accepted));
  EXPECT_EQ(0, rpc_channel_destroy(ch));
  chans_.clear();
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, WaitSet(ended));
}

// After a GOAWAY the channel closes the drained connection itself (its graceful end, with no
// call in flight): close_notify first. The server sends the GOAWAY as its only frame.
TEST_F(TlsTest, ChannelClosingAfterGoawaySendsCloseNotify) {
  Watchdog wd("ChannelClosingAfterGoawaySendsCloseNotify", 30000);
  std::atomic<int> ended{-1};
  FakeTlsServer fake(
      [&](SSL *ssl, int) {
        rpc_test::RawFrame g;
        g.type = RPC_TYPE_GOAWAY;
        g.id = 0;
        g.body = "bye";
        std::string b = g.Bytes();
        EXPECT_EQ(int(b.size()), SSL_write(ssl, b.data(), int(b.size())));
        ended = ReadEnd(ssl);
      },
      false);
  ClientTls billing("billing");
  Chan("tls:127.0.0.1:" + std::to_string(fake.port()), &billing.o);
  EXPECT_EQ(SSL_ERROR_ZERO_RETURN, WaitSet(ended));
}

TEST(TlsOptions, BadOptionsAreRefusedClearly) {
  rpc_server *s = nullptr;
  rpc_server_options o = {};
  rpc_tls_server_options t = {};
  o.tls = &t;
  EXPECT_EQ(-EINVAL, rpc_server_create(&s, &o));  // no certificate
  std::string cert = P("server.pem"), key = P("server.key"), other = P("billing.key");
  std::string missing = P("missing.pem"), garbage = P("ca.cnf");
  t.cert_file = cert.c_str();
  t.key_file = key.c_str();
  t.client_cert = RPC_TLS_CLIENT_CERT_REQUIRED;
  EXPECT_EQ(-EINVAL, rpc_server_create(&s, &o));  // mTLS without a client CA
  t.client_cert = RPC_TLS_CLIENT_CERT_NONE;
  t.key_file = other.c_str();
  EXPECT_EQ(-EBADMSG, rpc_server_create(&s, &o));  // the key of another certificate
  t.key_file = missing.c_str();
  EXPECT_EQ(-ENOENT, rpc_server_create(&s, &o));
  t.key_file = key.c_str();
  t.cert_file = garbage.c_str();
  EXPECT_EQ(-EBADMSG, rpc_server_create(&s, &o));
  t.cert_file = cert.c_str();
  ASSERT_EQ(0, rpc_server_create(&s, &o));
  rpc_server_destroy(s);
  // "tls:" without TLS options.
  ASSERT_EQ(0, rpc_server_create(&s, nullptr));
  EXPECT_EQ(-EINVAL, rpc_server_listen(s, "tls:127.0.0.1:0"));
  rpc_server_destroy(s);
  rpc_channel *ch = nullptr;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "tls:unix:/tmp/x", nullptr));
  rpc_tls_client_options c = {};
  c.ca_file = missing.c_str();
  rpc_channel_options co = {};
  co.tls = &c;
  EXPECT_EQ(-ENOENT, rpc_channel_create(&ch, "127.0.0.1:1", &co));
}

}  // namespace
