// Many machines (issue 15): dns:/// targets against a real dnsmasq started by the test, three
// replicas on 127.0.0.1, 127.0.0.2 and 127.0.0.3, balancing, ejection and retries.
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"
#include "tests/test_util.h"

namespace {

using gaio_test::Watchdog;
using Clock = std::chrono::steady_clock;

constexpr int kReplicas = 3;
constexpr int kResolveMs = 200;  // the channels' re-resolve interval
constexpr int kCallMs = 5000;    // deadline of each call

// ---- Replicas: the Echo service, with a behaviour per server ----------------------------

enum Mode { kOk, kUnavailable, kSlow };

struct Replicas {
  std::mutex mu;
  std::map<rpc_server *, int> index;  // server -> replica 0..2
  int calls[kReplicas] = {0, 0, 0};
  Mode mode[kReplicas] = {kOk, kOk, kOk};
  int slow_ms = 40;
};
Replicas *g;

int Which(void *data) {
  std::lock_guard<std::mutex> lk(g->mu);
  int i = g->index[rpc_call_server(rpc_server_call(data))];
  g->calls[i]++;
  return i;
}

void Reply(Test__V1__EchoReply_Closure closure, void *data, int i) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = "r" + std::to_string(i);
  out.text = const_cast<char *>(text.c_str());
  closure(&out, data);
}

// Say: replies at once, fails UNAVAILABLE, or replies after slow_ms from another thread, as
// the replica's mode says. Slow and Hold are the same (unused here).
void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *, Test__V1__EchoReply_Closure closure,
           void *data) {
  int i = Which(data);
  Mode m;
  int ms;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    m = g->mode[i];
    ms = g->slow_ms;
  }
  if (m == kUnavailable) {
    rpc_call_fail(rpc_server_call(data), RPC_STATUS_UNAVAILABLE, "replica unwell");
  } else if (m == kSlow) {
    std::thread([=] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      Reply(closure, data, i);
    }).detach();
  } else {
    Reply(closure, data, i);
  }
}

// Slow: always replies after delay_ms (the calls in flight when a replica is killed).
void h_slow(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in, Test__V1__EchoReply_Closure closure,
            void *data) {
  int i = Which(data);
  int ms = in->delay_ms;
  std::thread([=] {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    Reply(closure, data, i);
  }).detach();
}

void h_hold(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in, Test__V1__EchoReply_Closure c,
            void *d) {
  h_say(s, in, c, d);
}
void h_fail(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in, Test__V1__EchoReply_Closure c,
            void *d) {
  h_say(s, in, c, d);
}

Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

void FreeReply(ProtobufCMessage *m) {
  if (m) protobuf_c_message_free_unpacked(m, nullptr);
}

// A free TCP port on 127.0.0.1, which the replicas then bind on .1, .2 and .3.
int FreePort(int type) {
  int fd = socket(AF_INET, type, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, (sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (sockaddr *)&a, &len) < 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// Whether port is free on 127.0.0.1 for a socket of this type (bound, then released).
bool PortFree(int type, int port) {
  int fd = socket(AF_INET, type, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  bool ok = fd >= 0 && bind(fd, (sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

// A port for dnsmasq, which binds it for UDP and TCP and cannot be handed a bound socket.
// Chosen below the kernel's ephemeral range (ip_local_port_range starts at 32768), free for
// both protocols now: no port-0 bind and no outgoing connection of a test running in
// parallel takes it meanwhile, and a restart on the same port finds it free.
int DnsPort() {
  static unsigned seed = (unsigned)getpid() * 2654435761u;
  for (int i = 0; i < 1000; i++) {
    int port = 20000 + (int)(rand_r(&seed) % 12000);
    if (PortFree(SOCK_DGRAM, port) && PortFree(SOCK_STREAM, port)) return port;
  }
  return -1;
}

// Whether a DNS server answers on 127.0.0.1:port within ms: one query for "ready.test" A
// (any answer counts, NXDOMAIN included). Unlike a bind probe, it cannot take the port
// from a dnsmasq that is still starting.
bool DnsAnswers(int port, int ms) {
  static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,  // header
                                    5,    'r',  'e',  'a',  'd', 'y', 4, 't', 'e', 's', 't', 0,
                                    0,    1,    0,    1};  // A, IN
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  unsigned char r[512];
  bool ok = connect(fd, (sockaddr *)&a, sizeof a) == 0 && send(fd, q, sizeof q, 0) == (ssize_t)sizeof q &&
            recv(fd, r, sizeof r, 0) >= 2 && r[0] == q[0] && r[1] == q[1];
  close(fd);
  return ok;
}

// ---- dnsmasq -------------------------------------------------------------------------------

class Dnsmasq {
 public:
  Dnsmasq() {
    const char *tmp = getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/dns_test_" + std::to_string(getpid());
    mkdir(dir_.c_str(), 0755);
    hosts_ = dir_ + "/hosts";
    conf_ = dir_ + "/dnsmasq.conf";
    port_ = DnsPort();
  }
  ~Dnsmasq() { Stop(); }
  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  void WriteHosts(const std::string &text) {
    std::ofstream(hosts_ + ".new") << text;
    rename((hosts_ + ".new").c_str(), hosts_.c_str());
  }
  void WriteConf(const std::string &text) { std::ofstream(conf_) << text; }

  // Start dnsmasq and wait (bounded) until it holds its port. A port taken meanwhile (by a
  // test running in parallel) makes it exit: then another port, unless keep_port (a restart:
  // the channel knows the port).
  void Start(bool keep_port = false) {
    for (int attempt = 0; attempt < 5; attempt++) {
      if (TryStart()) return;
      if (keep_port) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      else port_ = DnsPort();
    }
    FAIL() << "dnsmasq did not start";
  }
  bool TryStart() {
    std::string port = "--port=" + std::to_string(port_);
    std::string hosts = "--addn-hosts=" + hosts_;
    std::string conf = "--conf-file=" + conf_;
    std::ofstream(conf_, std::ios::app).flush();  // exists, maybe empty
    pid_ = fork();
    if (pid_ == 0) {
      const char *argv[] = {"/usr/sbin/dnsmasq", "--no-daemon", port.c_str(),
                            "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                            "--no-hosts", hosts.c_str(), conf.c_str(), "--pid-file=",
                            "--log-facility=/dev/null", geteuid() == 0 ? "--user=root" : nullptr,
                            nullptr};
      execv(argv[0], const_cast<char **>(argv));
      _exit(127);
    }
    if (pid_ < 0) return false;
    auto until = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < until) {
      if (DnsAnswers(port_, 50)) return true;
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {  // could not bind (port taken): exited
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // refused: not bound yet
    }
    Stop();
    return false;
  }
  void Reload() { kill(pid_, SIGHUP); }  // re-reads the hosts file (not the conf)
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string dir_, hosts_, conf_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// ---- Fixture ---------------------------------------------------------------------------------

class DnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g = new Replicas;
    port_ = FreePort(SOCK_STREAM);
    ASSERT_GT(port_, 0);
    for (int i = 0; i < kReplicas; i++) StartReplica(i);
    ASSERT_EQ(0, rpc_method_find(&say_, &test__v1__echo__descriptor, "Say"));
    ASSERT_EQ(0, rpc_method_find(&slow_, &test__v1__echo__descriptor, "Slow"));
  }
  void TearDown() override {
    rpc_channel_destroy(ch_);
    for (auto &s : srv_) rpc_server_destroy(s);
    dns_.Stop();
    delete g;
    g = nullptr;
  }

  void StartReplica(int i) {
    rpc_server *s = nullptr;
    rpc_server_options o = {};
    ASSERT_EQ(0, rpc_server_create(&s, &o));
    ASSERT_EQ(0, rpc_server_add_service(s, &g_service.base));
    std::string addr = "127.0.0." + std::to_string(i + 1) + ":" + std::to_string(port_);
    ASSERT_EQ(0, rpc_server_listen(s, addr.c_str())) << addr;
    ASSERT_EQ(0, rpc_server_start(s));
    std::lock_guard<std::mutex> lk(g->mu);
    g->index[s] = i;
    srv_[i] = s;
  }
  void KillReplica(int i) {
    rpc_server_destroy(srv_[i]);  // drain 0: the calls in flight there are lost
    srv_[i] = nullptr;
  }

  static std::string Hosts(std::initializer_list<int> replicas) {
    std::string t;
    for (int i : replicas) t += "127.0.0." + std::to_string(i + 1) + " svc.test\n";
    return t;
  }

  void Open(const std::string &target, rpc_channel_options co, int resolve_ms = kResolveMs) {
    std::string server = dns_.server();
    co.resolver = server.c_str();  // copied by create
    co.resolve_interval_ms = resolve_ms;
    co.backoff_initial_ms = 20;
    co.backoff_max_ms = 200;
    ASSERT_EQ(0, rpc_channel_create(&ch_, target.c_str(), &co));
  }
  std::string Name() const { return "dns:///svc.test:" + std::to_string(port_); }

  // One blocking call of m; returns its status.
  int Call(const rpc_method &m, int delay_ms = 0) {
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    req.delay_ms = delay_ms;
    ProtobufCMessage *reply = nullptr;
    char msg[256];
    int st = rpc_channel_call(ch_, &m, &req.base, kCallMs, &reply, msg, sizeof msg);
    if (reply) protobuf_c_message_free_unpacked(reply, nullptr);
    last_msg_ = msg;
    return st;
  }

  void Counts(int out[kReplicas]) {
    std::lock_guard<std::mutex> lk(g->mu);
    for (int i = 0; i < kReplicas; i++) out[i] = g->calls[i];
  }
  void ResetCounts() {
    std::lock_guard<std::mutex> lk(g->mu);
    for (int i = 0; i < kReplicas; i++) g->calls[i] = 0;
  }
  void SetMode(int i, Mode m) {
    std::lock_guard<std::mutex> lk(g->mu);
    g->mode[i] = m;
  }
  // What rpc_channel_get_stats() says of discovery, retries and ejection now.
  struct ChanStats {
    uint64_t resolutions, resolve_failures, retries, retries_refused, ejections;
    unsigned endpoints;
    std::vector<std::string> addresses;  // of the endpoints in the set
  };
  ChanStats Stats() {
    rpc_channel_stats st = {};
    EXPECT_EQ(0, rpc_channel_get_stats(ch_, &st));
    ChanStats s = {st.resolutions, st.resolve_failures, st.retries, st.retries_refused,
                   st.ejections, (unsigned)st.nendpoints, {}};
    for (size_t i = 0; i < st.nendpoints; i++) s.addresses.push_back(st.endpoints[i].address);
    rpc_channel_stats_free(&st);
    return s;
  }
  // Reads the channel's stats from another thread, as a monitoring thread would, until
  // destroyed; every read must succeed and list no endpoint twice (TSan checks the rest).
  class StatsPoller {
   public:
    explicit StatsPoller(rpc_channel *ch) : th_([this, ch] {
      while (!stop_) {
        rpc_channel_stats st = {};
        if (rpc_channel_get_stats(ch, &st) != 0) bad_++;
        std::set<std::string> seen;
        for (size_t i = 0; i < st.nendpoints; i++)
          if (!seen.insert(st.endpoints[i].address).second) bad_++;
        rpc_channel_stats_free(&st);
        reads_++;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }) {}
    ~StatsPoller() {
      stop_ = true;
      th_.join();
    }
    int bad() const { return bad_; }
    int reads() const { return reads_; }

   private:
    std::atomic<bool> stop_{false};
    std::atomic<int> bad_{0}, reads_{0};
    std::thread th_;
  };
  // Calls Say until replica i has taken one, for at most ms; returns whether it did.
  bool CallUntilReplica(int i, int ms) {
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < until) {
      EXPECT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
      int c[kReplicas];
      Counts(c);
      if (c[i] > 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // Waits (bounded) until the channel has n endpoints.
  bool WaitEndpoints(unsigned n, int ms) {
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < until) {
      if (Stats().endpoints == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  Dnsmasq dns_;
  int port_ = 0;
  rpc_server *srv_[kReplicas] = {};
  rpc_channel *ch_ = nullptr;
  rpc_method say_, slow_;
  std::string last_msg_;
};

// ---- Targets -----------------------------------------------------------------------------------

TEST(DnsTarget, BadTargetsAndResolversAreRefused) {
  rpc_channel *ch = nullptr;
  rpc_channel_options co = {};
  for (const char *t : {"dns:///", "dns:///name", "dns:///name:", "dns:///name:99999",
                        "dns:///name:0", "dns:///:80", "dns:///name:80x"})
    EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, t, &co)) << t;
  co.resolver = "not an address";
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "dns:///name:80", &co));
  co.resolver = nullptr;
  co.balancer = 99;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "dns:///name:80", &co));
  co.balancer = 0;
  const char *names[] = {"test.v1.Echo/Say", nullptr};
  co.idempotent_methods = names;
  co.idempotent_count = 2;  // a NULL name
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "127.0.0.1:1", &co));
  co.idempotent_count = RPC_MAX_IDEMPOTENT_METHODS + 1;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "127.0.0.1:1", &co));
  co.idempotent_count = 1;
  co.retry_max_attempts = RPC_RETRY_MAX_ATTEMPTS_LIMIT + 1;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "127.0.0.1:1", &co));
  co.retry_max_attempts = 0;
  co.eject_ms = RPC_MAX_EJECT_MS + 1;
  EXPECT_EQ(-EINVAL, rpc_channel_create(&ch, "127.0.0.1:1", &co));
  EXPECT_EQ(nullptr, ch);
}

// No DNS server answers the first resolution: calls fail UNAVAILABLE, saying why.
TEST_F(DnsTest, FirstResolutionFailsCallsUnavailable) {
  Watchdog wd("FirstResolutionFailsCallsUnavailable", 20000);
  Open(Name(), {});  // dnsmasq never started: nothing on its port
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, Call(say_));
  EXPECT_NE(std::string::npos, last_msg_.find("DNS")) << last_msg_;
  EXPECT_GE(Stats().resolve_failures, 1u);
  EXPECT_EQ(0u, Stats().endpoints);
}

// ---- Discovery ---------------------------------------------------------------------------------

TEST_F(DnsTest, ReplicaAddedGetsTrafficWithinOneReresolvePeriod) {
  Watchdog wd("ReplicaAdded", 30000);
  dns_.WriteHosts(Hosts({0, 1}));
  dns_.Start();
  rpc_channel_options co = {};
  co.balancer = RPC_LB_ROUND_ROBIN;
  Open(Name(), co);
  StatsPoller poller(ch_);
  for (int i = 0; i < 20; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  int c[kReplicas];
  Counts(c);
  EXPECT_EQ(0, c[2]);
  EXPECT_EQ(20, c[0] + c[1]);
  EXPECT_EQ(2u, Stats().endpoints);
  EXPECT_GE(Stats().resolutions, 1u);
  EXPECT_EQ(0u, Stats().resolve_failures);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Reload();
  auto t0 = Clock::now();
  // One period, plus slack for the connection and a loaded machine (bounded, not a speed test).
  EXPECT_TRUE(CallUntilReplica(2, kResolveMs + 5000));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  printf("replica 3 took its first call %lld ms after the DNS change (period %d ms)\n",
         (long long)ms, kResolveMs);
  ChanStats s = Stats();
  EXPECT_EQ(3u, s.endpoints);
  std::set<std::string> want;
  for (int i = 0; i < kReplicas; i++) want.insert("127.0.0." + std::to_string(i + 1) + ":" + std::to_string(port_));
  EXPECT_EQ(want, std::set<std::string>(s.addresses.begin(), s.addresses.end()));
  EXPECT_GT(poller.reads(), 0);
  EXPECT_EQ(0, poller.bad());
}

// A replica leaves DNS: it takes no new call, its calls in flight finish.
TEST_F(DnsTest, ReplicaRemovedIsDrained) {
  Watchdog wd("ReplicaRemoved", 30000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  rpc_channel_options co = {};
  co.balancer = RPC_LB_ROUND_ROBIN;
  Open(Name(), co);
  StatsPoller poller(ch_);
  ASSERT_TRUE(CallUntilReplica(2, 5000));
  ASSERT_TRUE(WaitEndpoints(3, 5000));
  // Calls in flight on every replica (400 ms each) while replica 3 leaves DNS.
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.delay_ms = 400;
  for (int i = 0; i < 6; i++)
    ASSERT_EQ(0, rpc_channel_submit(ch_, &slow_, &req.base, kCallMs, cq, nullptr, nullptr));
  dns_.WriteHosts(Hosts({0, 1}));
  dns_.Reload();
  ASSERT_TRUE(WaitEndpoints(2, 5000));
  {
    std::vector<std::string> a = Stats().addresses;  // replica 3 has left the list
    std::string gone = "127.0.0.3:" + std::to_string(port_);
    EXPECT_EQ(a.end(), std::find(a.begin(), a.end(), gone));
  }
  rpc_completion done[6];
  int got = 0;
  while (got < 6) {
    int n = rpc_cq_wait(cq, done + got, 6 - got, kCallMs);
    ASSERT_GT(n, 0);
    for (int i = got; i < got + n; i++) {
      EXPECT_EQ(RPC_STATUS_OK, done[i].status) << done[i].message;
      FreeReply(done[i].reply);
    }
    got += n;
  }
  rpc_cq_destroy(cq);
  ResetCounts();
  for (int i = 0; i < 20; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  int c[kReplicas];
  Counts(c);
  EXPECT_EQ(0, c[2]);
  EXPECT_EQ(10, c[0]);
  EXPECT_GT(poller.reads(), 0);
  EXPECT_EQ(0, poller.bad());
  EXPECT_EQ(10, c[1]);
}

// The DNS server goes away: resolutions fail, the last list is kept and used.
TEST_F(DnsTest, DnsServerDownKeepsTheLastList) {
  Watchdog wd("DnsServerDown", 30000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  rpc_channel_options co = {};
  co.balancer = RPC_LB_ROUND_ROBIN;
  Open(Name(), co);
  ASSERT_TRUE(WaitEndpoints(3, 5000));
  dns_.Stop();
  uint64_t failed = Stats().resolve_failures;
  auto until = Clock::now() + std::chrono::seconds(10);
  while (Stats().resolve_failures < failed + 2 && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(Stats().resolve_failures, failed + 2);
  EXPECT_EQ(3u, Stats().endpoints);
  ASSERT_TRUE(CallUntilReplica(2, 5000));  // every endpoint connected
  ResetCounts();
  for (int i = 0; i < 30; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  int c[kReplicas];
  Counts(c);
  EXPECT_EQ(10, c[0]);
  EXPECT_EQ(10, c[1]);
  EXPECT_EQ(10, c[2]);
}

// SRV records: the lowest priority only, weights honoured; a new answer moves the traffic.
TEST_F(DnsTest, SrvPriorityAndWeight) {
  Watchdog wd("SrvPriorityAndWeight", 30000);
  std::string p = std::to_string(port_);
  dns_.WriteHosts("127.0.0.1 r1.svc.test\n127.0.0.2 r2.svc.test\n127.0.0.3 r3.svc.test\n");
  dns_.WriteConf("srv-host=_echo._tcp.svc.test,r1.svc.test," + p + ",10,1\n" +
                 "srv-host=_echo._tcp.svc.test,r2.svc.test," + p + ",10,3\n" +
                 "srv-host=_echo._tcp.svc.test,r3.svc.test," + p + ",20,1\n");
  dns_.Start();
  rpc_channel_options co = {};
  co.balancer = RPC_LB_ROUND_ROBIN;  // smooth weighted round robin: exact shares
  Open("dns:///_echo._tcp.svc.test", co);
  ASSERT_TRUE(CallUntilReplica(1, 5000));
  ASSERT_TRUE(WaitEndpoints(2, 5000));
  ASSERT_TRUE(CallUntilReplica(0, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // both connections ready
  ResetCounts();
  for (int i = 0; i < 40; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  int c[kReplicas];
  Counts(c);
  EXPECT_EQ(10, c[0]);  // weight 1 of 4
  EXPECT_EQ(30, c[1]);  // weight 3 of 4
  EXPECT_EQ(0, c[2]);   // priority 20: unused while priority 10 answers
  // A new SRV answer (dnsmasq re-reads its conf on a restart, on the same port).
  dns_.Stop();
  dns_.WriteConf("srv-host=_echo._tcp.svc.test,r3.svc.test," + p + ",5,1\n");
  dns_.Start(/*keep_port=*/true);
  ASSERT_TRUE(WaitEndpoints(1, 5000));
  ResetCounts();
  for (int i = 0; i < 10; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  Counts(c);
  EXPECT_EQ(10, c[2]);
}

// The SRV records' TTL bounds the re-resolve interval: with an interval of a minute, SRV records
// of TTL 1 s (dnsmasq's local-ttl) and target addresses of TTL 1 h (host-record), a new SRV
// answer is used within seconds.
TEST_F(DnsTest, SrvTtlBoundsTheResolveInterval) {
  Watchdog wd("SrvTtlBoundsTheResolveInterval", 30000);
  std::string p = std::to_string(port_);
  std::string targets = "host-record=r1.svc.test,127.0.0.1,3600\n"
                        "host-record=r3.svc.test,127.0.0.3,3600\n";
  dns_.WriteConf("local-ttl=1\n" + targets + "srv-host=_echo._tcp.svc.test,r1.svc.test," + p +
                 ",10,1\n");
  dns_.Start();
  Open("dns:///_echo._tcp.svc.test", {}, 60000);
  ASSERT_TRUE(CallUntilReplica(0, 5000));
  dns_.Stop();
  dns_.WriteConf("local-ttl=1\n" + targets + "srv-host=_echo._tcp.svc.test,r3.svc.test," + p +
                 ",10,1\n");
  dns_.Start(/*keep_port=*/true);
  // The next resolution comes after RPC_DNS_MIN_TTL_MS (the TTL of 1 s is below it), not 60 s.
  EXPECT_TRUE(CallUntilReplica(2, RPC_DNS_MIN_TTL_MS + 4000));
}

// ---- Failures: retries and ejection ----------------------------------------------------------

// Load on three replicas; one is killed with calls in flight. Idempotent calls: none fails.
TEST_F(DnsTest, ReplicaKilledZeroFailedIdempotentCalls) {
  Watchdog wd("ReplicaKilled", 60000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  rpc_channel_options co = {};
  const char *idem[] = {"test.v1.Echo/Slow"};
  co.idempotent_methods = idem;
  co.idempotent_count = 1;
  Open(Name(), co);
  ASSERT_TRUE(WaitEndpoints(3, 5000));
  std::atomic<int> ok{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> th;
  for (int t = 0; t < 6; t++)
    th.emplace_back([&] {
      Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
      req.delay_ms = 5;
      while (!stop) {
        ProtobufCMessage *reply = nullptr;
        int st = rpc_channel_call(ch_, &slow_, &req.base, kCallMs, &reply, nullptr, 0);
        if (reply) protobuf_c_message_free_unpacked(reply, nullptr);
        (st == RPC_STATUS_OK ? ok : failed)++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  KillReplica(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  for (auto &x : th) x.join();
  printf("%d calls, %d failed, %llu retries\n", ok.load() + failed.load(), failed.load(),
         (unsigned long long)Stats().retries);
  EXPECT_EQ(0, failed.load());
  EXPECT_GT(ok.load(), 0);
}

// The same with a method that is not idempotent: the calls lost with the replica fail, none is
// retried (it may have been processed).
TEST_F(DnsTest, ReplicaKilledNonIdempotentCallsAreNotRetried) {
  Watchdog wd("ReplicaKilledNonIdempotent", 60000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  rpc_channel_options co = {};
  const char *idem[] = {"test.v1.Echo/Say"};  // not Slow
  co.idempotent_methods = idem;
  co.idempotent_count = 1;
  co.balancer = RPC_LB_ROUND_ROBIN;
  Open(Name(), co);
  ASSERT_TRUE(CallUntilReplica(1, 5000));
  ASSERT_TRUE(WaitEndpoints(3, 5000));
  ASSERT_TRUE(CallUntilReplica(2, 5000));
  ASSERT_TRUE(CallUntilReplica(0, 5000));
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.delay_ms = 2000;
  for (int i = 0; i < 6; i++)  // two per replica
    ASSERT_EQ(0, rpc_channel_submit(ch_, &slow_, &req.base, kCallMs, cq, nullptr, nullptr));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  KillReplica(1);
  rpc_completion done[6];
  int got = 0, unavailable = 0;
  while (got < 6) {
    int n = rpc_cq_wait(cq, done + got, 6 - got, kCallMs);
    ASSERT_GT(n, 0);
    for (int i = got; i < got + n; i++) {
      unavailable += done[i].status == RPC_STATUS_UNAVAILABLE;
      FreeReply(done[i].reply);
    }
    got += n;
  }
  rpc_cq_destroy(cq);
  EXPECT_EQ(2, unavailable);
  EXPECT_EQ(0u, Stats().retries);
}

// A replica answering UNAVAILABLE is ejected after eject_failures answers in a row; the calls
// (idempotent) still succeed; a PING brings it back once it is well.
TEST_F(DnsTest, ReplicaReturningErrorsIsEjected) {
  Watchdog wd("ReplicaEjected", 30000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  rpc_channel_options co = {};
  const char *idem[] = {"test.v1.Echo/Say"};
  co.idempotent_methods = idem;
  co.idempotent_count = 1;
  co.eject_failures = 3;
  co.eject_ms = 300;
  co.retry_max_attempts = 5;  // more than eject_failures: a call outlasts the failing replica
  Open(Name(), co);
  ASSERT_TRUE(CallUntilReplica(2, 5000));
  SetMode(2, kUnavailable);
  ResetCounts();
  for (int i = 0; i < 60; i++) ASSERT_EQ(RPC_STATUS_OK, Call(say_)) << last_msg_;
  ChanStats s = Stats();
  int c[kReplicas];
  Counts(c);
  EXPECT_GE(s.ejections, 1u);
  EXPECT_GE((uint64_t)c[2], 3 * s.ejections);       // each ejection after exactly 3 answers,
  EXPECT_LT((uint64_t)c[2], 3 * (s.ejections + 1)); // and fewer since the last one
  EXPECT_EQ((uint64_t)c[2], s.retries);        // each failed answer retried elsewhere
  SetMode(2, kOk);
  uint64_t ej = Stats().ejections;
  ResetCounts();
  EXPECT_TRUE(CallUntilReplica(2, 5000));  // back after the ejection time and a PING
  EXPECT_EQ(ej, Stats().ejections);
}

// The retry budget: one replica, always UNAVAILABLE; retries stay within 10% of the calls plus
// the floor (refilled per second).
TEST_F(DnsTest, RetriesStayWithinTheBudget) {
  Watchdog wd("RetryBudget", 30000);
  dns_.WriteHosts(Hosts({0}));
  dns_.Start();
  rpc_channel_options co = {};
  const char *idem[] = {"test.v1.Echo/Say"};
  co.idempotent_methods = idem;
  co.idempotent_count = 1;
  co.eject_failures = -1;
  co.retry_max_attempts = 3;
  Open(Name(), co);
  SetMode(0, kUnavailable);
  auto t0 = Clock::now();
  const int kCalls = 200;
  for (int i = 0; i < kCalls; i++) ASSERT_EQ(RPC_STATUS_UNAVAILABLE, Call(say_));
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ChanStats s = Stats();
  double bound = RPC_RETRY_BUDGET_FLOOR * (1 + secs) + RPC_RETRY_BUDGET_RATIO * kCalls + 1;
  printf("%d calls in %.2f s: %llu retries, %llu refused (bound %.0f)\n", kCalls, secs,
         (unsigned long long)s.retries, (unsigned long long)s.retries_refused, bound);
  EXPECT_LE((double)s.retries, bound);
  EXPECT_GT(s.retries_refused, 0u);
  EXPECT_GT(s.retries, 0u);
  int c[kReplicas];
  Counts(c);
  EXPECT_EQ((uint64_t)c[0], kCalls + s.retries);  // every attempt reached the replica once
}

// ---- Balancing ------------------------------------------------------------------------------

// A slow replica (40 ms against none): p2c least-outstanding sends it far less than its third;
// round robin sends it exactly its third.
TEST_F(DnsTest, SlowReplicaGetsLessUnderP2c) {
  Watchdog wd("SlowReplica", 60000);
  dns_.WriteHosts(Hosts({0, 1, 2}));
  dns_.Start();
  for (int policy : {RPC_LB_P2C, RPC_LB_ROUND_ROBIN}) {
    rpc_channel_destroy(ch_);
    ch_ = nullptr;
    SetMode(2, kOk);
    rpc_channel_options co = {};
    co.balancer = policy;
    Open(Name(), co);
    ASSERT_TRUE(WaitEndpoints(3, 5000));
    for (int i = 0; i < kReplicas; i++) ASSERT_TRUE(CallUntilReplica(i, 5000));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    SetMode(2, kSlow);
    ResetCounts();
    rpc_cq *cq = nullptr;
    ASSERT_EQ(0, rpc_cq_create(&cq));
    Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
    const int kTotal = 300, kWindow = 12;
    int sent = 0, got = 0;
    for (; sent < kWindow; sent++)
      ASSERT_EQ(0, rpc_channel_submit(ch_, &say_, &req.base, kCallMs, cq, nullptr, nullptr));
    while (got < kTotal) {
      rpc_completion done[16];
      int n = rpc_cq_wait(cq, done, 16, kCallMs);
      ASSERT_GT(n, 0);
      for (int i = 0; i < n; i++) {
        EXPECT_EQ(RPC_STATUS_OK, done[i].status) << done[i].message;
        FreeReply(done[i].reply);
      }
      got += n;
      for (int i = 0; i < n && sent < kTotal; i++, sent++)
        ASSERT_EQ(0, rpc_channel_submit(ch_, &say_, &req.base, kCallMs, cq, nullptr, nullptr));
    }
    rpc_cq_destroy(cq);
    int c[kReplicas];
    Counts(c);
    printf("%s: %d %d %d (slow: the third)\n", policy == RPC_LB_P2C ? "p2c" : "round_robin", c[0],
           c[1], c[2]);
    EXPECT_EQ(kTotal, c[0] + c[1] + c[2]);
    if (policy == RPC_LB_P2C) EXPECT_LT(c[2], kTotal / 6);
    else EXPECT_EQ(kTotal / 3, c[2]);
  }
}

}  // namespace
