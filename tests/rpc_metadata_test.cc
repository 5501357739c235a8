// Call metadata and interceptors (issue 11, rpc/WIRE.md section 13): request headers and
// response trailers through every way of calling (blocking, async, stubs), their limits and
// malformed blocks on the wire, server interceptors (refusal, order, after() exactly once
// whatever ends the call), the peer and the method, client interceptors, bearer-token auth and
// W3C trace propagation over two hops. The suite runs on the automatic backend
// (rpc_metadata_test) and on epoll (rpc_metadata_test_epoll).
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/rpc_wire_util.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Watchdog;
using rpc_test::EchoFrame;
using rpc_test::Got;
using rpc_test::MethodId;
using rpc_test::PackedRequest;
using rpc_test::RawConn;
using rpc_test::RawFrame;

// ---- Metadata as the tests write it: an ordered list of key/value strings -------------------

using Md = std::pair<std::string, std::string>;
using MdList = std::vector<Md>;

// rpc_md views of l (valid as long as l is).
std::vector<rpc_md> View(const MdList &l) {
  std::vector<rpc_md> v;
  for (const Md &m : l) v.push_back(rpc_md{m.first.data(), m.first.size(), m.second.data(), m.second.size()});
  return v;
}

MdList FromView(const rpc_metadata *md) {
  MdList l;
  size_t pos = 0;
  rpc_md e;
  while (md && rpc_metadata_next(md, &pos, &e))
    l.emplace_back(std::string(e.key, e.key_len),
                   std::string(static_cast<const char *>(e.value), e.value_len));
  return l;
}

// The block (prefix and entries) of l, as a sender writes it.
std::string Block(const MdList &l) {
  std::vector<rpc_md> v = View(l);
  size_t n = rpc_metadata_size(v.data(), v.size());
  EXPECT_GT(n, 0u);
  std::string out(n, '\0');
  EXPECT_EQ(long(n), rpc_metadata_encode(v.data(), v.size(), reinterpret_cast<uint8_t *>(&out[0]), n));
  return out;
}

std::string Le32(uint32_t v) {
  char b[4] = {char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
  return std::string(b, 4);
}

// n headers "k<i>: v<i>".
MdList Numbered(int n) {
  MdList l;
  for (int i = 0; i < n; i++) l.emplace_back("k" + std::to_string(i), "v" + std::to_string(i));
  return l;
}

std::string AllBytes() {
  std::string s(256, '\0');
  for (int i = 0; i < 256; i++) s[size_t(i)] = char(i);
  return s;
}

// A REQUEST of test.v1.Echo/<method> with a metadata block (raw bytes) before the message.
RawFrame MdFrame(const char *method, uint32_t id, const char *text, const std::string &block,
                 int code = 0) {
  RawFrame f = EchoFrame(method, id, text, 0, code);
  f.flags = RPC_FLAG_METADATA;
  f.body = block + f.body;
  return f;
}

// Split a frame's body into its metadata (when flagged) and the rest.
MdList SplitBody(const Got &g, std::string *rest) {
  if (!(g.flags & RPC_FLAG_METADATA)) {
    *rest = g.body;
    return {};
  }
  rpc_metadata md;
  long n = rpc_metadata_parse(reinterpret_cast<const uint8_t *>(g.body.data()), g.body.size(),
                              RPC_METADATA_MAX_VALUE * 4u, 1024, &md);
  EXPECT_GT(n, 0) << "the server sent a malformed block";
  if (n <= 0) return {};
  *rest = g.body.substr(size_t(n));
  return FromView(&md);
}

bool IsLowerHex(const std::string &s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return s != std::string(n, '0');
}

// ---- The test service: what each handler saw, headers echoed back as trailers ---------------

struct Seen {
  rpc_server *server = nullptr;
  std::string method;  // rpc_call_method()
  std::string text;
  MdList headers;
  int header_rc = 0;        // rpc_call_header(call, "tenant")
  std::string tenant;       // its value
  int trace_rc = -1;        // rpc_call_trace_id()
  std::string trace_id;
  std::string traceparent;  // the raw header
  int peer_rc = -1;         // rpc_call_peer(), inside invoke
  rpc_peer peer = {};
  int trailer_rc = 0;       // the first failing rpc_call_set_trailer(), or 0
};

struct Held {
  Test__V1__EchoReply_Closure closure;
  void *data;
  rpc_call *call;
  std::string text;
};

struct Outcome {
  std::string ic;  // the interceptor that saw it
  rpc_call_outcome o;
};

struct State {
  std::mutex mu;
  std::condition_variable cv;
  int invocations = 0;           // handler runs, every method
  std::vector<Seen> seen;
  std::vector<Held> held;
  std::vector<std::string> log;  // interceptor and handler events, in order
  std::vector<Outcome> outcomes;
  // The trace hop: Say on hop_a calls Say on B through hop_ch.
  rpc_server *hop_a = nullptr;
  rpc_channel *hop_ch = nullptr;
  int hop_status = -1;
};

State *g;

template <typename Pred>
bool WaitFor(Pred pred, int ms = 5000) {
  std::unique_lock<std::mutex> lk(g->mu);
  return g->cv.wait_for(lk, std::chrono::milliseconds(ms), pred);
}

// Copy the trailers' worth of headers back: the first failing rpc_call_set_trailer(), or 0.
int EchoTrailers(rpc_call *c) {
  MdList h = FromView(rpc_call_metadata(c));
  for (const Md &m : h) {
    int rc = rpc_call_set_trailer(c, m.first.c_str(), m.second.data(), m.second.size());
    if (rc != 0) return rc;
  }
  return 0;
}

// What the handler can see of its call; stored in g->seen.
Seen Record(rpc_call *c, const char *text) {
  Seen s;
  s.server = rpc_call_server(c);
  s.method = rpc_call_method(c);
  s.text = text;
  s.headers = FromView(rpc_call_metadata(c));
  const void *v = nullptr;
  size_t len = 0;
  s.header_rc = rpc_call_header(c, "tenant", &v, &len);
  if (s.header_rc == 1) s.tenant.assign(static_cast<const char *>(v), len);
  char id[33] = "";
  s.trace_rc = rpc_call_trace_id(c, id);
  if (s.trace_rc == 0) s.trace_id = id;
  if (rpc_call_header(c, "traceparent", &v, &len) == 1)
    s.traceparent.assign(static_cast<const char *>(v), len);
  s.peer_rc = rpc_call_peer(c, &s.peer);
  return s;
}

void Store(const Seen &s) {
  std::lock_guard<std::mutex> lk(g->mu);
  g->invocations++;
  g->seen.push_back(s);
  g->log.push_back("handler");
  g->cv.notify_all();
}

// Say on hop_a: call Say on B through the hop channel (with the call as parent when the text
// starts with "parent"), then reply with B's status.
int Forward(rpc_call *c, const char *text) {
  rpc_method m;
  EXPECT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  std::string t = std::string("b:") + text;
  req.text = const_cast<char *>(t.c_str());
  rpc_call_options o = {};
  o.timeout_ms = 5000;
  if (strncmp(text, "parent", 6) == 0) o.parent = c;
  ProtobufCMessage *reply = nullptr;
  char msg[128];
  int st = rpc_channel_call_opts(g->hop_ch, &m, &req.base, &o, &reply, msg, sizeof msg, nullptr);
  if (reply) protobuf_c_message_free_unpacked(reply, nullptr);
  return st;
}

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  rpc_call *c = rpc_server_call(data);
  Seen s = Record(c, in->text);
  s.trailer_rc = EchoTrailers(c);
  if (strcmp(in->text, "big-trailer") == 0) {
    std::string big(RPC_DEFAULT_MAX_METADATA_BYTES + 1, 'b');
    s.trailer_rc = rpc_call_set_trailer(c, "x-big", big.data(), big.size());
  }
  rpc_server *hop_a;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    hop_a = g->hop_a;
  }
  Store(s);
  if (hop_a != nullptr && s.server == hop_a) {
    int st = Forward(c, in->text);
    std::lock_guard<std::mutex> lk(g->mu);
    g->hop_status = st;
  }
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = std::string("echo:") + in->text;
  out.text = const_cast<char *>(text.c_str());
  out.payload = in->payload;
  closure(&out, data);
}

// Replies from another thread, which also sets the trailers (the thread that completes the call).
void h_slow(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  rpc_call *c = rpc_server_call(data);
  Seen s = Record(c, in->text);
  int delay = in->delay_ms;
  std::string text = in->text;
  std::thread([c, closure, data, delay, text, s]() mutable {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    s.trailer_rc = EchoTrailers(c);
    rpc_call_set_trailer(c, "x-thread", "other", 5);
    Store(s);
    Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
    std::string t = "slow:" + text;
    out.text = const_cast<char *>(t.c_str());
    closure(&out, data);
  }).detach();
}

void h_hold(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  rpc_call *c = rpc_server_call(data);
  Seen s = Record(c, in->text);
  std::lock_guard<std::mutex> lk(g->mu);
  g->invocations++;
  g->seen.push_back(s);
  g->log.push_back("handler");
  g->held.push_back(Held{closure, data, c, in->text});
  g->cv.notify_all();
}

// Fails with status `code` and message text, with the headers and x-error as trailers.
void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure, void *data) {
  rpc_call *c = rpc_server_call(data);
  Seen s = Record(c, in->text);
  s.trailer_rc = EchoTrailers(c);
  rpc_call_set_trailer(c, "x-error", "detail", 6);
  Store(s);
  rpc_call_fail(c, in->code, in->text);
}

Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

// Reply to every held call (from this thread).
void ReleaseHeld() {
  std::vector<Held> held;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    held.swap(g->held);
  }
  for (Held &h : held) {
    Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
    std::string t = "held:" + h.text;
    out.text = const_cast<char *>(t.c_str());
    h.closure(&out, h.data);
  }
}

// ---- Server interceptors that log what they see ----------------------------------------------

struct ServerIc {
  std::string name;
  int refuse = RPC_STATUS_OK;  // before() returns this
  const char *message = nullptr;
  std::atomic<int> peer_rc{-1};
  std::string method;          // rpc_call_method() seen by before() (under g->mu)
};

int IcBefore(void *arg, rpc_call *call, const char **message) {
  auto *ic = static_cast<ServerIc *>(arg);
  rpc_peer p;
  ic->peer_rc = rpc_call_peer(call, &p);
  std::lock_guard<std::mutex> lk(g->mu);
  ic->method = rpc_call_method(call);
  g->log.push_back(ic->name + ".before");
  g->cv.notify_all();
  if (ic->refuse != RPC_STATUS_OK) *message = ic->message;
  return ic->refuse;
}

void IcAfter(void *arg, const rpc_call *, const rpc_call_outcome *o) {
  auto *ic = static_cast<ServerIc *>(arg);
  std::lock_guard<std::mutex> lk(g->mu);
  g->log.push_back(ic->name + ".after:" + rpc_status_name(o->status));
  g->outcomes.push_back(Outcome{ic->name, *o});
  g->cv.notify_all();
}

rpc_server_interceptor Interceptor(ServerIc *ic) {
  rpc_server_interceptor x = {IcBefore, IcAfter, ic};
  return x;
}

// ---- Client interceptors that count -------------------------------------------------------

struct ClientIc {
  std::atomic<int> refuse{0};  // before() returns this
  std::string add_key;         // before() adds add_key: add_value when not empty
  std::string add_value;
  std::mutex mu;
  std::condition_variable cv;
  int befores = 0;
  std::map<uint64_t, int> afters;    // call_id -> after() runs
  std::map<uint64_t, int> statuses;  // call_id -> status
  std::vector<uint64_t> durations;
};

int CBefore(void *arg, const rpc_client_call *call, rpc_headers *h) {
  auto *ic = static_cast<ClientIc *>(arg);
  EXPECT_NE(nullptr, call->options);
  {
    std::lock_guard<std::mutex> lk(ic->mu);
    ic->befores++;
  }
  if (ic->refuse.load()) return ic->refuse.load();
  if (!ic->add_key.empty())
    return rpc_headers_add(h, ic->add_key.c_str(), ic->add_value.data(), ic->add_value.size());
  return 0;
}

void CAfter(void *arg, const rpc_client_call *call, int status, uint64_t duration_ns) {
  auto *ic = static_cast<ClientIc *>(arg);
  std::lock_guard<std::mutex> lk(ic->mu);
  ic->afters[call->call_id]++;
  ic->statuses[call->call_id] = status;
  ic->durations.push_back(duration_ns);
  ic->cv.notify_all();
}

rpc_client_interceptor ClientInterceptor(ClientIc *ic) {
  rpc_client_interceptor x = {CBefore, CAfter, ic};
  return x;
}

// ---- Calls -----------------------------------------------------------------------------------

struct Result {
  int status = -1;
  std::string text;  // the reply's text, or the error message
  MdList trailers;
};

struct Done {  // a completion, copied out of its batch
  void *ctx = nullptr;
  uint64_t call_id = 0;
  int status = -1;
  std::string text;
  MdList trailers;
};

std::vector<Done> Collect(rpc_cq *cq, size_t n, int ms = 5000) {
  std::vector<Done> all;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  rpc_completion batch[16];
  while (all.size() < n && std::chrono::steady_clock::now() < until) {
    int k = rpc_cq_wait(cq, batch, 16, 50);
    EXPECT_GE(k, 0);
    for (int i = 0; i < k; i++) {
      Done d;
      d.ctx = batch[i].ctx;
      d.call_id = batch[i].call_id;
      d.status = batch[i].status;
      d.trailers = FromView(&batch[i].trailers);
      if (batch[i].reply) {
        d.text = reinterpret_cast<Test__V1__EchoReply *>(batch[i].reply)->text;
        protobuf_c_message_free_unpacked(batch[i].reply, nullptr);
      } else {
        d.text = batch[i].message;
      }
      all.push_back(d);
    }
  }
  return all;
}

rpc_method Method(const char *name) {
  rpc_method m;
  EXPECT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, name));
  return m;
}

// rpc_channel_call_opts() of test.v1.Echo/<method>. Returns the errno when not made (status -1).
int CallOpts(rpc_channel *ch, const char *method, const char *text, const MdList &md,
             Result *r, int code = 0, int timeout_ms = 5000, const rpc_call *parent = nullptr) {
  rpc_method m = Method(method);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text);
  req.code = code;
  std::vector<rpc_md> v = View(md);
  rpc_call_options o = {};
  o.timeout_ms = timeout_ms;
  o.metadata = v.data();
  o.metadata_count = v.size();
  o.parent = parent;
  ProtobufCMessage *reply = nullptr;
  char msg[RPC_MAX_ERROR_MESSAGE + 1] = "";
  rpc_metadata tr = {};
  int st = rpc_channel_call_opts(ch, &m, &req.base, &o, &reply, msg, sizeof msg, &tr);
  *r = Result();
  if (st < 0) {
    EXPECT_EQ(nullptr, reply);
    return st;
  }
  r->status = st;
  r->trailers = FromView(&tr);
  rpc_metadata_free(&tr);
  EXPECT_EQ(0u, tr.count);
  if (st == RPC_STATUS_OK) {
    r->text = reinterpret_cast<Test__V1__EchoReply *>(reply)->text;
    protobuf_c_message_free_unpacked(reply, nullptr);
  } else {
    EXPECT_EQ(nullptr, reply);
    r->text = msg;
  }
  return 0;
}

Result Call(rpc_channel *ch, const char *method, const char *text, const MdList &md = {},
            int code = 0) {
  Result r;
  EXPECT_EQ(0, CallOpts(ch, method, text, md, &r, code));
  return r;
}

int SubmitOpts(rpc_channel *ch, rpc_cq *cq, const char *method, const char *text,
               const MdList &md, void *ctx, uint64_t *id = nullptr, int timeout_ms = 5000,
               int code = 0) {
  rpc_method m = Method(method);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text);
  req.code = code;
  std::vector<rpc_md> v = View(md);
  rpc_call_options o = {};
  o.timeout_ms = timeout_ms;
  o.metadata = v.data();
  o.metadata_count = v.size();
  return rpc_channel_submit_opts(ch, &m, &req.base, &o, cq, ctx, id);
}

// The reply to a raw Say: RESPONSE OK whose message is "echo:<text>"; returns its trailers.
MdList ExpectSayReply(RawConn *c, uint32_t id, const char *text, Got *out = nullptr) {
  Got g = c->Next();
  EXPECT_TRUE(g.ok);
  EXPECT_EQ(RPC_TYPE_RESPONSE, g.type);
  EXPECT_EQ(RPC_STATUS_OK, g.status) << g.body;
  EXPECT_EQ(id, g.id);
  std::string msg;
  MdList tr = SplitBody(g, &msg);
  auto *r = reinterpret_cast<Test__V1__EchoReply *>(protobuf_c_message_unpack(
      &test__v1__echo_reply__descriptor, nullptr, msg.size(),
      reinterpret_cast<const uint8_t *>(msg.data())));
  EXPECT_NE(nullptr, r);
  if (r) {
    EXPECT_EQ(std::string("echo:") + text, r->text);
    protobuf_c_message_free_unpacked(&r->base, nullptr);
  }
  if (out) *out = g;
  return tr;
}

std::string Target(rpc_server *s) { return "127.0.0.1:" + std::to_string(rpc_server_port(s)); }

// ---- The fixture: servers, channels and a queue, all destroyed at the end --------------------

class RpcMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override { g = new State; }
  void TearDown() override {
    ReleaseHeld();
    for (rpc_channel *ch : channels_) rpc_channel_destroy(ch);
    rpc_cq_destroy(cq_);
    for (rpc_server *s : servers_) rpc_server_destroy(s);
    ReleaseHeld();
    delete g;
    g = nullptr;
  }

  rpc_server *Server(rpc_server_options o = {}, std::vector<rpc_server_interceptor> ics = {},
                     const std::string &addr = "127.0.0.1:0") {
    rpc_server *s = nullptr;
    EXPECT_EQ(0, rpc_server_create(&s, &o));
    if (s == nullptr) return nullptr;
    servers_.push_back(s);
    EXPECT_EQ(0, rpc_server_add_service(s, &g_service.base));
    for (const rpc_server_interceptor &ic : ics) EXPECT_EQ(0, rpc_server_add_interceptor(s, &ic));
    EXPECT_EQ(0, rpc_server_listen(s, addr.c_str()));
    EXPECT_EQ(0, rpc_server_start(s));
    return s;
  }
  rpc_channel *Channel(const std::string &target, rpc_channel_options co = {}) {
    if (co.backoff_initial_ms == 0) co.backoff_initial_ms = 10;
    if (co.backoff_max_ms == 0) co.backoff_max_ms = 100;
    rpc_channel *ch = nullptr;
    EXPECT_EQ(0, rpc_channel_create(&ch, target.c_str(), &co));
    if (ch) channels_.push_back(ch);
    return ch;
  }
  void DestroyChannel(rpc_channel *ch) {
    channels_.erase(std::find(channels_.begin(), channels_.end(), ch));
    EXPECT_EQ(0, rpc_channel_destroy(ch));
  }
  void DestroyServer(rpc_server *s) {
    servers_.erase(std::find(servers_.begin(), servers_.end(), s));
    rpc_server_destroy(s);
  }
  rpc_cq *Cq() {
    if (cq_ == nullptr) {
      EXPECT_EQ(0, rpc_cq_create(&cq_));
    }
    return cq_;
  }
  // A server with no interceptors and a channel to it.
  void Basic(rpc_server_options o = {}, rpc_channel_options co = {}) {
    s_ = Server(o);
    ch_ = Channel(Target(s_), co);
  }
  int Invocations() {
    std::lock_guard<std::mutex> lk(g->mu);
    return g->invocations;
  }
  Seen LastSeen() {
    std::lock_guard<std::mutex> lk(g->mu);
    EXPECT_FALSE(g->seen.empty());
    return g->seen.empty() ? Seen() : g->seen.back();
  }
  std::vector<std::string> Log() {
    std::lock_guard<std::mutex> lk(g->mu);
    return g->log;
  }
  std::vector<Outcome> Outcomes() {
    std::lock_guard<std::mutex> lk(g->mu);
    return g->outcomes;
  }
  bool WaitOutcomes(size_t n, int ms = 5000) {
    return WaitFor([n] { return g->outcomes.size() >= n; }, ms);
  }
  bool WaitHeld(size_t n, int ms = 5000) {
    return WaitFor([n] { return g->held.size() >= n; }, ms);
  }
  // After the outcomes expected, none more comes for a while (after() runs exactly once).
  void ExpectNoMoreOutcomes(size_t n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(n, Outcomes().size());
  }

  // Interceptors' state: it must outlive the servers and channels (an after() may run after the
  // client has its answer), so the fixture owns it; members go after TearDown().
  ServerIc &NewServerIc(const char *name) {
    server_ics_.emplace_back();
    server_ics_.back().name = name;
    return server_ics_.back();
  }
  ClientIc &NewClientIc() {
    client_ics_.emplace_back();
    return client_ics_.back();
  }
  std::deque<ServerIc> server_ics_;
  std::deque<ClientIc> client_ics_;
  std::deque<rpc_bearer_auth> auths_;

  std::vector<rpc_server *> servers_;
  std::vector<rpc_channel *> channels_;
  rpc_cq *cq_ = nullptr;
  rpc_server *s_ = nullptr;
  rpc_channel *ch_ = nullptr;
};

// ---- Round trips through the channel --------------------------------------------------------

TEST_F(RpcMetadataTest, WithoutMetadataFramesAreVersionOneAndTrailersEmpty) {
  Watchdog wd("NoMetadata", 20000);
  Basic();
  Result r = Call(ch_, "Say", "plain");
  EXPECT_EQ(RPC_STATUS_OK, r.status);
  EXPECT_EQ("echo:plain", r.text);
  EXPECT_TRUE(r.trailers.empty());
  EXPECT_TRUE(LastSeen().headers.empty());
  EXPECT_EQ(0, LastSeen().header_rc);
  EXPECT_EQ(-ENOENT, LastSeen().trace_rc);
  // On the wire: no header in, no trailer out, so the RESPONSE has flags 0 (WIRE.md section 13).
  RawConn c(rpc_server_port(s_));
  c.Send(EchoFrame("Say", 5, "raw").Bytes());
  Got got;
  EXPECT_TRUE(ExpectSayReply(&c, 5, "raw", &got).empty());
  EXPECT_EQ(0, got.flags);
}

TEST_F(RpcMetadataTest, OneManyAndTheMaximumOfHeadersComeBackAsTrailers) {
  Watchdog wd("HeaderCounts", 20000);
  Basic();
  for (int n : {1, 10, int(RPC_DEFAULT_MAX_METADATA_ENTRIES)}) {
    SCOPED_TRACE(std::to_string(n) + " headers");
    MdList md = Numbered(n);
    Result r = Call(ch_, "Say", "n", md);
    EXPECT_EQ(RPC_STATUS_OK, r.status) << r.text;
    EXPECT_EQ(md, LastSeen().headers);
    EXPECT_EQ(0, LastSeen().trailer_rc);
    EXPECT_EQ(md, r.trailers);
  }
  // Repeated keys keep their order; rpc_call_header() gives the first.
  MdList rep = {{"tenant", "first"}, {"x", "1"}, {"tenant", "second"}};
  Result r = Call(ch_, "Say", "rep", rep);
  EXPECT_EQ(rep, r.trailers);
  EXPECT_EQ(1, LastSeen().header_rc);
  EXPECT_EQ("first", LastSeen().tenant);
}

TEST_F(RpcMetadataTest, BinaryAndEmptyValuesRoundTrip) {
  Watchdog wd("BinaryValues", 20000);
  Basic();
  MdList md = {{"bin", AllBytes()}, {"empty", ""}, {"nul", std::string("a\0b", 3)}};
  Result r = Call(ch_, "Say", "bin", md);
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.text;
  EXPECT_EQ(md, LastSeen().headers);
  EXPECT_EQ(md, r.trailers);
}

TEST_F(RpcMetadataTest, LargestValueReachesTheHandlerWhenTheServerAllowsIt) {
  Watchdog wd("LargestValue", 20000);
  rpc_server_options o = {};
  o.max_metadata_bytes = 70000;
  Basic(o);
  std::string big(RPC_METADATA_MAX_VALUE, 'v');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = char(i);
  // The channel holds its headers to the default limits (8 KiB): refused at the call.
  Result r;
  EXPECT_EQ(-EMSGSIZE, CallOpts(ch_, "Say", "big", {{"big", big}}, &r));
  EXPECT_EQ(0, Invocations());
  // A raw client may send one; this server accepts it. Its echo as a trailer is over the
  // client's default limit: rpc_call_set_trailer() says -EMSGSIZE and the reply goes without it.
  RawConn c(rpc_server_port(s_));
  c.Send(MdFrame("Say", 1, "big", Block({{"big", big}, {"after", "x"}})).Bytes());
  MdList tr = ExpectSayReply(&c, 1, "big");
  Seen s = LastSeen();
  ASSERT_EQ(2u, s.headers.size());
  EXPECT_TRUE(s.headers[0] == Md("big", big)) << "the 65535-byte value arrived changed";
  EXPECT_EQ(Md("after", "x"), s.headers[1]);
  EXPECT_EQ(-EMSGSIZE, s.trailer_rc);
  EXPECT_TRUE(tr.empty());
  // A trailer over the client's limit is refused by rpc_call_set_trailer().
  r = Call(ch_, "Say", "big-trailer");
  EXPECT_EQ(RPC_STATUS_OK, r.status);
  EXPECT_EQ(-EMSGSIZE, LastSeen().trailer_rc);
  EXPECT_TRUE(r.trailers.empty());
}

TEST_F(RpcMetadataTest, AsyncCompletionsCarryTheirTrailers) {
  Watchdog wd("AsyncTrailers", 20000);
  Basic();
  const int kCalls = 20;
  for (int i = 0; i < kCalls; i++) {
    std::string id = std::to_string(i);
    ASSERT_EQ(0, SubmitOpts(ch_, Cq(), i % 2 ? "Say" : "Slow", id.c_str(), {{"x-id", id}},
                            reinterpret_cast<void *>(intptr_t(i))));
  }
  std::vector<Done> done = Collect(Cq(), kCalls);
  ASSERT_EQ(size_t(kCalls), done.size());
  for (const Done &d : done) {
    int i = int(intptr_t(d.ctx));
    EXPECT_EQ(RPC_STATUS_OK, d.status) << d.text;
    MdList want = {{"x-id", std::to_string(i)}};
    if (i % 2 == 0) want.emplace_back("x-thread", "other");  // Slow: set on its own thread
    EXPECT_EQ(want, d.trailers) << "call " << i;
  }
}

struct StubResult {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int status = -1;
  std::string text;
  MdList trailers;
};

void OnStubReply(const Test__V1__EchoReply *reply, void *data) {
  auto *r = static_cast<StubResult *>(data);
  int st = rpc_last_status(nullptr);
  MdList tr = FromView(rpc_last_trailers());
  std::lock_guard<std::mutex> lk(r->mu);
  r->status = st;
  r->trailers = tr;
  if (reply) r->text = reply->text;
  r->done = true;
  r->cv.notify_all();
}

bool WaitStub(StubResult *r, int ms = 5000) {
  std::unique_lock<std::mutex> lk(r->mu);
  return r->cv.wait_for(lk, std::chrono::milliseconds(ms), [r] { return r->done; });
}

TEST_F(RpcMetadataTest, StubOptionsApplyToTheNextStubCallOnly) {
  Watchdog wd("StubOptions", 20000);
  Basic();
  ProtobufCService *svc = rpc_channel_service(ch_, &test__v1__echo__descriptor);
  ASSERT_NE(nullptr, svc);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("stub");
  {
    // The options and their metadata are copied: they may go before the call completes.
    MdList md = {{"tenant", "acme"}, {"x-bin", AllBytes()}};
    std::vector<rpc_md> v = View(md);
    rpc_call_options o = {};
    o.metadata = v.data();
    o.metadata_count = v.size();
    o.timeout_ms = 5000;
    rpc_stub_options(&o);
  }
  StubResult a;
  test__v1__echo__say(svc, &req, OnStubReply, &a);
  ASSERT_TRUE(WaitStub(&a));
  MdList want = {{"tenant", "acme"}, {"x-bin", AllBytes()}};
  EXPECT_EQ(RPC_STATUS_OK, a.status);
  EXPECT_EQ("echo:stub", a.text);
  EXPECT_EQ(want, a.trailers);
  EXPECT_EQ(want, LastSeen().headers);

  StubResult b;  // no options set again: no headers
  test__v1__echo__say(svc, &req, OnStubReply, &b);
  ASSERT_TRUE(WaitStub(&b));
  EXPECT_EQ(RPC_STATUS_OK, b.status);
  EXPECT_TRUE(b.trailers.empty());
  EXPECT_TRUE(LastSeen().headers.empty());

  MdList one = {{"x-fail", "1"}};
  std::vector<rpc_md> v = View(one);
  rpc_call_options o = {};
  o.metadata = v.data();
  o.metadata_count = v.size();
  rpc_stub_options(&o);
  rpc_stub_options(nullptr);  // cleared
  StubResult c;
  req.code = RPC_STATUS_ABORTED;
  test__v1__echo__fail(svc, &req, OnStubReply, &c);
  ASSERT_TRUE(WaitStub(&c));
  EXPECT_EQ(RPC_STATUS_ABORTED, c.status);
  EXPECT_EQ(MdList({{"x-error", "detail"}}), c.trailers);
}

TEST_F(RpcMetadataTest, TrailersGoWithAnErrorToo) {
  Watchdog wd("ErrorTrailers", 20000);
  Basic();
  MdList md = {{"retry-after", "3"}};
  Result r = Call(ch_, "Fail", "try later", md, RPC_STATUS_UNAVAILABLE);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status);
  EXPECT_EQ("try later", r.text);
  EXPECT_EQ(MdList({{"retry-after", "3"}, {"x-error", "detail"}}), r.trailers);
  ASSERT_EQ(0, SubmitOpts(ch_, Cq(), "Fail", "gone", md, nullptr, nullptr, 5000,
                          RPC_STATUS_NOT_FOUND));
  std::vector<Done> d = Collect(Cq(), 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, d[0].status);
  EXPECT_EQ("gone", d[0].text);
  EXPECT_EQ(MdList({{"retry-after", "3"}, {"x-error", "detail"}}), d[0].trailers);
  // On the wire: flags METADATA, the block, then the error text (WIRE.md section 13).
  RawConn c(rpc_server_port(s_));
  c.Send(MdFrame("Fail", 9, "try later", Block({{"retry-after", "3"}}), RPC_STATUS_UNAVAILABLE).Bytes());
  Got got = c.Next();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, got.status);
  EXPECT_EQ(RPC_FLAG_METADATA, got.flags);
  std::string text;
  EXPECT_EQ(MdList({{"retry-after", "3"}, {"x-error", "detail"}}), SplitBody(got, &text));
  EXPECT_EQ("try later", text);
}

TEST_F(RpcMetadataTest, ChannelMetadataComesBeforeTheCallsOwn) {
  Watchdog wd("ChannelMetadata", 20000);
  s_ = Server();
  MdList chmd = {{"tenant", "acme"}, {"x-env", "test"}};
  std::vector<rpc_md> v = View(chmd);
  rpc_channel_options co = {};
  co.metadata = v.data();
  co.metadata_count = v.size();
  ch_ = Channel(Target(s_), co);
  chmd[0].second = "changed";  // copied at create: the channel keeps "acme"
  v.clear();
  Result r = Call(ch_, "Say", "both", {{"x-call", "1"}, {"tenant", "other"}});
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.text;
  MdList want = {{"tenant", "acme"}, {"x-env", "test"}, {"x-call", "1"}, {"tenant", "other"}};
  EXPECT_EQ(want, LastSeen().headers);
  EXPECT_EQ("acme", LastSeen().tenant);
  EXPECT_EQ(want, r.trailers);
  r = Call(ch_, "Say", "channel only");
  EXPECT_EQ(MdList({{"tenant", "acme"}, {"x-env", "test"}}), LastSeen().headers);
  // Through a stub too.
  ProtobufCService *svc = rpc_channel_service(ch_, &test__v1__echo__descriptor);
  ASSERT_NE(nullptr, svc);
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("stub");
  StubResult s;
  test__v1__echo__say(svc, &req, OnStubReply, &s);
  ASSERT_TRUE(WaitStub(&s));
  EXPECT_EQ(MdList({{"tenant", "acme"}, {"x-env", "test"}}), s.trailers);
}

TEST_F(RpcMetadataTest, BadHeadersAreRefusedAtTheCall) {
  Watchdog wd("BadHeadersAtCall", 20000);
  Basic();
  Result r;
  EXPECT_EQ(-EINVAL, CallOpts(ch_, "Say", "x", {{"Tenant", "acme"}}, &r));  // uppercase key
  EXPECT_EQ(-EINVAL, CallOpts(ch_, "Say", "x", {{"", "empty key"}}, &r));
  EXPECT_EQ(-EMSGSIZE, CallOpts(ch_, "Say", "x", Numbered(RPC_DEFAULT_MAX_METADATA_ENTRIES + 1), &r));
  EXPECT_EQ(-EMSGSIZE, CallOpts(ch_, "Say", "x", {{"x", std::string(RPC_DEFAULT_MAX_METADATA_BYTES, 'x')}}, &r));
  EXPECT_EQ(-EINVAL, SubmitOpts(ch_, Cq(), "Say", "x", {{"a b", "space"}}, nullptr));
  rpc_completion none[1];
  EXPECT_EQ(0, rpc_cq_wait(Cq(), none, 1, 50));
  EXPECT_EQ(0, Invocations());
  // Too many channel headers: the channel is not created.
  MdList many = Numbered(RPC_MAX_CHANNEL_METADATA + 1);
  std::vector<rpc_md> v = View(many);
  rpc_channel_options co = {};
  co.metadata = v.data();
  co.metadata_count = v.size();
  rpc_channel *ch = nullptr;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, Target(s_).c_str(), &co));
  EXPECT_EQ(nullptr, ch);
}

// ---- Over the server's limits, malformed blocks -----------------------------------------------

TEST_F(RpcMetadataTest, HeadersOverTheServersLimitsAreResourceExhaustedUnrun) {
  Watchdog wd("OverLimits", 20000);
  rpc_server_options o = {};
  o.max_metadata_bytes = 1024;
  o.max_metadata_entries = 4;
  Basic(o);
  Result r = Call(ch_, "Say", "bytes", {{"x", std::string(2000, 'x')}});
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, r.status);
  EXPECT_EQ("metadata larger than the server's limit", r.text);
  r = Call(ch_, "Say", "entries", Numbered(5));
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, r.status);
  r = Call(ch_, "Say", "fits", Numbered(4));
  EXPECT_EQ(RPC_STATUS_OK, r.status);
  EXPECT_EQ(1, Invocations());
}

TEST_F(RpcMetadataTest, SixtyFiveHeadersOnTheWireAreResourceExhaustedUnrun) {
  Watchdog wd("SixtyFive", 20000);
  Basic();
  RawConn c(rpc_server_port(s_));
  c.Send(MdFrame("Say", 1, "65", Block(Numbered(RPC_DEFAULT_MAX_METADATA_ENTRIES + 1))).Bytes());
  Got got = c.Next();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(RPC_TYPE_RESPONSE, got.type);
  EXPECT_EQ(1u, got.id);
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, got.status);
  EXPECT_EQ("metadata larger than the server's limit", got.body);
  // 8193 entry bytes: over the default byte limit.
  std::string v(RPC_DEFAULT_MAX_METADATA_BYTES + 1 - 3 - 1, 'v');
  c.Send(MdFrame("Say", 2, "8k", Block({{"x", v}})).Bytes());
  got = c.Next();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(2u, got.id);
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, got.status);
  EXPECT_EQ(0, Invocations());
  // Exactly at the limits: served, on the same connection.
  v.pop_back();
  c.Send(MdFrame("Say", 3, "at", Block({{"x", v}})).Bytes());
  ExpectSayReply(&c, 3, "at");
  c.Send(MdFrame("Say", 4, "64", Block(Numbered(RPC_DEFAULT_MAX_METADATA_ENTRIES))).Bytes());
  EXPECT_EQ(Numbered(RPC_DEFAULT_MAX_METADATA_ENTRIES), ExpectSayReply(&c, 4, "64"));
  EXPECT_EQ(2, Invocations());
}

TEST_F(RpcMetadataTest, MalformedBlocksAreInvalidArgumentAndTheConnectionGoesOn) {
  Watchdog wd("MalformedBlocks", 20000);
  Basic();
  std::string msg = PackedRequest("m");
  std::string good_entry = std::string("\x06\x04\x00", 3) + "tenantacme";
  struct Case {
    const char *what;
    std::string body;
  } cases[] = {
      {"block_len past the body", Le32(100) + good_entry + msg},
      {"block_len past the body, no message", Le32(uint32_t(good_entry.size() + 1)) + good_entry},
      {"body shorter than the prefix", std::string("\x01\x00", 2)},
      {"empty body", ""},
      {"bad key (uppercase)", Le32(13) + std::string("\x06\x04\x00", 3) + "Tenantacme" + msg},
      {"bad key (empty)", Le32(4) + std::string("\x00\x01\x00", 3) + "x" + msg},
      {"truncated entry: value past block_len", Le32(12) + good_entry.substr(0, 12) + msg},
      {"truncated entry: header past block_len", Le32(15) + good_entry + std::string("\x02\x00", 2) + msg},
  };
  RawConn c(rpc_server_port(s_));
  uint32_t id = 10;
  for (const Case &k : cases) {
    SCOPED_TRACE(k.what);
    RawFrame f = EchoFrame("Say", id, "m");
    f.flags = RPC_FLAG_METADATA;
    f.body = k.body;
    c.Send(f.Bytes());
    Got got = c.Next();
    ASSERT_TRUE(got.ok) << "the connection was closed";
    EXPECT_EQ(RPC_TYPE_RESPONSE, got.type);
    EXPECT_EQ(id, got.id);
    EXPECT_EQ(RPC_STATUS_INVALID_ARGUMENT, got.status);
    EXPECT_EQ("malformed metadata", got.body);
    c.Send(EchoFrame("Say", id + 1, "next").Bytes());  // the same connection serves
    ExpectSayReply(&c, id + 1, "next");
    id += 2;
  }
  EXPECT_EQ(int(sizeof cases / sizeof cases[0]), Invocations()) << "a malformed call ran";
  // An empty block with the flag is valid (senders omit it, but it is not malformed).
  c.Send(MdFrame("Say", 99, "empty", Le32(0)).Bytes());
  EXPECT_TRUE(ExpectSayReply(&c, 99, "empty").empty());
}

TEST_F(RpcMetadataTest, MetadataFlagOnAPingIsAProtocolError) {
  Watchdog wd("FlagOnPing", 20000);
  Basic();
  RawConn c(rpc_server_port(s_));
  c.Send(EchoFrame("Say", 1, "first").Bytes());
  ExpectSayReply(&c, 1, "first");
  RawFrame p;
  p.type = RPC_TYPE_PING;
  p.flags = RPC_FLAG_METADATA;
  p.id = 7;
  c.Send(p.Bytes());
  Got got = c.Next();
  ASSERT_TRUE(got.ok) << "expected a GOAWAY";
  EXPECT_EQ(RPC_TYPE_GOAWAY, got.type);
  EXPECT_EQ(1u, got.id);
  Got e = c.Next();
  EXPECT_FALSE(e.ok);
  EXPECT_TRUE(e.eof) << "expected the server to close the connection";
  EXPECT_EQ(RPC_STATUS_OK, Call(ch_, "Say", "others").status);
}

// ---- Server interceptors ---------------------------------------------------------------------

TEST_F(RpcMetadataTest, InterceptorRefusalReachesTheClientAndSkipsTheHandler) {
  Watchdog wd("InterceptorRefusal", 20000);
  ServerIc &a = NewServerIc("A");
  a.refuse = RPC_STATUS_FAILED_PRECONDITION;
  a.message = "not today";
  s_ = Server({}, {Interceptor(&a)});
  ch_ = Channel(Target(s_));
  Result r = Call(ch_, "Say", "refused", {{"tenant", "acme"}});
  EXPECT_EQ(RPC_STATUS_FAILED_PRECONDITION, r.status);
  EXPECT_EQ("not today", r.text);
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  EXPECT_EQ(0, Invocations());
  EXPECT_EQ(std::vector<std::string>({"A.before", "A.after:FAILED_PRECONDITION"}), Log());
  EXPECT_EQ(RPC_STATUS_FAILED_PRECONDITION, Outcomes()[0].o.status);
  EXPECT_EQ("test.v1.Echo/Say", a.method);
  EXPECT_EQ(0, a.peer_rc.load());
}

TEST_F(RpcMetadataTest, TwoInterceptorsRunBeforeInOrderAndAfterInReverse) {
  Watchdog wd("InterceptorOrder", 20000);
  ServerIc &a = NewServerIc("A");
  ServerIc &b = NewServerIc("B");
  s_ = Server({}, {Interceptor(&a), Interceptor(&b)});
  ch_ = Channel(Target(s_));
  EXPECT_EQ(RPC_STATUS_OK, Call(ch_, "Say", "pass").status);
  ASSERT_TRUE(WaitOutcomes(2));
  ExpectNoMoreOutcomes(2);
  EXPECT_EQ(std::vector<std::string>({"A.before", "B.before", "handler", "B.after:OK", "A.after:OK"}),
            Log());
  // The second refuses: the first's after() still runs, the handler does not.
  {
    std::lock_guard<std::mutex> lk(g->mu);
    g->log.clear();
    g->outcomes.clear();
    b.refuse = RPC_STATUS_PERMISSION_DENIED;
  }
  Result r = Call(ch_, "Say", "refused by B");
  EXPECT_EQ(RPC_STATUS_PERMISSION_DENIED, r.status);
  EXPECT_EQ("", r.text);
  ASSERT_TRUE(WaitOutcomes(2));
  ExpectNoMoreOutcomes(2);
  EXPECT_EQ(std::vector<std::string>(
                {"A.before", "B.before", "B.after:PERMISSION_DENIED", "A.after:PERMISSION_DENIED"}),
            Log());
  // The first refuses: the second sees nothing of the call.
  {
    std::lock_guard<std::mutex> lk(g->mu);
    g->log.clear();
    g->outcomes.clear();
    a.refuse = RPC_STATUS_UNAUTHENTICATED;
  }
  EXPECT_EQ(RPC_STATUS_UNAUTHENTICATED, Call(ch_, "Say", "refused by A").status);
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  EXPECT_EQ(std::vector<std::string>({"A.before", "A.after:UNAUTHENTICATED"}), Log());
  EXPECT_EQ(1, Invocations());
}

// The outcome of the one call seen by interceptor "A", once it ended.
rpc_call_outcome OnlyOutcome(const std::vector<Outcome> &v) {
  EXPECT_EQ(1u, v.size());
  return v.empty() ? rpc_call_outcome{} : v[0].o;
}

TEST_F(RpcMetadataTest, AfterRunsOnceWithTheSizesOfASuccessAndOfAnError) {
  Watchdog wd("AfterSizes", 20000);
  ServerIc &a = NewServerIc("A");
  s_ = Server({}, {Interceptor(&a)});
  RawConn c(rpc_server_port(s_));
  RawFrame f = MdFrame("Say", 1, "sizes", Block({{"tenant", "acme"}}));
  auto t0 = std::chrono::steady_clock::now();
  c.Send(f.Bytes());
  Got got;
  ExpectSayReply(&c, 1, "sizes", &got);
  uint64_t elapsed = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::steady_clock::now() - t0).count());
  ASSERT_TRUE(WaitOutcomes(1));
  rpc_call_outcome o = OnlyOutcome(Outcomes());
  EXPECT_EQ(RPC_STATUS_OK, o.status);
  EXPECT_EQ(f.body.size(), o.request_bytes);
  EXPECT_EQ(got.body.size(), o.response_bytes);
  EXPECT_GT(o.duration_ns, 0u);
  EXPECT_LE(o.duration_ns, elapsed + 1000000000u);
  // The handler's error.
  {
    std::lock_guard<std::mutex> lk(g->mu);
    g->outcomes.clear();
  }
  RawFrame e = EchoFrame("Fail", 2, "broken", 0, RPC_STATUS_DATA_LOSS);
  c.Send(e.Bytes());
  got = c.Next();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(RPC_STATUS_DATA_LOSS, got.status);
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  o = OnlyOutcome(Outcomes());
  EXPECT_EQ(RPC_STATUS_DATA_LOSS, o.status);
  EXPECT_EQ(e.body.size(), o.request_bytes);
  EXPECT_EQ(got.body.size(), o.response_bytes);
}

TEST_F(RpcMetadataTest, AfterRunsOnceAtTheServersDeadline) {
  Watchdog wd("AfterDeadline", 20000);
  ServerIc &a = NewServerIc("A");
  s_ = Server({}, {Interceptor(&a)});
  RawConn c(rpc_server_port(s_));
  RawFrame h = EchoFrame("Hold", 1, "late");
  h.timeout_us = 50000;
  c.Send(h.Bytes());
  Got got = c.Next();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, got.status);
  ASSERT_TRUE(WaitHeld(1));
  ReleaseHeld();  // the late reply is dropped
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  rpc_call_outcome o = OnlyOutcome(Outcomes());
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, o.status);
  EXPECT_EQ(h.body.size(), o.request_bytes);
  EXPECT_EQ(got.body.size(), o.response_bytes);
  EXPECT_GE(o.duration_ns, 45000000u);
}

TEST_F(RpcMetadataTest, AfterRunsOnceAfterTheClientsCancel) {
  Watchdog wd("AfterCancel", 20000);
  ServerIc &a = NewServerIc("A");
  s_ = Server({}, {Interceptor(&a)});
  RawConn c(rpc_server_port(s_));
  c.Send(EchoFrame("Hold", 3, "cancel me").Bytes());
  ASSERT_TRUE(WaitHeld(1));
  rpc_call *call;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    call = g->held[0].call;
  }
  RawFrame x;
  x.type = RPC_TYPE_CANCEL;
  x.id = 3;
  c.Send(x.Bytes());
  for (int i = 0; i < 500 && !rpc_call_cancelled(call); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(rpc_call_cancelled(call));
  ReleaseHeld();
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  rpc_call_outcome o = OnlyOutcome(Outcomes());
  EXPECT_EQ(RPC_STATUS_CANCELLED, o.status);
  EXPECT_EQ(0u, o.response_bytes);
  // Nothing was sent for the call; the connection serves the next one.
  c.Send(EchoFrame("Say", 4, "next").Bytes());
  ExpectSayReply(&c, 4, "next");
}

TEST_F(RpcMetadataTest, AfterRunsOnceWhenTheConnectionIsLost) {
  Watchdog wd("AfterLost", 20000);
  ServerIc &a = NewServerIc("A");
  s_ = Server({}, {Interceptor(&a)});
  std::unique_ptr<RawConn> c(new RawConn(rpc_server_port(s_)));
  c->Send(EchoFrame("Hold", 1, "orphan").Bytes());
  ASSERT_TRUE(WaitHeld(1));
  rpc_call *call;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    call = g->held[0].call;
  }
  ASSERT_TRUE(gaio_test::SetLingerZero(c->fd()));
  c.reset();  // a reset while the call is held
  for (int i = 0; i < 500 && !rpc_call_cancelled(call); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(rpc_call_cancelled(call));
  ReleaseHeld();
  ASSERT_TRUE(WaitOutcomes(1));
  ExpectNoMoreOutcomes(1);
  rpc_call_outcome o = OnlyOutcome(Outcomes());
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, o.status);
  EXPECT_EQ(0u, o.response_bytes);
}

// ---- The peer and the method -----------------------------------------------------------------

TEST_F(RpcMetadataTest, PeerOverTcpIsTheClientsAddress) {
  Watchdog wd("PeerTcp", 20000);
  Basic();
  RawConn c(rpc_server_port(s_));
  c.Send(EchoFrame("Say", 1, "who").Bytes());
  ExpectSayReply(&c, 1, "who");
  sockaddr_in local = {};
  socklen_t len = sizeof local;
  ASSERT_EQ(0, getsockname(c.fd(), reinterpret_cast<sockaddr *>(&local), &len));
  Seen s = LastSeen();
  EXPECT_EQ("test.v1.Echo/Say", s.method);
  ASSERT_EQ(0, s.peer_rc);
  ASSERT_EQ(AF_INET, s.peer.addr.ss_family);
  EXPECT_EQ(socklen_t(sizeof(sockaddr_in)), s.peer.addr_len);
  const auto *a = reinterpret_cast<const sockaddr_in *>(&s.peer.addr);
  EXPECT_EQ(htonl(INADDR_LOOPBACK), a->sin_addr.s_addr);
  EXPECT_EQ(local.sin_port, a->sin_port);
  EXPECT_EQ(0, s.peer.has_cred);
  EXPECT_EQ("echo:chan", Call(ch_, "Say", "chan").text);
  EXPECT_EQ(0, LastSeen().peer_rc);
  Call(ch_, "Fail", "x", {}, RPC_STATUS_INTERNAL);
  EXPECT_EQ("test.v1.Echo/Fail", LastSeen().method);
}

TEST_F(RpcMetadataTest, PeerOverAUnixSocketHasTheClientsCredentials) {
  Watchdog wd("PeerUnix", 20000);
  char dir[] = "/tmp/gaio_md_XXXXXX";
  ASSERT_NE(nullptr, mkdtemp(dir));
  std::string addr = std::string("unix:") + dir + "/md.sock";
  s_ = Server({}, {}, addr);
  ch_ = Channel(addr);
  Result r = Call(ch_, "Say", "local");
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.text;
  Seen s = LastSeen();
  ASSERT_EQ(0, s.peer_rc);
  EXPECT_EQ(AF_UNIX, s.peer.addr.ss_family);
  EXPECT_EQ(1, s.peer.has_cred);
  EXPECT_EQ(getuid(), s.peer.uid);
  EXPECT_EQ(getgid(), s.peer.gid);
  EXPECT_EQ(getpid(), s.peer.pid);
  DestroyChannel(ch_);
  DestroyServer(s_);
  rmdir(dir);
}

// ---- Client interceptors ---------------------------------------------------------------------

TEST_F(RpcMetadataTest, ClientInterceptorAddsAHeaderAndSeesEveryCallEndOnce) {
  Watchdog wd("ClientInterceptor", 30000);
  s_ = Server();
  ClientIc &ic = NewClientIc();
  ic.add_key = "x-added";
  ic.add_value = "yes";
  rpc_client_interceptor x = ClientInterceptor(&ic);
  rpc_channel_options co = {};
  co.interceptors = &x;
  co.interceptor_count = 1;
  rpc_channel *ch = Channel(Target(s_), co);
  std::set<uint64_t> ids;
  uint64_t id = 0;
  // OK, with the header seen by the server.
  ASSERT_EQ(0, SubmitOpts(ch, Cq(), "Say", "ok", {{"tenant", "acme"}}, nullptr, &id));
  ids.insert(id);
  std::vector<Done> d = Collect(Cq(), 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_OK, d[0].status);
  EXPECT_EQ(id, d[0].call_id);
  MdList h = LastSeen().headers;
  EXPECT_NE(h.end(), std::find(h.begin(), h.end(), Md("x-added", "yes")));
  EXPECT_NE(h.end(), std::find(h.begin(), h.end(), Md("tenant", "acme")));
  // DEADLINE_EXCEEDED.
  ASSERT_EQ(0, SubmitOpts(ch, Cq(), "Hold", "deadline", {}, nullptr, &id, 50));
  ids.insert(id);
  d = Collect(Cq(), 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, d[0].status);
  // CANCELLED.
  ASSERT_EQ(0, SubmitOpts(ch, Cq(), "Hold", "cancel", {}, nullptr, &id, 5000));
  ids.insert(id);
  ASSERT_TRUE(WaitHeld(2));
  ASSERT_EQ(0, rpc_channel_cancel(ch, id));
  d = Collect(Cq(), 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_CANCELLED, d[0].status);
  ReleaseHeld();
  // A blocking call counts the same.
  Result r = Call(ch, "Fail", "no", {}, RPC_STATUS_NOT_FOUND);
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.status);
  // CANCELLED by the channel's destruction, for calls in flight.
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(0, SubmitOpts(ch, Cq(), "Hold", "destroyed", {}, nullptr, &id, 5000));
    ids.insert(id);
  }
  ASSERT_TRUE(WaitHeld(3));
  DestroyChannel(ch);
  d = Collect(Cq(), 3);
  ASSERT_EQ(3u, d.size());
  for (const Done &c : d) EXPECT_EQ(RPC_STATUS_CANCELLED, c.status);
  std::lock_guard<std::mutex> lk(ic.mu);
  EXPECT_EQ(ids.size() + 1, ic.afters.size()) << "after() missing for some call";
  EXPECT_EQ(ids.size() + 1, size_t(ic.befores));
  for (auto &kv : ic.afters) EXPECT_EQ(1, kv.second) << "call " << kv.first;
  for (uint64_t i : ids) EXPECT_EQ(1u, ic.afters.count(i)) << "no after() for call " << i;
  int deadline = 0, cancelled = 0, ok = 0, not_found = 0;
  for (auto &kv : ic.statuses) {
    deadline += kv.second == RPC_STATUS_DEADLINE_EXCEEDED;
    cancelled += kv.second == RPC_STATUS_CANCELLED;
    ok += kv.second == RPC_STATUS_OK;
    not_found += kv.second == RPC_STATUS_NOT_FOUND;
  }
  EXPECT_EQ(1, ok);
  EXPECT_EQ(1, deadline);
  EXPECT_EQ(4, cancelled);
  EXPECT_EQ(1, not_found);
  for (uint64_t ns : ic.durations) EXPECT_LT(ns, 30000000000u);
}

TEST_F(RpcMetadataTest, ClientInterceptorSeesUnavailableWhenTheServerIsGone) {
  Watchdog wd("ClientUnavailable", 30000);
  rpc_server *s = Server();
  ClientIc &ic = NewClientIc();
  rpc_client_interceptor x = ClientInterceptor(&ic);
  rpc_channel_options co = {};
  co.interceptors = &x;
  co.interceptor_count = 1;
  co.backoff_initial_ms = 1000;  // no reconnect within the test
  co.backoff_max_ms = 1000;
  rpc_channel *ch = Channel(Target(s), co);
  EXPECT_EQ(RPC_STATUS_OK, Call(ch, "Say", "up").status);
  DestroyServer(s);
  Result r = Call(ch, "Say", "down");
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.status) << r.text;
  std::lock_guard<std::mutex> lk(ic.mu);
  ASSERT_EQ(2u, ic.afters.size());
  std::vector<int> st;
  for (auto &kv : ic.statuses) st.push_back(kv.second);
  EXPECT_EQ(std::vector<int>({RPC_STATUS_OK, RPC_STATUS_UNAVAILABLE}), st);
  for (auto &kv : ic.afters) EXPECT_EQ(1, kv.second);
}

TEST_F(RpcMetadataTest, ClientInterceptorRefusalIsTheSubmitsErrorWithNoCompletion) {
  Watchdog wd("ClientRefusal", 20000);
  s_ = Server();
  ClientIc &ic = NewClientIc();
  ic.refuse = -EACCES;
  rpc_client_interceptor x = ClientInterceptor(&ic);
  rpc_channel_options co = {};
  co.interceptors = &x;
  co.interceptor_count = 1;
  rpc_channel *ch = Channel(Target(s_), co);
  EXPECT_EQ(-EACCES, SubmitOpts(ch, Cq(), "Say", "no", {}, nullptr));
  Result r;
  EXPECT_EQ(-EACCES, CallOpts(ch, "Say", "no", {}, &r));
  rpc_method m = Method("Say");
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  EXPECT_EQ(-EACCES, rpc_channel_submit(ch, &m, &req.base, 5000, Cq(), nullptr, nullptr));
  // A stub's closure gets NULL at once.
  ProtobufCService *svc = rpc_channel_service(ch, &test__v1__echo__descriptor);
  ASSERT_NE(nullptr, svc);
  StubResult s;
  req.text = const_cast<char *>("stub");
  test__v1__echo__say(svc, &req, OnStubReply, &s);
  ASSERT_TRUE(WaitStub(&s));
  EXPECT_NE(RPC_STATUS_OK, s.status);
  rpc_completion none[1];
  EXPECT_EQ(0, rpc_cq_wait(Cq(), none, 1, 100));
  EXPECT_EQ(0, Invocations());
  ic.refuse = 0;
  EXPECT_EQ(RPC_STATUS_OK, Call(ch, "Say", "yes").status);
  std::lock_guard<std::mutex> lk(ic.mu);
  EXPECT_EQ(5, ic.befores);
  EXPECT_EQ(1u, ic.afters.size()) << "after() ran for a refused call";
}

// ---- Bearer-token auth -------------------------------------------------------------------

struct Verifier {
  std::atomic<int> calls{0};
};

int VerifyRight(void *arg, const char *token, size_t len, const rpc_call *call) {
  static_cast<Verifier *>(arg)->calls++;
  EXPECT_NE(nullptr, call);
  return len == 5 && memcmp(token, "right", 5) == 0;
}

TEST_F(RpcMetadataTest, BearerAuthRefusesMissingAndWrongTokens) {
  Watchdog wd("BearerAuth", 20000);
  static Verifier v;  // outlives the server, as the rpc_bearer_auth must
  v.calls = 0;
  auths_.push_back(rpc_bearer_auth{VerifyRight, &v});
  rpc_server_interceptor auth;
  rpc_auth_bearer_interceptor(&auth, &auths_.back());
  s_ = Server({}, {auth});
  ch_ = Channel(Target(s_));
  EXPECT_EQ(RPC_STATUS_UNAUTHENTICATED, Call(ch_, "Say", "none").status);
  EXPECT_EQ(RPC_STATUS_UNAUTHENTICATED,
            Call(ch_, "Say", "basic", {{"authorization", "Basic dTpw"}}).status);
  EXPECT_EQ(RPC_STATUS_PERMISSION_DENIED,
            Call(ch_, "Say", "wrong", {{"authorization", "Bearer wrong"}}).status);
  EXPECT_EQ(0, Invocations());
  Result r = Call(ch_, "Say", "right", {{"authorization", "Bearer right"}});
  EXPECT_EQ(RPC_STATUS_OK, r.status) << r.text;
  EXPECT_EQ("echo:right", r.text);
  EXPECT_EQ(1, Invocations());
  EXPECT_EQ(2, v.calls.load());
  // As channel metadata, for every call.
  MdList md = {{"authorization", "Bearer right"}};
  std::vector<rpc_md> view = View(md);
  rpc_channel_options co = {};
  co.metadata = view.data();
  co.metadata_count = view.size();
  rpc_channel *ch = Channel(Target(s_), co);
  EXPECT_EQ(RPC_STATUS_OK, Call(ch, "Say", "channel").status);
  EXPECT_EQ(RPC_STATUS_ABORTED, Call(ch, "Fail", "handler", {}, RPC_STATUS_ABORTED).status);
  EXPECT_EQ(3, Invocations());
}

// ---- W3C trace context over two hops -------------------------------------------------------

TEST_F(RpcMetadataTest, OneTraceIdAcrossTwoHops) {
  Watchdog wd("TraceTwoHops", 30000);
  rpc_server *a = Server();
  rpc_server *b = Server();
  rpc_client_interceptor trace;
  rpc_trace_client_interceptor(&trace);
  rpc_channel_options co = {};
  co.interceptors = &trace;
  co.interceptor_count = 1;
  rpc_channel *to_a = Channel(Target(a), co);
  rpc_channel *to_b = Channel(Target(b), co);
  {
    std::lock_guard<std::mutex> lk(g->mu);
    g->hop_a = a;
    g->hop_ch = to_b;
  }
  std::vector<std::string> traces;
  for (const char *text : {"parent-1", "implicit-1", "parent-2"}) {
    SCOPED_TRACE(text);
    {
      std::lock_guard<std::mutex> lk(g->mu);
      g->seen.clear();
      g->hop_status = -1;
    }
    Result r = Call(to_a, "Say", text);
    ASSERT_EQ(RPC_STATUS_OK, r.status) << r.text;
    std::lock_guard<std::mutex> lk(g->mu);
    EXPECT_EQ(RPC_STATUS_OK, g->hop_status);
    ASSERT_EQ(2u, g->seen.size());
    const Seen &sa = g->seen[0], &sb = g->seen[1];  // A records before it forwards
    EXPECT_EQ(a, sa.server);
    EXPECT_EQ(b, sb.server);
    ASSERT_EQ(0, sa.trace_rc);
    ASSERT_EQ(0, sb.trace_rc);
    EXPECT_TRUE(IsLowerHex(sa.trace_id, 32)) << sa.trace_id;
    EXPECT_EQ(sa.trace_id, sb.trace_id) << "B is not in A's trace";
    // traceparent: 00-<trace id>-<span id>-<flags>; B's parent span is a new one.
    ASSERT_EQ(55u, sa.traceparent.size()) << sa.traceparent;
    ASSERT_EQ(55u, sb.traceparent.size()) << sb.traceparent;
    EXPECT_EQ("00-" + sa.trace_id + "-", sa.traceparent.substr(0, 36));
    EXPECT_EQ("00-" + sb.trace_id + "-", sb.traceparent.substr(0, 36));
    EXPECT_TRUE(IsLowerHex(sa.traceparent.substr(36, 16), 16));
    EXPECT_TRUE(IsLowerHex(sb.traceparent.substr(36, 16), 16));
    EXPECT_NE(sa.traceparent.substr(36, 16), sb.traceparent.substr(36, 16));
    printf("%s: trace id at A %s, at B %s\n", text, sa.trace_id.c_str(), sb.trace_id.c_str());
    traces.push_back(sa.trace_id);
  }
  EXPECT_EQ(3u, std::set<std::string>(traces.begin(), traces.end()).size())
      << "each client call starts its own trace";
  {
    std::lock_guard<std::mutex> lk(g->mu);
    g->hop_a = nullptr;
  }
}

// ---- The channel against a scripted server --------------------------------------------------

std::string PackedReply(const char *text) {
  Test__V1__EchoReply r = TEST__V1__ECHO_REPLY__INIT;
  r.text = const_cast<char *>(text);
  std::string out(protobuf_c_message_get_packed_size(&r.base), '\0');
  protobuf_c_message_pack(&r.base, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

RawFrame Response(uint32_t id, const std::string &body, uint8_t status = RPC_STATUS_OK,
                  uint8_t flags = 0) {
  RawFrame f;
  f.type = RPC_TYPE_RESPONSE;
  f.status = status;
  f.flags = flags;
  f.id = id;
  f.body = body;
  return f;
}

class RpcMetadataWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(listener_.ok());
    MdList chmd = {{"tenant", "acme"}};
    std::vector<rpc_md> v = View(chmd);
    rpc_channel_options co = {};
    co.backoff_initial_ms = 5;
    co.backoff_max_ms = 20;
    co.metadata = with_channel_md_ ? v.data() : nullptr;
    co.metadata_count = with_channel_md_ ? v.size() : 0;
    ASSERT_EQ(0, rpc_channel_create(&ch_, ("127.0.0.1:" + std::to_string(listener_.port())).c_str(), &co));
    ASSERT_EQ(0, rpc_cq_create(&cq_));
  }
  void TearDown() override {
    rpc_channel_destroy(ch_);
    rpc_cq_destroy(cq_);
  }
  Got Request(RawConn *c) {
    Got got = c->Next();
    EXPECT_TRUE(got.ok);
    EXPECT_EQ(RPC_TYPE_REQUEST, got.type);
    return got;
  }
  bool with_channel_md_ = false;
  gaio_test::Listener listener_;
  rpc_channel *ch_ = nullptr;
  rpc_cq *cq_ = nullptr;
};

TEST_F(RpcMetadataWireTest, RequestWithoutMetadataIsByteIdenticalToVersionOne) {
  Watchdog wd("RequestV1", 20000);
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "v1", {}, nullptr));
  RawConn a(listener_.Accept());
  Got r = Request(&a);
  EXPECT_EQ(0, r.flags);
  EXPECT_EQ(PackedRequest("v1"), r.body);
  a.Send(Response(r.id, PackedReply("one")).Bytes());
  std::vector<Done> d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_OK, d[0].status);
  EXPECT_TRUE(d[0].trailers.empty());
  // rpc_channel_submit() sends the same bytes.
  rpc_method m = Method("Say");
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("v1");
  ASSERT_EQ(0, rpc_channel_submit(ch_, &m, &req.base, 5000, cq_, nullptr, nullptr));
  Got r2 = Request(&a);
  EXPECT_EQ(0, r2.flags);
  EXPECT_EQ(PackedRequest("v1"), r2.body);
  a.Send(Response(r2.id, PackedReply("two")).Bytes());
  EXPECT_EQ(1u, Collect(cq_, 1).size());
}

TEST_F(RpcMetadataWireTest, TrailersFromTheServerAndMalformedOnesFailOnlyTheirCall) {
  Watchdog wd("ClientTrailers", 20000);
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "a", {{"x-call", "1"}}, reinterpret_cast<void *>(1)));
  RawConn a(listener_.Accept());
  Got r = Request(&a);
  EXPECT_EQ(RPC_FLAG_METADATA, r.flags);
  EXPECT_EQ(Block({{"x-call", "1"}}) + PackedRequest("a"), r.body);
  a.Send(Response(r.id, Block({{"k", "v"}, {"bin", AllBytes()}}) + PackedReply("ok"),
                  RPC_STATUS_OK, RPC_FLAG_METADATA).Bytes());
  std::vector<Done> d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_OK, d[0].status);
  EXPECT_EQ("ok", d[0].text);
  EXPECT_EQ(MdList({{"k", "v"}, {"bin", AllBytes()}}), d[0].trailers);
  // An error with trailers: block, then the text.
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "b", {}, reinterpret_cast<void *>(2)));
  r = Request(&a);
  a.Send(Response(r.id, Block({{"retry-after", "3"}}) + "try later", RPC_STATUS_UNAVAILABLE,
                  RPC_FLAG_METADATA).Bytes());
  d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, d[0].status);
  EXPECT_EQ("try later", d[0].text);
  EXPECT_EQ(MdList({{"retry-after", "3"}}), d[0].trailers);
  // Malformed trailers: INTERNAL for that call; the connection and the other call go on.
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "c", {}, reinterpret_cast<void *>(3)));
  Got r3 = Request(&a);
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "d", {}, reinterpret_cast<void *>(4)));
  Got r4 = Request(&a);
  a.Send(Response(r3.id, Le32(50) + "xx", RPC_STATUS_OK, RPC_FLAG_METADATA).Bytes());
  d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(intptr_t(3), intptr_t(d[0].ctx));
  EXPECT_EQ(RPC_STATUS_INTERNAL, d[0].status);
  EXPECT_EQ("malformed metadata", d[0].text);
  a.Send(Response(r4.id, PackedReply("d")).Bytes());
  d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_OK, d[0].status);
  // Over the channel's limit (65 entries): RESOURCE_EXHAUSTED for that call, connection kept.
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "e", {}, reinterpret_cast<void *>(5)));
  r = Request(&a);
  a.Send(Response(r.id, Block(Numbered(RPC_DEFAULT_MAX_METADATA_ENTRIES + 1)) + PackedReply("e"),
                  RPC_STATUS_OK, RPC_FLAG_METADATA).Bytes());
  d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, d[0].status);
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "f", {}, reinterpret_cast<void *>(6)));
  r = Request(&a);
  a.Send(Response(r.id, PackedReply("f")).Bytes());
  d = Collect(cq_, 1);
  ASSERT_EQ(1u, d.size());
  EXPECT_EQ(RPC_STATUS_OK, d[0].status);
  EXPECT_TRUE(d[0].trailers.empty());
}

class RpcMetadataWireChannelMdTest : public RpcMetadataWireTest {
 protected:
  void SetUp() override {
    with_channel_md_ = true;
    RpcMetadataWireTest::SetUp();
  }
};

TEST_F(RpcMetadataWireChannelMdTest, ChannelHeadersComeFirstInTheBlock) {
  Watchdog wd("ChannelHeadersFirst", 20000);
  ASSERT_EQ(0, SubmitOpts(ch_, cq_, "Say", "x", {{"x-call", "1"}}, nullptr));
  RawConn a(listener_.Accept());
  Got r = Request(&a);
  EXPECT_EQ(RPC_FLAG_METADATA, r.flags);
  std::string msg;
  EXPECT_EQ(MdList({{"tenant", "acme"}, {"x-call", "1"}}), SplitBody(r, &msg));
  EXPECT_EQ(PackedRequest("x"), msg);
  EXPECT_EQ(Block({{"tenant", "acme"}, {"x-call", "1"}}) + PackedRequest("x"), r.body);
  a.Send(Response(r.id, PackedReply("ok")).Bytes());
  EXPECT_EQ(1u, Collect(cq_, 1).size());
}

}  // namespace
