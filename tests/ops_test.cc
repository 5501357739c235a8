/* Behaviour suite for the operations of issue 4: accept, connect, recvfrom/sendto, cancel,
 * detach, pin_thread and the choice of backend, written against gaio/gaio.h.
 *
 * Like gaio_test.cc: every test runs over every backend (Backends() in test_util), checks exact
 * values (bytes, error codes, sizes, addresses), that every accepted submit gets exactly one
 * result, and ends with submitted == completed and no fd leaked. Waits are bounded (WaitResults
 * and a per-test Watchdog). Sockets are on 127.0.0.1 only; listeners bind port 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace {

using gaio_test::BackendTest;
using gaio_test::BackendUnavailable;
using gaio_test::Backends;
using gaio_test::Collected;
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
using gaio_test::SetRcvBuf;
using gaio_test::SocketPair;
using gaio_test::TcpPair;
using gaio_test::UniqueFd;
using gaio_test::UnixPair;
using gaio_test::WaitReadable;
using gaio_test::WaitResults;
using gaio_test::Watchdog;
using gaio_test::WriteAll;

constexpr uint64_t kMs = 1000000ull; /* nanoseconds per millisecond */
/* Every test of this suite is quick; a test still running after this is hung. */
constexpr int kTestWatchdogMs = 60000;
/* Slack allowed after a deadline before its -ETIMEDOUT result must have arrived. */
constexpr double kDeadlineSlackMs = 2000.0;

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

const sockaddr *Sa(const void *p) { return static_cast<const sockaddr *>(p); }

uint16_t LocalPort(int fd) {
  sockaddr_in sa = {};
  socklen_t sl = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &sl) != 0) return 0;
  return ntohs(sa.sin_port);
}

/* A socket of the given type bound to 127.0.0.1, port 0; its port in *port. */
UniqueFd BoundSocket(int type, uint16_t *port) {
  UniqueFd s(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!s.valid()) {
    ADD_FAILURE() << "socket: " << strerror(errno);
    return s;
  }
  sockaddr_in sa = Loopback(0);
  if (bind(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
    ADD_FAILURE() << "bind: " << strerror(errno);
    return UniqueFd();
  }
  *port = LocalPort(s.get());
  EXPECT_NE(*port, 0);
  return s;
}

bool IsNonBlocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }
bool IsCloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

/* Checks the common fields of one result. */
void ExpectResult(const gaio_result &r, const void *ctx, int fd, int op, int error, size_t size) {
  EXPECT_EQ(r.ctx, ctx) << Describe(r);
  EXPECT_EQ(r.fd, fd) << Describe(r);
  EXPECT_EQ(r.op, op) << Describe(r);
  EXPECT_EQ(r.error, error) << Describe(r);
  EXPECT_EQ(r.size, size) << Describe(r);
}

/* Distinct context pointers for tests that need a handful. */
void *Ctx(uintptr_t i) { return reinterpret_cast<void *>(0x1000 + i * 16); }

/* See OpsTest::MakeAcceptScene. */
struct AcceptScene {
  int lis = -1; /* attached */
  uint16_t port = 0;
  std::vector<UniqueFd> clients;
  std::set<uint16_t> client_ports;
  std::vector<UniqueFd> accepted;
};

class OpsTest : public BackendTest {
 protected:
  OpsTest() : BackendTest(kTestWatchdogMs) {}

  /* Exactly one result within a bound (a failure otherwise; the returned result is then
   * zeroed with error 1, which no check accepts). */
  gaio_result One(gaio_watcher *w = nullptr, int timeout_ms = 10000) {
    Collected c = WaitResults(w ? w : w_, 1, timeout_ms);
    if (c.results.size() == 1) return c.results[0];
    gaio_result r = {};
    r.error = 1;
    r.conn_fd = -1;
    return r;
  }

  /* A TCP stream between an attached end (returned) and a blocking peer (*peer). */
  int AttachedTcp(UniqueFd *peer, gaio_watcher *w = nullptr) {
    SocketPair p = TcpPair();
    if (!p.a.valid()) return -1;
    *peer = std::move(p.b);
    return Attach(p.a, w);
  }

  /* Runs `probe` in this thread while another thread is blocked in gaio_wait() on w_ with one
   * read pending on fd (ctx `pending`): the probe must see -EBUSY, and the read must then
   * still complete normally with the byte the peer writes. */
  void WhileAnotherThreadWaits(int fd, int peer, const std::function<void()> &probe);
  void MakeAcceptScene(AcceptScene *s);
  void WaitUntilWriteStalls(int peer);
  int AttachedSmallBufferTcp(UniqueFd *peer);
};

/* ------------------------------------------------------------------------------------------ */
/* accept                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* 64 accepts queued on one listener, 1000 client connections from a thread: every result is a
 * usable connection (non-blocking, CLOEXEC, the client's address), the contexts come back in
 * submission order, and every accepted fd then echoes through gaio. */
TEST_P(OpsTest, Accept1000ConnectionsFifoThenEcho) {
  const size_t kConns = 1000;
  const size_t kQueued = 64;
  Listener l(1024);
  ASSERT_TRUE(l.ok());
  const uint16_t lport = l.port();
  UniqueFd lfd(l.Release());
  const int lis = Attach(lfd);
  ASSERT_GE(lis, 0);

  struct Slot {
    sockaddr_storage peer;
    uint64_t seq;
  };
  std::vector<Slot> slots(kQueued);
  uint64_t next_seq = 0;
  auto submit = [&](Slot *s) {
    memset(&s->peer, 0xee, sizeof s->peer);
    s->seq = next_seq++;
    ASSERT_EQ(gaio_accept(w_, lis, &s->peer, s), 0);
  };
  for (Slot &s : slots) submit(&s);

  /* The clients: blocking connects, in order, from another thread. */
  std::mutex mu;
  std::map<uint16_t, int> client_by_port; /* client's local port -> its fd */
  std::atomic<int> client_errors{0};
  std::thread clients([&] {
    for (size_t i = 0; i < kConns; i++) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa = Loopback(lport);
      if (c < 0 || connect(c, Sa(&sa), sizeof sa) != 0) {
        fprintf(stderr, "client %zu: %s\n", i, strerror(errno));
        if (c >= 0) close(c);
        client_errors++;
        return;
      }
      std::lock_guard<std::mutex> lk(mu);
      client_by_port[LocalPort(c)] = c;
    }
  });

  std::vector<int> conns; /* accepted fds, owned by the test until attached */
  std::vector<uint16_t> peer_ports;
  uint64_t expect_seq = 0;
  size_t bad = 0;
  const uint64_t deadline = gaio_now() + 30000 * kMs;
  gaio_result batch[128];
  while (conns.size() < kConns && gaio_now() < deadline && client_errors == 0) {
    int n = gaio_wait(w_, batch, 128, 100);
    ASSERT_GE(n, 0) << gaio_strerror(n);
    for (int i = 0; i < n; i++) {
      const gaio_result &r = batch[i];
      Slot *s = static_cast<Slot *>(r.ctx);
      if (r.conn_fd >= 0) conns.push_back(r.conn_fd);
      const sockaddr_in *pa = reinterpret_cast<const sockaddr_in *>(&s->peer);
      bool ok = r.op == GAIO_OP_ACCEPT && r.fd == lis && r.error == 0 && r.conn_fd >= 0 &&
                s->seq == expect_seq && IsNonBlocking(r.conn_fd) && IsCloexec(r.conn_fd) &&
                r.addr_len == sizeof(sockaddr_in) && pa->sin_family == AF_INET &&
                pa->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
      if (!ok && bad++ < 5) {
        ADD_FAILURE() << "accept " << Describe(r) << " seq " << s->seq << " expected "
                      << expect_seq << " nonblock " << IsNonBlocking(r.conn_fd) << " cloexec "
                      << IsCloexec(r.conn_fd) << " family " << pa->sin_family;
      }
      peer_ports.push_back(ntohs(pa->sin_port));
      expect_seq++;
      if (next_seq < kConns) submit(s);
    }
  }
  clients.join();
  ASSERT_EQ(client_errors.load(), 0);
  ASSERT_EQ(conns.size(), kConns) << "accepts timed out";
  EXPECT_EQ(bad, 0u);
  ASSERT_EQ(client_by_port.size(), kConns);

  /* Each accepted connection carries its client's port, each exactly once. */
  std::set<uint16_t> seen(peer_ports.begin(), peer_ports.end());
  EXPECT_EQ(seen.size(), kConns);
  for (uint16_t p : peer_ports) EXPECT_EQ(client_by_port.count(p), 1u) << "peer port " << p;

  /* Echo a few bytes each way through every accepted connection: gaio writes (the loop
   * carries the writes out, so their results come first), the clients answer, gaio reads. */
  struct Echo {
    char out[16];
    char in[16];
  };
  std::vector<Echo> echo(kConns);
  for (size_t i = 0; i < kConns; i++) {
    ASSERT_EQ(gaio_attach(w_, conns[i]), 0) << "fd " << conns[i];
    snprintf(echo[i].out, sizeof echo[i].out, "to %05u", peer_ports[i]);
    ASSERT_EQ(gaio_write(w_, conns[i], echo[i].out, 8, &echo[i].out), 0);
  }
  Collected wr = WaitResults(w_, kConns);
  ASSERT_EQ(wr.results.size(), kConns);
  for (const gaio_result &r : wr.results) ASSERT_EQ(r.op, GAIO_OP_WRITE) << Describe(r);
  for (size_t i = 0; i < kConns; i++) {
    ASSERT_EQ(gaio_read_full(w_, conns[i], echo[i].in, 8, &echo[i].in, 0), 0);
  }
  for (size_t i = 0; i < kConns; i++) {
    int c = client_by_port[peer_ports[i]];
    char got[8];
    ASSERT_EQ(ReadExactly(c, got, 8, 5000), 8u);
    ASSERT_EQ(memcmp(got, echo[i].out, 8), 0) << "connection " << i;
    char back[9];
    snprintf(back, sizeof back, "fr %05u", peer_ports[i]);
    ASSERT_TRUE(WriteAll(c, back, 8));
  }
  Collected c = WaitResults(w_, kConns);
  ASSERT_EQ(c.results.size(), kConns);
  c.results.insert(c.results.end(), wr.results.begin(), wr.results.end());
  for (const gaio_result &r : c.results) {
    EXPECT_EQ(r.error, 0) << Describe(r);
    EXPECT_EQ(r.size, 8u) << Describe(r);
  }
  for (size_t i = 0; i < kConns; i++) {
    char want[9];
    snprintf(want, sizeof want, "fr %05u", peer_ports[i]);
    EXPECT_EQ(memcmp(echo[i].in, want, 8), 0) << "connection " << i;
  }
  for (auto &kv : client_by_port) close(kv.second);
  conns.push_back(lis);
  FreeAndFinish(conns);
}

/* peer NULL: the connection is accepted, no address is stored (addr_len 0). */
TEST_P(OpsTest, AcceptWithNullPeer) {
  Listener l(8);
  ASSERT_TRUE(l.ok());
  UniqueFd lfd(l.Release());
  const int lis = Attach(lfd);
  ASSERT_GE(lis, 0);
  ASSERT_EQ(gaio_accept(w_, lis, nullptr, Ctx(1)), 0);
  UniqueFd client = l.Connect();
  ASSERT_TRUE(client.valid());
  gaio_result r = One();
  ExpectResult(r, Ctx(1), lis, GAIO_OP_ACCEPT, 0, r.size);
  EXPECT_EQ(r.addr_len, 0u) << Describe(r);
  ASSERT_GE(r.conn_fd, 0) << Describe(r);
  UniqueFd conn(r.conn_fd);
  EXPECT_TRUE(IsNonBlocking(conn.get()));
  EXPECT_TRUE(IsCloexec(conn.get()));
  /* The accepted fd is the client's peer: bytes cross. */
  ASSERT_TRUE(WriteAll(client.get(), "abc", 3));
  char got[3];
  ASSERT_EQ(ReadExactly(conn.get(), got, 3, 5000), 3u);
  EXPECT_EQ(memcmp(got, "abc", 3), 0);
  FreeAndFinish({lis});
}

/* accept on a socket that is not listening gets the kernel's error as a result, not a hang. */
TEST_P(OpsTest, AcceptOnNonListeningSocketIsEINVAL) {
  uint16_t port = 0;
  UniqueFd s = BoundSocket(SOCK_STREAM, &port);
  ASSERT_TRUE(s.valid());
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_storage peer;
  ASSERT_EQ(gaio_accept(w_, fd, &peer, Ctx(1)), 0);
  gaio_result r = One(nullptr, 5000);
  ExpectResult(r, Ctx(1), fd, GAIO_OP_ACCEPT, -EINVAL, r.size);
  EXPECT_EQ(r.conn_fd, -1) << Describe(r);
  FreeAndFinish({fd});
}

TEST_P(OpsTest, AcceptOnUnattachedFdIsEBADF) {
  Listener l(8);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(gaio_accept(w_, l.fd(), nullptr, Ctx(1)), -EBADF);
  EXPECT_EQ(gaio_accept(w_, -1, nullptr, Ctx(1)), -EBADF);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
}

/* Freeing a listener with queued accepts: each gets -ECANCELED exactly once, and no
 * connection fd is handed out. */
TEST_P(OpsTest, FreeListenerCancelsQueuedAccepts) {
  const int kQueued = 8;
  Listener l(8);
  ASSERT_TRUE(l.ok());
  UniqueFd lfd(l.Release());
  const int lis = Attach(lfd);
  ASSERT_GE(lis, 0);
  std::vector<sockaddr_storage> peers(kQueued);
  for (int i = 0; i < kQueued; i++) ASSERT_EQ(gaio_accept(w_, lis, &peers[i], Ctx(i)), 0);
  /* One wait so that the accepts have reached the backend (armed or in the kernel). */
  ExpectNoResult(w_, 0);
  ASSERT_EQ(gaio_free(w_, lis), 0);
  Collected c = WaitResults(w_, kQueued, 5000);
  ASSERT_EQ(c.results.size(), static_cast<size_t>(kQueued));
  std::set<void *> ctxs;
  for (const gaio_result &r : c.results) {
    EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
    EXPECT_EQ(r.op, GAIO_OP_ACCEPT) << Describe(r);
    EXPECT_EQ(r.conn_fd, -1) << Describe(r);
    ctxs.insert(r.ctx);
  }
  EXPECT_EQ(ctxs.size(), static_cast<size_t>(kQueued));
  ExpectNoResult(w_, 50);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* Clients connected to 127.0.0.1:port, blocking; their local ports in *ports. */
std::vector<UniqueFd> ConnectClients(uint16_t port, size_t n, std::set<uint16_t> *ports) {
  std::vector<UniqueFd> out;
  for (size_t i = 0; i < n; i++) {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa = Loopback(port);
    if (!c.valid() || connect(c.get(), Sa(&sa), sizeof sa) != 0) {
      ADD_FAILURE() << "connect: " << strerror(errno);
      break;
    }
    ports->insert(LocalPort(c.get()));
    out.push_back(std::move(c));
  }
  return out;
}

uint16_t PeerPort(int fd) {
  sockaddr_in sa = {};
  socklen_t sl = sizeof sa;
  if (getpeername(fd, reinterpret_cast<sockaddr *>(&sa), &sl) != 0) return 0;
  return ntohs(sa.sin_port);
}

/* Two accepts without a peer address queued (io_uring may serve them with one multishot
 * accept), five clients: two are accepted, three arrive with no accept queued, and the loop
 * gets a turn (connections may be taken from the listener meanwhile). */
void OpsTest::MakeAcceptScene(AcceptScene *s) {
  Listener l(64);
  ASSERT_TRUE(l.ok());
  s->port = l.port();
  UniqueFd lfd(l.Release());
  s->lis = Attach(lfd);
  ASSERT_GE(s->lis, 0);
  ASSERT_EQ(gaio_accept(w_, s->lis, nullptr, Ctx(0)), 0);
  ASSERT_EQ(gaio_accept(w_, s->lis, nullptr, Ctx(1)), 0);
  ExpectNoResult(w_, 20);
  s->clients = ConnectClients(s->port, 5, &s->client_ports);
  ASSERT_EQ(s->clients.size(), 5u);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  for (int i = 0; i < 2; i++) {
    const gaio_result &r = c.results[i];
    ExpectResult(r, Ctx(i), s->lis, GAIO_OP_ACCEPT, 0, r.size);
    ASSERT_GE(r.conn_fd, 0);
    s->accepted.emplace_back(r.conn_fd);
  }
  ExpectNoResult(w_, 50);
}

/* Connections that arrive while no accept is queued are served, in order, by later accepts
 * (with peer addresses this time): each client is accepted exactly once. */
TEST_P(OpsTest, AcceptConnectionsArrivingBetweenRequests) {
  AcceptScene s;
  ASSERT_NO_FATAL_FAILURE(MakeAcceptScene(&s));
  std::vector<sockaddr_storage> peers(3);
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_accept(w_, s.lis, &peers[i], Ctx(10 + i)), 0);
  Collected c = WaitResults(w_, 3);
  ASSERT_EQ(c.results.size(), 3u);
  for (int i = 0; i < 3; i++) {
    const gaio_result &r = c.results[i];
    ExpectResult(r, Ctx(10 + i), s.lis, GAIO_OP_ACCEPT, 0, r.size);
    ASSERT_GE(r.conn_fd, 0);
    s.accepted.emplace_back(r.conn_fd);
    EXPECT_EQ(r.addr_len, sizeof(sockaddr_in)) << Describe(r);
    const sockaddr_in *pa = reinterpret_cast<const sockaddr_in *>(&peers[i]);
    EXPECT_EQ(pa->sin_family, AF_INET);
    EXPECT_EQ(ntohs(pa->sin_port), PeerPort(r.conn_fd));
  }
  std::set<uint16_t> got;
  for (const UniqueFd &a : s.accepted) {
    EXPECT_TRUE(IsNonBlocking(a.get()));
    EXPECT_TRUE(IsCloexec(a.get()));
    got.insert(PeerPort(a.get()));
  }
  EXPECT_EQ(got, s.client_ports) << "every client accepted exactly once";
  FreeAndFinish({s.lis});
}

/* Freeing the listener ends the connections nobody accepted (the clients see EOF or a reset,
 * never silence) and leaks no fd (checked by TearDown). */
TEST_P(OpsTest, FreeListenerEndsUnacceptedConnections) {
  AcceptScene s;
  ASSERT_NO_FATAL_FAILURE(MakeAcceptScene(&s));
  FreeAndFinish({s.lis});
  for (UniqueFd &a : s.accepted) {
    s.client_ports.erase(PeerPort(a.get()));
  }
  size_t ended = 0;
  for (UniqueFd &cl : s.clients) {
    if (s.client_ports.count(LocalPort(cl.get())) == 0) continue; /* accepted */
    bool eof = false;
    int err = 0;
    gaio_test::ReadToEof(cl.get(), 5000, &eof, &err);
    EXPECT_TRUE(eof || err == ECONNRESET) << "client port " << LocalPort(cl.get())
                                          << ": its connection neither closed nor reset";
    ended++;
  }
  EXPECT_EQ(ended, 3u);
}

/* A burst larger than any fixed buffer: 3000 clients wait in the accept queue, then 16 accepts
 * with no peer address are kept queued (re-armed on each result). Every client is accepted
 * exactly once and none is dropped (on io_uring a multishot accept takes the whole queue at
 * once, far more than the 16 asked for: the extra connections must wait, not be closed). */
TEST_P(OpsTest, AcceptBurstBeyondQueuedAcceptsLosesNone) {
  const size_t kConns = 3000, kQueued = 16;
  Listener l(4096);
  ASSERT_TRUE(l.ok());
  UniqueFd lfd(l.Release());
  const int lis = Attach(lfd);
  ASSERT_GE(lis, 0);
  std::set<uint16_t> ports;
  std::vector<UniqueFd> clients = ConnectClients(l.port(), kConns, &ports);
  ASSERT_EQ(clients.size(), kConns);
  size_t submitted = 0;
  for (; submitted < kQueued; submitted++) ASSERT_EQ(gaio_accept(w_, lis, nullptr, Ctx(1)), 0);
  std::set<uint16_t> got;
  std::vector<UniqueFd> accepted;
  Collected c = WaitResults(w_, kConns, 30000, [&](const gaio_result *res, int n, size_t *) {
    for (int i = 0; i < n; i++) {
      EXPECT_EQ(res[i].error, 0) << Describe(res[i]);
      if (res[i].conn_fd < 0) continue;
      accepted.emplace_back(res[i].conn_fd);
      got.insert(PeerPort(res[i].conn_fd));
      if (submitted < kConns) {
        ASSERT_EQ(gaio_accept(w_, lis, nullptr, Ctx(1)), 0);
        submitted++;
      }
    }
  });
  ASSERT_FALSE(c.timed_out);
  EXPECT_EQ(got, ports) << "some connections were not accepted, or accepted twice";
  /* The accepted connections are alive: a sample of clients send a byte, and it arrives on
   * the connection accepted for them. */
  std::map<uint16_t, int> by_port;
  for (UniqueFd &a : accepted) by_port[PeerPort(a.get())] = a.get();
  for (size_t i = 0; i < kConns; i += 97) {
    ASSERT_TRUE(WriteAll(clients[i].get(), "x", 1));
    const int a = by_port[LocalPort(clients[i].get())];
    char b = 0;
    EXPECT_TRUE(WaitReadable(a, 2000) && read(a, &b, 1) == 1 && b == 'x')
        << "client " << i << ": its accepted connection does not get its byte";
  }
  FreeAndFinish({lis});
}

/* Detach of a listener after two accepts with no peer address were served while five clients
 * connected. On epoll the three not yet accepted stay in the listener's backlog and the caller
 * accepts them itself. On io_uring a multishot accept served the two, and may have taken the
 * other three too (gaio.h, gaio_accept): those are closed by the detach, so each of them is
 * either accepted by the caller or sees its connection end (EOF or reset), never left hanging,
 * and no fd leaks. */
TEST_P(OpsTest, DetachListenerKeepsUnacceptedConnections) {
  AcceptScene s;
  ASSERT_NO_FATAL_FAILURE(MakeAcceptScene(&s));
  ASSERT_EQ(gaio_detach(w_, s.lis), 0);
  UniqueFd lis(s.lis);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
  ASSERT_TRUE(gaio_test::SetNonBlocking(lis.get()));
  std::set<uint16_t> got;
  for (const UniqueFd &a : s.accepted) got.insert(PeerPort(a.get()));
  for (int i = 0; i < 3; i++) {
    if (!WaitReadable(lis.get(), GetParam() == "epoll" ? 1000 : 50)) break;
    UniqueFd a(accept4(lis.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!a.valid()) break;
    got.insert(PeerPort(a.get()));
  }
  if (GetParam() == "epoll") {
    EXPECT_EQ(got, s.client_ports)
        << "connections that reached the listener before the detach were lost";
    return;
  }
  for (UniqueFd &cl : s.clients) {
    if (got.count(LocalPort(cl.get())) == 1) continue;
    /* Taken by the multishot accept and closed by the detach: the client sees the end. */
    bool eof = false;
    int err = 0;
    gaio_test::ReadToEof(cl.get(), 2000, &eof, &err);
    EXPECT_TRUE(eof || err == ECONNRESET)
        << "client port " << LocalPort(cl.get()) << " neither accepted nor ended (err " << err
        << ")";
  }
}

/* Connections reset by their client before an accept with a peer address takes them: each
 * such accept either fails on its own (-ECONNABORTED, as accept4() with an address reports
 * it) or succeeds with the address stored: never success without the address that was asked
 * for. The listener stays usable. */
TEST_P(OpsTest, AcceptWithPeerOfResetConnection) {
  AcceptScene s;
  ASSERT_NO_FATAL_FAILURE(MakeAcceptScene(&s));
  std::set<uint16_t> accepted_ports;
  for (const UniqueFd &a : s.accepted) accepted_ports.insert(PeerPort(a.get()));
  for (UniqueFd &cl : s.clients) {
    if (accepted_ports.count(LocalPort(cl.get())) == 0) {
      ASSERT_TRUE(gaio_test::SetLingerZero(cl.get()));
      cl.Reset();
    }
  }
  std::vector<sockaddr_storage> peers(3);
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_accept(w_, s.lis, &peers[i], Ctx(10 + i)), 0);
  /* The three reset ones, if accept still sees them, and then one healthy client. */
  std::set<uint16_t> late_port;
  std::vector<UniqueFd> late = ConnectClients(s.port, 1, &late_port);
  ASSERT_EQ(late.size(), 1u);
  bool healthy_seen = false;
  for (int i = 0; i < 3 && !healthy_seen; i++) {
    gaio_result r = One();
    ASSERT_EQ(r.ctx, Ctx(10 + i)) << Describe(r);
    if (r.error == -ECONNABORTED) {
      EXPECT_EQ(r.conn_fd, -1) << Describe(r);
      continue;
    }
    ASSERT_EQ(r.error, 0) << Describe(r);
    ASSERT_GE(r.conn_fd, 0);
    s.accepted.emplace_back(r.conn_fd);
    EXPECT_EQ(r.addr_len, sizeof(sockaddr_in))
        << "accepted with a peer address asked for, but none stored: " << Describe(r);
    const uint16_t port = ntohs(reinterpret_cast<const sockaddr_in *>(&peers[i])->sin_port);
    if (late_port.count(port) == 1) healthy_seen = true;
  }
  if (!healthy_seen) {
    ASSERT_EQ(gaio_accept(w_, s.lis, &peers[0], Ctx(20)), 0);
    gaio_result r = One();
    ExpectResult(r, Ctx(20), s.lis, GAIO_OP_ACCEPT, 0, r.size);
    ASSERT_GE(r.conn_fd, 0);
    s.accepted.emplace_back(r.conn_fd);
    EXPECT_EQ(r.addr_len, sizeof(sockaddr_in));
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in *>(&peers[0])->sin_port),
              *late_port.begin());
  }
  /* Any accepts still queued end with the free. */
  const size_t queued = Stats().in_flight;
  ASSERT_EQ(gaio_free(w_, s.lis), 0);
  Collected c = WaitResults(w_, queued, 5000);
  for (const gaio_result &r : c.results) EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
}

/* Cancelling the middle one of three queued accepts: the other two take the next two
 * connections, in FIFO order. */
TEST_P(OpsTest, CancelQueuedAccept) {
  Listener l(8);
  ASSERT_TRUE(l.ok());
  UniqueFd lfd(l.Release());
  const int lis = Attach(lfd);
  ASSERT_GE(lis, 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(gaio_accept(w_, lis, nullptr, Ctx(i)), 0);
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_cancel(w_, lis, Ctx(1)), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), lis, GAIO_OP_ACCEPT, -ECANCELED, r.size);
  EXPECT_EQ(r.conn_fd, -1);
  std::set<uint16_t> ports;
  std::vector<UniqueFd> clients = ConnectClients(l.port(), 2, &ports);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  std::set<uint16_t> got;
  for (int i = 0; i < 2; i++) {
    ExpectResult(c.results[i], Ctx(i * 2), lis, GAIO_OP_ACCEPT, 0, c.results[i].size);
    UniqueFd a(c.results[i].conn_fd);
    got.insert(PeerPort(a.get()));
  }
  EXPECT_EQ(got, ports);
  FreeAndFinish({lis});
}

/* ------------------------------------------------------------------------------------------ */
/* connect                                                                                      */
/* ------------------------------------------------------------------------------------------ */

TEST_P(OpsTest, ConnectToListenerThenEcho) {
  Listener l(8);
  ASSERT_TRUE(l.ok());
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_in sa = Loopback(l.port());
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(1), gaio_now() + 10000 * kMs), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, 0, r.size);
  UniqueFd server = l.Accept();
  ASSERT_TRUE(server.valid());

  ASSERT_EQ(gaio_write(w_, fd, "ping", 4, Ctx(2)), 0);
  r = One();
  ExpectResult(r, Ctx(2), fd, GAIO_OP_WRITE, 0, 4);
  char got[4];
  ASSERT_EQ(ReadExactly(server.get(), got, 4, 5000), 4u);
  EXPECT_EQ(memcmp(got, "ping", 4), 0);
  ASSERT_TRUE(WriteAll(server.get(), "pong", 4));
  char in[4];
  ASSERT_EQ(gaio_read_full(w_, fd, in, 4, Ctx(3), 0), 0);
  r = One();
  ExpectResult(r, Ctx(3), fd, GAIO_OP_READ_FULL, 0, 4);
  EXPECT_EQ(memcmp(in, "pong", 4), 0);
  FreeAndFinish({fd});
}

/* A port where nothing listens refuses. The port is held by a bound, non-listening socket for
 * the whole test, so no other process can start listening on it in between. */
TEST_P(OpsTest, ConnectToClosedPortIsECONNREFUSED) {
  uint16_t port = 0;
  UniqueFd holder = BoundSocket(SOCK_STREAM, &port);
  ASSERT_TRUE(holder.valid());
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_in sa = Loopback(port);
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(1), 0), 0);
  gaio_result r = One(nullptr, 5000);
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, -ECONNREFUSED, r.size);
  FreeAndFinish({fd});
}

/* The same, with the port closed before the connect (as a caller would usually meet it). */
TEST_P(OpsTest, ConnectToReleasedPortIsECONNREFUSED) {
  uint16_t port = 0;
  {
    UniqueFd gone = BoundSocket(SOCK_STREAM, &port);
    ASSERT_TRUE(gone.valid());
  }
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_in sa = Loopback(port);
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(1), 0), 0);
  gaio_result r = One(nullptr, 5000);
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, -ECONNREFUSED, r.size);
  FreeAndFinish({fd});
}

/* Fills the accept queue of a listen(fd, 0) listener with connections that are never accepted.
 * Returns the clients (kept open by the caller) or an empty vector when the kernel completes
 * every connect anyway (then the caller skips). Non-blocking clients, so that the first one
 * the kernel holds back (its SYN dropped) does not block the test. */
std::vector<UniqueFd> FillBacklog(uint16_t port) {
  const int kMaxClients = 16;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kMaxClients; i++) {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in sa = Loopback(port);
    int rc = connect(c.get(), Sa(&sa), sizeof sa);
    if (rc != 0 && errno != EINPROGRESS) {
      ADD_FAILURE() << "connect: " << strerror(errno);
      return {};
    }
    bool done = rc == 0;
    if (!done) {
      pollfd p = {c.get(), POLLOUT, 0};
      done = poll(&p, 1, 300) == 1;
    }
    clients.push_back(std::move(c));
    if (!done) return clients; /* the queue is full: this SYN was dropped */
  }
  return {};
}

/* A connect that cannot complete (the listener's accept queue is full, so its SYNs are
 * dropped) ends with -ETIMEDOUT at its deadline. */
TEST_P(OpsTest, ConnectDeadlineIsETIMEDOUT) {
  Listener l(0);
  ASSERT_TRUE(l.ok());
  std::vector<UniqueFd> fillers = FillBacklog(l.port());
  if (fillers.empty()) {
    GTEST_SKIP() << "the kernel completed every connect to a listen(fd, 0) listener; cannot "
                    "make a connect hang without a network";
  }
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_in sa = Loopback(l.port());
  const uint64_t t0 = gaio_now();
  const uint64_t kDeadlineMs = 300;
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(1), t0 + kDeadlineMs * kMs), 0);
  gaio_result r = One(nullptr, 10000);
  const double ms = MsSince(t0);
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, -ETIMEDOUT, r.size);
  EXPECT_GE(ms, kDeadlineMs - 1.0);
  EXPECT_LT(ms, kDeadlineMs + kDeadlineSlackMs);

  /* A connect that cannot complete, without a deadline, is cancelled. */
  UniqueFd s2(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd2 = Attach(s2);
  ASSERT_GE(fd2, 0);
  ASSERT_EQ(gaio_connect(w_, fd2, Sa(&sa), sizeof sa, Ctx(2), 0), 0);
  ExpectNoResult(w_, 50);
  ASSERT_EQ(gaio_cancel(w_, fd2, Ctx(2)), 0);
  r = One();
  ExpectResult(r, Ctx(2), fd2, GAIO_OP_CONNECT, -ECANCELED, r.size);
  FreeAndFinish({fd, fd2});
}

/* connect(2) failing at once is a result too: connecting a connected socket gives -EISCONN
 * (Linux answers 0 to the first connect(2) after a non-blocking connect has completed, so
 * from the third on), an address of the wrong family -EAFNOSUPPORT. An address too short for
 * its family is refused (synchronously with -EINVAL, or as an -EINVAL result). */
TEST_P(OpsTest, ConnectImmediateFailures) {
  Listener l(8);
  ASSERT_TRUE(l.ok());
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  sockaddr_in sa = Loopback(l.port());
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(1), 0), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, 0, r.size);
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(2), 0), 0);
  r = One();
  EXPECT_TRUE(r.error == 0 || r.error == -EISCONN) << Describe(r);
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&sa), sizeof sa, Ctx(3), 0), 0);
  r = One();
  ExpectResult(r, Ctx(3), fd, GAIO_OP_CONNECT, -EISCONN, r.size);

  UniqueFd s2(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd2 = Attach(s2);
  ASSERT_GE(fd2, 0);
  const int rc = gaio_connect(w_, fd2, Sa(&sa), 4, Ctx(4), 0);
  if (rc == 0) {
    r = One();
    ExpectResult(r, Ctx(4), fd2, GAIO_OP_CONNECT, -EINVAL, r.size);
  } else {
    EXPECT_EQ(rc, -EINVAL);
  }
  sockaddr_in wrong = sa;
  wrong.sin_family = AF_UNIX;
  ASSERT_EQ(gaio_connect(w_, fd2, Sa(&wrong), sizeof wrong, Ctx(5), 0), 0);
  r = One();
  ExpectResult(r, Ctx(5), fd2, GAIO_OP_CONNECT, -EAFNOSUPPORT, r.size);
  FreeAndFinish({fd, fd2});
}

/* connect over a unix socket path. */
TEST_P(OpsTest, ConnectUnixPathThenEcho) {
  char dir[] = "/tmp/gaio_ops_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr) << strerror(errno);
  const std::string path = std::string(dir) + "/s";
  sockaddr_un su = {};
  su.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof su.sun_path);
  memcpy(su.sun_path, path.c_str(), path.size() + 1);
  UniqueFd lis(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(bind(lis.get(), Sa(&su), sizeof su), 0) << strerror(errno);
  ASSERT_EQ(listen(lis.get(), 8), 0);

  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(gaio_connect(w_, fd, Sa(&su), sizeof su, Ctx(1), gaio_now() + 10000 * kMs), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_CONNECT, 0, r.size);
  UniqueFd server(accept4(lis.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  ASSERT_EQ(gaio_write(w_, fd, "unix", 4, Ctx(2)), 0);
  r = One();
  ExpectResult(r, Ctx(2), fd, GAIO_OP_WRITE, 0, 4);
  char got[4];
  ASSERT_EQ(ReadExactly(server.get(), got, 4, 5000), 4u);
  EXPECT_EQ(memcmp(got, "unix", 4), 0);
  unlink(path.c_str());
  rmdir(dir);
  FreeAndFinish({fd});
}

TEST_P(OpsTest, ConnectInvalidArguments) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int raw = s.get();
  sockaddr_in sa = Loopback(1);
  EXPECT_EQ(gaio_connect(w_, raw, Sa(&sa), sizeof sa, Ctx(1), 0), -EBADF) << "not attached";
  const int fd = Attach(s);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(gaio_connect(w_, fd, nullptr, sizeof sa, Ctx(1), 0), -EINVAL);
  EXPECT_EQ(gaio_connect(w_, fd, nullptr, 0, Ctx(1), 0), -EINVAL);
  EXPECT_EQ(gaio_connect(w_, fd, Sa(&sa), 0, Ctx(1), 0), -EINVAL);
  ExpectNoResult(w_, 0);
  FreeAndFinish({fd});
}

/* ------------------------------------------------------------------------------------------ */
/* cancel                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* A pending read (no data) is cancelled: 0, then one -ECANCELED result with size 0. Both
 * before the backend has seen the read (no wait in between) and after. The stream is intact
 * afterwards. */
TEST_P(OpsTest, CancelPendingRead) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  for (int waited = 0; waited < 2; waited++) {
    SCOPED_TRACE(waited ? "after a wait" : "before any wait");
    char buf[16];
    ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(1)), 0);
    if (waited) ExpectNoResult(w_, 20);
    EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), 0);
    EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), -ENOENT) << "cancelled twice";
    gaio_result r = One();
    ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, -ECANCELED, 0);
    ExpectNoResult(w_, 0);
  }
  /* A NULL-buffer read too. */
  ASSERT_EQ(gaio_read(w_, fd, nullptr, 0, Ctx(2)), 0);
  ExpectNoResult(w_, 20);
  EXPECT_EQ(gaio_cancel(w_, fd, Ctx(2)), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(2), fd, GAIO_OP_READ, -ECANCELED, 0);
  EXPECT_EQ(r.flags & GAIO_RESULT_SWAP, 0u);

  /* Nothing was consumed: the next read gets the peer's bytes. */
  ASSERT_TRUE(WriteAll(peer.get(), "after", 5));
  char buf[16];
  ASSERT_EQ(gaio_read_full(w_, fd, buf, 5, Ctx(3), 0), 0);
  r = One();
  ExpectResult(r, Ctx(3), fd, GAIO_OP_READ_FULL, 0, 5);
  EXPECT_EQ(memcmp(buf, "after", 5), 0);
  FreeAndFinish({fd});
}

/* A read that has completed (its result delivered) cannot be cancelled: -ENOENT, and no
 * second result. */
TEST_P(OpsTest, CancelAfterCompletionIsENOENT) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  char buf[16];
  ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(1)), 0);
  ASSERT_TRUE(WriteAll(peer.get(), "data!", 5));
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, 0, 5);
  EXPECT_EQ(memcmp(buf, "data!", 5), 0);
  EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), -ENOENT);
  ExpectNoResult(w_, 20);
  FreeAndFinish({fd});
}

/* A read whose data arrived before the cancel: whatever cancel answers, the one result is
 * consistent with it (0 -> -ECANCELED, nothing consumed; -ENOENT -> the data). Here the data
 * is in the socket before the read is even submitted, and the result may be queued but not
 * delivered when cancel runs (a wait with max 1 on two ready reads). */
TEST_P(OpsTest, CancelWhenResultQueuedKeepsData) {
  UniqueFd pa, pb;
  const int a = AttachedTcp(&pa);
  const int b = AttachedTcp(&pb);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(WriteAll(pa.get(), "AAAA", 4));
  ASSERT_TRUE(WriteAll(pb.get(), "BBBB", 4));
  ASSERT_TRUE(WaitReadable(a, 5000));
  ASSERT_TRUE(WaitReadable(b, 5000));
  char ba[8], bb[8];
  ASSERT_EQ(gaio_read(w_, a, ba, sizeof ba, Ctx(1)), 0);
  ASSERT_EQ(gaio_read(w_, b, bb, sizeof bb, Ctx(2)), 0);
  gaio_result first;
  int n = 0;
  const uint64_t deadline = gaio_now() + 5000 * kMs;
  while (n == 0 && gaio_now() < deadline) n = gaio_wait(w_, &first, 1, 100);
  ASSERT_EQ(n, 1);
  EXPECT_EQ(first.error, 0) << Describe(first);
  EXPECT_EQ(first.size, 4u) << Describe(first);
  const bool first_is_a = first.ctx == Ctx(1);
  const int other = first_is_a ? b : a;
  void *other_ctx = first_is_a ? Ctx(2) : Ctx(1);
  const char *other_buf = first_is_a ? bb : ba;
  const char other_byte = first_is_a ? 'B' : 'A';
  const int rc = gaio_cancel(w_, other, other_ctx);
  ASSERT_TRUE(rc == 0 || rc == -ENOENT) << rc;
  gaio_result r = One();
  if (rc == -ENOENT) {
    ExpectResult(r, other_ctx, other, GAIO_OP_READ, 0, 4);
    EXPECT_EQ(std::string(other_buf, 4), std::string(4, other_byte));
  } else {
    ExpectResult(r, other_ctx, other, GAIO_OP_READ, -ECANCELED, 0);
    char again[8];
    ASSERT_EQ(gaio_read_full(w_, other, again, 4, Ctx(3), 0), 0);
    gaio_result r2 = One();
    ExpectResult(r2, Ctx(3), other, GAIO_OP_READ_FULL, 0, 4);
    EXPECT_EQ(std::string(again, 4), std::string(4, other_byte));
  }
  ExpectNoResult(w_, 0);
  FreeAndFinish({a, b});
}

/* Busy-waits about `ns` nanoseconds: a delay far below a scheduler tick, to move the cancel
 * across the window in which the peer's bytes arrive. */
void Spin(uint64_t ns) {
  const uint64_t end = gaio_now() + ns;
  while (gaio_now() < end) {
  }
}

/* The race: another thread writes to the peer while this one cancels the read. Either outcome
 * is fine, but each submit gets exactly one result, consistent with the cancel's answer
 * (0 -> -ECANCELED with size 0, -ENOENT -> the bytes), and no byte is lost or duplicated: after
 * each iteration the rest of the chunk is read with a read-full, and the bytes read over all
 * iterations are exactly the bytes written, in order. Each iteration starts with an empty
 * socket and a read the backend has already seen (or, every fourth, one it has not). */
TEST_P(OpsTest, CancelRacesWithArrivingData) {
  const int kIters = 3000;
  const uint64_t kSeed = 77;
  const uint64_t kSpinNs[] = {0, 2000, 10000, 30000, 60000};
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  int go[2], done[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(done, O_CLOEXEC), 0);
  UniqueFd go_r(go[0]), go_w(go[1]), done_r(done[0]), done_w(done[1]);
  std::atomic<uint64_t> written{0};
  /* The writer: one chunk per byte on `go` (length = that byte), acknowledged on `done`. */
  std::thread writer([&] {
    uint8_t len;
    while (read(go_r.get(), &len, 1) == 1 && len > 0) {
      std::vector<uint8_t> chunk = Pattern(kSeed, len, written.load());
      if (!WriteAll(peer.get(), chunk.data(), len)) break;
      written += len;
      if (write(done_w.get(), "k", 1) != 1) break;
    }
  });
  uint64_t readoff = 0;
  int cancelled = 0, completed = 0, bad = 0;
  uint8_t buf[64];
  auto check_bytes = [&](const uint8_t *p, size_t n) {
    if (n > 0 && PatternMismatch(kSeed, readoff, p, n) != SIZE_MAX && bad++ < 5) {
      ADD_FAILURE() << "wrong bytes at stream offset " << readoff;
    }
    readoff += n;
  };
  for (int i = 0; i < kIters && !HasFailure(); i++) {
    void *ctx = Ctx(static_cast<uintptr_t>(i));
    ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, ctx), 0);
    std::vector<gaio_result> got;
    if (i % 4 != 0) ExpectNoResult(w_, 0); /* the backend takes the read (socket empty) */
    const uint8_t len = static_cast<uint8_t>(1 + (i * 7) % 48);
    ASSERT_EQ(write(go_w.get(), &len, 1), 1);
    Spin(kSpinNs[i % 5]);
    /* Every third iteration the loop runs once more before the cancel: the read may complete
     * and be delivered there (epoll does its reads only in the loop). */
    if (i % 3 == 2) {
      gaio_result x;
      const int n = gaio_wait(w_, &x, 1, 0);
      ASSERT_GE(n, 0);
      if (n == 1) got.push_back(x);
    }
    const int rc = gaio_cancel(w_, fd, ctx);
    if (rc != 0 && rc != -ENOENT) {
      ADD_FAILURE() << "iteration " << i << ": gaio_cancel returned " << rc;
      break;
    }
    if (got.empty()) {
      Collected c = WaitResults(w_, 1, 5000);
      ASSERT_EQ(c.results.size(), 1u) << "iteration " << i;
      got.push_back(c.results[0]);
    }
    const gaio_result &r = got[0];
    if (r.ctx != ctx || r.op != GAIO_OP_READ || r.fd != fd) {
      ADD_FAILURE() << "iteration " << i << ": result of another request " << Describe(r);
      break;
    }
    if (rc == 0) {
      cancelled++;
      if ((r.error != -ECANCELED || r.size != 0) && bad++ < 5) {
        ADD_FAILURE() << "iteration " << i << ": cancel returned 0 but " << Describe(r);
      }
    } else {
      completed++;
      if ((r.error != 0 || r.size == 0) && bad++ < 5) {
        ADD_FAILURE() << "iteration " << i << ": cancel returned -ENOENT but " << Describe(r);
      }
    }
    check_bytes(buf, r.size);
    /* The writer has written the chunk: read what is left of it, so the socket is empty. */
    char ack;
    ASSERT_EQ(ReadExactly(done_r.get(), &ack, 1, 5000), 1u) << "writer stuck";
    const uint64_t rest = written.load() - readoff;
    ASSERT_LE(rest, 64u);
    if (rest > 0) {
      uint8_t more[64];
      ASSERT_EQ(gaio_read_full(w_, fd, more, rest, Ctx(100000), 0), 0);
      Collected m = WaitResults(w_, 1, 5000);
      ASSERT_EQ(m.results.size(), 1u);
      ExpectResult(m.results[0], Ctx(100000), fd, GAIO_OP_READ_FULL, 0, rest);
      check_bytes(more, m.results[0].size);
    }
    ExpectNoResult(w_, 0);
  }
  const uint8_t stop = 0;
  ASSERT_EQ(write(go_w.get(), &stop, 1), 1);
  writer.join();
  EXPECT_EQ(readoff, written.load()) << "bytes lost or duplicated";
  EXPECT_EQ(bad, 0);
  printf("[ info ] %d cancelled, %d completed before the cancel\n", cancelled, completed);
  EXPECT_GT(completed, 0) << "the race never let a read complete: the test does not test it";
  FreeAndFinish({fd});
}

TEST_P(OpsTest, CancelUnknownCtxIsENOENT) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), -ENOENT) << "nothing pending";
  char buf[8];
  ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(1)), 0);
  EXPECT_EQ(gaio_cancel(w_, fd, Ctx(2)), -ENOENT) << "another ctx pending";
  EXPECT_EQ(gaio_cancel(w_, fd, nullptr), -ENOENT);
  ExpectNoResult(w_, 20);
  /* The read with the other ctx is untouched. */
  ASSERT_TRUE(WriteAll(peer.get(), "x", 1));
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, 0, 1);
  EXPECT_EQ(buf[0], 'x');
  /* Unattached fds. */
  EXPECT_EQ(gaio_cancel(w_, peer.get(), Ctx(1)), -EBADF);
  EXPECT_EQ(gaio_cancel(w_, -1, Ctx(1)), -EBADF);
  /* An fd being freed: its pending read gets the free's -ECANCELED, and the cancel adds no
   * second result. */
  ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(4)), 0);
  ExpectNoResult(w_, 10);
  ASSERT_EQ(gaio_free(w_, fd), 0);
  const int rc = gaio_cancel(w_, fd, Ctx(4));
  EXPECT_TRUE(rc == -EBADF || rc == -ENOENT) << rc;
  r = One();
  ExpectResult(r, Ctx(4), fd, GAIO_OP_READ, -ECANCELED, 0);
  ExpectNoResult(w_, 20);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* Cancelling one of several queued reads: the others keep their FIFO order and the bytes. */
TEST_P(OpsTest, CancelOneOfSeveralKeepsFifo) {
  const int kReads = 6;
  const int kCancelled = 2;
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  char bufs[kReads][1];
  for (int i = 0; i < kReads; i++) ASSERT_EQ(gaio_read(w_, fd, bufs[i], 1, Ctx(i)), 0);
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_cancel(w_, fd, Ctx(kCancelled)), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(kCancelled), fd, GAIO_OP_READ, -ECANCELED, 0);
  ASSERT_TRUE(WriteAll(peer.get(), "abcde", 5));
  Collected c = WaitResults(w_, kReads - 1);
  ASSERT_EQ(c.results.size(), static_cast<size_t>(kReads - 1));
  const char *want = "abcde";
  int k = 0;
  for (int i = 0; i < kReads; i++) {
    if (i == kCancelled) continue;
    ExpectResult(c.results[k], Ctx(i), fd, GAIO_OP_READ, 0, 1);
    EXPECT_EQ(bufs[i][0], want[k]) << "read " << i;
    k++;
  }
  FreeAndFinish({fd});
}

/* Two pending reads with the same ctx: cancel takes the oldest. */
TEST_P(OpsTest, CancelTakesOldestWithThatCtx) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  char first[4], second[4];
  ASSERT_EQ(gaio_read(w_, fd, first, sizeof first, Ctx(1)), 0);
  ASSERT_EQ(gaio_read(w_, fd, second, sizeof second, Ctx(1)), 0);
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_cancel(w_, fd, Ctx(1)), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, -ECANCELED, 0);
  EXPECT_EQ(r.buf, static_cast<void *>(first)) << "not the oldest";
  ASSERT_TRUE(WriteAll(peer.get(), "zz", 2));
  r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, 0, 2);
  EXPECT_EQ(r.buf, static_cast<void *>(second));
  FreeAndFinish({fd});
}

/* Runs the loop (delivering nothing) until a write to a peer that does not read has stalled:
 * the peer's receive queue is not empty and stops growing, and so does bytes_written. */
void OpsTest::WaitUntilWriteStalls(int peer) {
  uint64_t last_written = UINT64_MAX;
  int last_queued = -1, stable = 0;
  const uint64_t deadline = gaio_now() + 10000 * kMs;
  while (stable < 3 && gaio_now() < deadline) {
    gaio_result x;
    ASSERT_EQ(gaio_wait(w_, &x, 1, 30), 0) << "the write completed against a peer not reading";
    const uint64_t written = Stats().bytes_written;
    int queued = 0;
    ASSERT_EQ(ioctl(peer, FIONREAD, &queued), 0);
    stable = (queued > 0 && queued == last_queued && written == last_written) ? stable + 1 : 0;
    last_queued = queued;
    last_written = written;
  }
  ASSERT_EQ(stable, 3) << "the write never started or never stalled";
}

/* A TCP stream with small socket buffers: a large write to the peer stalls soon. */
int OpsTest::AttachedSmallBufferTcp(UniqueFd *peer) {
  SocketPair p = TcpPair();
  if (!p.a.valid()) return -1;
  const int small = 16384;
  EXPECT_TRUE(SetRcvBuf(p.b.get(), small));
  EXPECT_EQ(setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  *peer = std::move(p.b);
  return Attach(p.a);
}

/* A large write to a peer that does not read stalls; cancelling it gives -ECANCELED with size
 * = the bytes written so far, and exactly those bytes are in the stream (a marker written
 * after the cancel follows them directly). */
TEST_P(OpsTest, CancelWriteInProgressReportsBytesWritten) {
  const size_t kLen = 8u << 20;
  const uint64_t kSeed = 5;
  UniqueFd peer;
  const int fd = AttachedSmallBufferTcp(&peer);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> data = Pattern(kSeed, kLen);
  ASSERT_EQ(gaio_write(w_, fd, data.data(), kLen, Ctx(1)), 0);
  /* Also a queued write behind it, which has not started: cancelled with size 0. */
  const char tail[] = "tail";
  ASSERT_EQ(gaio_write(w_, fd, tail, 4, Ctx(2)), 0);
  ASSERT_NO_FATAL_FAILURE(WaitUntilWriteStalls(peer.get()));

  ASSERT_EQ(gaio_cancel(w_, fd, Ctx(2)), 0) << "the queued write";
  ASSERT_EQ(gaio_cancel(w_, fd, Ctx(1)), 0) << "the write in progress";
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  size_t partial = SIZE_MAX;
  for (const gaio_result &r : c.results) {
    EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
    EXPECT_EQ(r.op, GAIO_OP_WRITE) << Describe(r);
    if (r.ctx == Ctx(1)) partial = r.size;
    if (r.ctx == Ctx(2)) {
      EXPECT_EQ(r.size, 0u) << Describe(r);
    }
  }
  ASSERT_NE(partial, SIZE_MAX);
  EXPECT_GT(partial, 0u);
  EXPECT_LT(partial, kLen);

  /* The stream holds exactly `partial` bytes of data, then the marker. */
  const char marker[] = "MARK";
  ASSERT_EQ(gaio_write(w_, fd, marker, 4, Ctx(3)), 0);
  std::vector<uint8_t> got(partial + 4);
  std::thread reader([&] { EXPECT_EQ(ReadExactly(peer.get(), got.data(), got.size(), 20000),
                                     got.size()); });
  gaio_result r = One(nullptr, 20000);
  reader.join();
  ExpectResult(r, Ctx(3), fd, GAIO_OP_WRITE, 0, 4);
  EXPECT_EQ(PatternMismatch(kSeed, 0, got.data(), partial), SIZE_MAX);
  EXPECT_EQ(memcmp(got.data() + partial, marker, 4), 0) << "bytes after the cancelled write";
  FreeAndFinish({fd});
}

/* The scheduler state of thread tid of this process ('R', 'S', ...; '?' if unknown), from
 * /proc/self/task/<tid>/stat. */
char ThreadState(pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(tid));
  FILE *f = fopen(path, "re");
  if (f == nullptr) return '?';
  char line[512];
  char state = '?';
  if (fgets(line, sizeof line, f) != nullptr) {
    const char *rp = strrchr(line, ')'); /* the command name may hold spaces */
    if (rp != nullptr && rp[1] == ' ') state = rp[2];
  }
  fclose(f);
  return state;
}

void OpsTest::WhileAnotherThreadWaits(int fd, int peer, const std::function<void()> &probe) {
  char buf[4];
  ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(1)), 0);
  gaio_result got = {};
  int n = -1;
  std::atomic<pid_t> tid{0};
  std::thread loop([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    n = gaio_wait(w_, &got, 1, 15000);
  });
  /* The loop thread is in gaio_wait() once it sleeps: it has nothing else to sleep in. (Not
   * probed with calls into the watcher: a cancel or a second wait racing with the loop
   * thread's entry makes that wait the one refused with -EBUSY.) */
  const uint64_t deadline = gaio_now() + 10000 * kMs;
  while ((tid == 0 || ThreadState(tid) != 'S') && gaio_now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_EQ(ThreadState(tid), 'S') << "the loop thread never blocked in gaio_wait()";
  probe();
  ASSERT_TRUE(WriteAll(peer, "w", 1));
  loop.join();
  ASSERT_EQ(n, 1) << "the loop thread's wait";
  ExpectResult(got, Ctx(1), fd, GAIO_OP_READ, 0, 1);
  EXPECT_EQ(buf[0], 'w');
}

TEST_P(OpsTest, CancelFromAnotherThreadDuringWaitIsEBUSY) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  WhileAnotherThreadWaits(fd, peer.get(), [&] {
    EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), -EBUSY);
    EXPECT_EQ(gaio_cancel(w_, fd, Ctx(2)), -EBUSY);
  });
  FreeAndFinish({fd});
}

TEST_P(OpsTest, CancelAfterCloseIsESHUTDOWN) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  char buf[4];
  ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, Ctx(1)), 0);
  ExpectNoResult(w_, 10);
  gaio_watcher_close(w_);
  EXPECT_EQ(gaio_cancel(w_, fd, Ctx(1)), -ESHUTDOWN);
  EXPECT_EQ(gaio_detach(w_, fd), -ESHUTDOWN);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_READ, -ESHUTDOWN, 0);
  gaio_result x;
  EXPECT_EQ(gaio_wait(w_, &x, 1, 0), -ESHUTDOWN);
  ExpectDrained(w_);
}

/* ------------------------------------------------------------------------------------------ */
/* detach                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Echo one message through an fd attached to w: gaio writes, the peer answers, gaio reads. */
void EchoThroughGaio(gaio_watcher *w, int fd, int peer, const std::string &msg) {
  ASSERT_EQ(gaio_write(w, fd, msg.data(), msg.size(), Ctx(50)), 0);
  /* The loop carries the write out: wait for its result before the peer reads. */
  Collected wr = WaitResults(w, 1);
  ASSERT_EQ(wr.results.size(), 1u);
  EXPECT_EQ(wr.results[0].error, 0) << Describe(wr.results[0]);
  EXPECT_EQ(wr.results[0].size, msg.size());
  std::string got(msg.size(), '\0');
  ASSERT_EQ(ReadExactly(peer, &got[0], got.size(), 5000), got.size());
  EXPECT_EQ(got, msg);
  std::string back = "re:" + msg;
  ASSERT_TRUE(WriteAll(peer, back.data(), back.size()));
  std::string in(back.size(), '\0');
  ASSERT_EQ(gaio_read_full(w, fd, &in[0], in.size(), Ctx(51), 0), 0);
  Collected c = WaitResults(w, 1);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].error, 0) << Describe(c.results[0]);
  EXPECT_EQ(c.results[0].size, back.size());
  EXPECT_EQ(in, back);
}

class DetachTest : public OpsTest {
 protected:
  void Run(bool nonblocking_before);
};

void DetachTest::Run(bool nonblocking_before) {
  SocketPair p = UnixPair();
  ASSERT_TRUE(p.a.valid());
  if (nonblocking_before) {
    ASSERT_TRUE(gaio_test::SetNonBlocking(p.a.get()));
  }
  ASSERT_EQ(IsNonBlocking(p.a.get()), nonblocking_before);
  const int fd = p.a.get();
  ASSERT_EQ(gaio_attach(w_, fd), 0);
  /* From here on the test still owns the fd through p.a: gaio_detach() gives it back, and if
   * detach failed the watcher's close and p.a's would collide, so release first. */
  p.a.Release();
  EXPECT_TRUE(IsNonBlocking(fd)) << "attach sets O_NONBLOCK";
  /* Bytes that arrive with no read pending stay in the socket. */
  ASSERT_TRUE(WriteAll(p.b.get(), "early", 5));
  char b0[8], b1[8], b2[8];
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_read_full(w_, fd, b0, sizeof b0, Ctx(0), 0), 0);
  ASSERT_EQ(gaio_read_full(w_, fd, b1, sizeof b1, Ctx(1), 0), 0);
  ASSERT_EQ(gaio_read(w_, fd, nullptr, 0, Ctx(2)), 0);
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_detach(w_, fd), 0);
  EXPECT_EQ(Stats().fds, 0u);
  EXPECT_EQ(gaio_read(w_, fd, b2, sizeof b2, Ctx(3)), -EBADF) << "submit after detach";
  Collected c = WaitResults(w_, 3);
  ASSERT_EQ(c.results.size(), 3u);
  /* read_full of 8 bytes with 5 available: the first one holds "early" as partial progress. */
  size_t held = 0;
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(c.results[i].error, -ECANCELED) << Describe(c.results[i]);
    EXPECT_EQ(c.results[i].ctx, Ctx(i)) << "FIFO " << Describe(c.results[i]);
    held += c.results[i].size;
  }
  ASSERT_LE(held, 5u);
  if (held > 0) {
    EXPECT_EQ(memcmp(b0, "early", held), 0);
  }
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);

  UniqueFd mine(fd);
  ASSERT_TRUE(FdIsOpen(fd));
  EXPECT_EQ(IsNonBlocking(fd), nonblocking_before) << "O_NONBLOCK not restored";
  /* The rest of "early", then plain blocking I/O both ways. */
  std::string rest(5 - held, '\0');
  if (!rest.empty()) {
    ASSERT_EQ(ReadExactly(fd, &rest[0], rest.size(), 5000), rest.size());
    EXPECT_EQ(rest, std::string("early").substr(held));
  }
  ASSERT_EQ(write(fd, "plain", 5), 5);
  char got[5];
  ASSERT_EQ(ReadExactly(p.b.get(), got, 5, 5000), 5u);
  EXPECT_EQ(memcmp(got, "plain", 5), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "reply", 5));
  if (!nonblocking_before) {
    ASSERT_EQ(read(fd, got, 5), 5) << "a blocking read";
  } else {
    ASSERT_EQ(ReadExactly(fd, got, 5, 5000), 5u);
  }
  EXPECT_EQ(memcmp(got, "reply", 5), 0);

  /* Attach again to the same watcher, echo, detach; then to a second watcher. */
  ASSERT_EQ(gaio_attach(w_, fd), 0);
  EchoThroughGaio(w_, fd, p.b.get(), "again");
  ASSERT_EQ(gaio_detach(w_, fd), 0);
  EXPECT_EQ(IsNonBlocking(fd), nonblocking_before);
  gaio_watcher *w2 = NewWatcher();
  ASSERT_NE(w2, nullptr);
  ASSERT_EQ(gaio_attach(w2, fd), 0);
  mine.Release();
  EchoThroughGaio(w2, fd, p.b.get(), "second watcher");
  FreeAndFinish({}, w_);
  FreeAndFinish({fd}, w2);
}

TEST_P(DetachTest, BlockingFdComesBackBlocking) { Run(false); }
TEST_P(DetachTest, NonBlockingFdComesBackNonBlocking) { Run(true); }

/* Detaching an fd with a write in progress: the write ends with -ECANCELED and size = the
 * bytes written, and exactly those bytes are in the stream, followed by what the caller then
 * writes itself with write(2). */
TEST_P(OpsTest, DetachWithWriteInProgress) {
  const size_t kLen = 8u << 20;
  const uint64_t kSeed = 6;
  UniqueFd peer;
  const int fd = AttachedSmallBufferTcp(&peer);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> data = Pattern(kSeed, kLen);
  ASSERT_EQ(gaio_write(w_, fd, data.data(), kLen, Ctx(1)), 0);
  ASSERT_NO_FATAL_FAILURE(WaitUntilWriteStalls(peer.get()));
  ASSERT_EQ(gaio_detach(w_, fd), 0);
  UniqueFd mine(fd);
  EXPECT_FALSE(IsNonBlocking(fd)) << "TcpPair ends are blocking: O_NONBLOCK not restored";
  gaio_result r = One();
  ExpectResult(r, Ctx(1), fd, GAIO_OP_WRITE, -ECANCELED, r.size);
  const size_t partial = r.size;
  EXPECT_GT(partial, 0u);
  EXPECT_LT(partial, kLen);
  std::vector<uint8_t> got(partial + 4);
  std::thread reader([&] {
    EXPECT_EQ(ReadExactly(peer.get(), got.data(), got.size(), 20000), got.size());
  });
  EXPECT_EQ(write(fd, "MARK", 4), 4);
  reader.join();
  EXPECT_EQ(PatternMismatch(kSeed, 0, got.data(), partial), SIZE_MAX);
  EXPECT_EQ(memcmp(got.data() + partial, "MARK", 4), 0) << "bytes after the cancelled write";
  ExpectNoResult(w_, 0);
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

/* The race of detach with arriving bytes: another thread writes to the peer while this one
 * detaches the fd with a read pending. The read either completed first (error 0, the bytes)
 * or is cancelled (size 0); what it did not take is read with plain read(2) after the detach.
 * Over all iterations (each one attaching the fd again) no byte is lost or duplicated. */
TEST_P(OpsTest, DetachRacesWithArrivingData) {
  const int kIters = 1000;
  const uint64_t kSeed = 78;
  const uint64_t kSpinNs[] = {0, 2000, 10000, 30000, 60000};
  SocketPair p = TcpPair();
  ASSERT_TRUE(p.a.valid());
  const int fd = p.a.get();
  int go[2], done[2];
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(done, O_CLOEXEC), 0);
  UniqueFd go_r(go[0]), go_w(go[1]), done_r(done[0]), done_w(done[1]);
  std::atomic<uint64_t> written{0};
  std::thread writer([&] {
    uint8_t len;
    while (read(go_r.get(), &len, 1) == 1 && len > 0) {
      std::vector<uint8_t> chunk = Pattern(kSeed, len, written.load());
      if (!WriteAll(p.b.get(), chunk.data(), len)) break;
      written += len;
      if (write(done_w.get(), "k", 1) != 1) break;
    }
  });
  uint64_t readoff = 0;
  int cancelled = 0, completed = 0, bad = 0;
  uint8_t buf[64];
  for (int i = 0; i < kIters && !HasFailure(); i++) {
    ASSERT_EQ(gaio_attach(w_, fd), 0) << "iteration " << i;
    void *ctx = Ctx(static_cast<uintptr_t>(i));
    ASSERT_EQ(gaio_read(w_, fd, buf, sizeof buf, ctx), 0);
    if (i % 4 != 0) ExpectNoResult(w_, 0);
    const uint8_t len = static_cast<uint8_t>(1 + (i * 7) % 48);
    ASSERT_EQ(write(go_w.get(), &len, 1), 1);
    Spin(kSpinNs[i % 5]);
    ASSERT_EQ(gaio_detach(w_, fd), 0) << "iteration " << i;
    Collected c = WaitResults(w_, 1, 5000);
    ASSERT_EQ(c.results.size(), 1u) << "iteration " << i;
    const gaio_result &r = c.results[0];
    ASSERT_EQ(r.ctx, ctx) << Describe(r);
    if (r.error == -ECANCELED && r.size == 0) {
      cancelled++;
    } else if (r.error == 0 && r.size > 0) {
      completed++;
      if (PatternMismatch(kSeed, readoff, buf, r.size) != SIZE_MAX && bad++ < 5) {
        ADD_FAILURE() << "iteration " << i << ": wrong bytes at offset " << readoff;
      }
      readoff += r.size;
    } else if (bad++ < 5) {
      ADD_FAILURE() << "iteration " << i << ": " << Describe(r);
    }
    char ack;
    ASSERT_EQ(ReadExactly(done_r.get(), &ack, 1, 5000), 1u) << "writer stuck";
    const uint64_t rest = written.load() - readoff;
    ASSERT_LE(rest, 64u) << "iteration " << i;
    if (rest > 0) {
      uint8_t more[64];
      ASSERT_EQ(ReadExactly(fd, more, rest, 5000), rest)
          << "iteration " << i << ": bytes lost by the detach";
      if (PatternMismatch(kSeed, readoff, more, rest) != SIZE_MAX && bad++ < 5) {
        ADD_FAILURE() << "iteration " << i << ": wrong bytes at offset " << readoff;
      }
      readoff += rest;
    }
    ExpectNoResult(w_, 0);
  }
  const uint8_t stop = 0;
  ASSERT_EQ(write(go_w.get(), &stop, 1), 1);
  writer.join();
  EXPECT_EQ(readoff, written.load());
  EXPECT_EQ(bad, 0);
  EXPECT_FALSE(IsNonBlocking(fd));
  printf("[ info ] %d cancelled, %d completed before the detach\n", cancelled, completed);
  ExpectDrained(w_);
}

TEST_P(OpsTest, DetachErrors) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(gaio_detach(w_, peer.get()), -EBADF) << "an open fd never attached";
  EXPECT_EQ(gaio_detach(w_, -1), -EBADF);
  EXPECT_EQ(gaio_detach(w_, 1 << 24), -EBADF) << "beyond the table";
  ASSERT_EQ(gaio_detach(w_, fd), 0);
  UniqueFd mine(fd);
  EXPECT_EQ(gaio_detach(w_, fd), -EBADF) << "detached twice";
  /* Being freed: detach refuses it. */
  ASSERT_EQ(gaio_attach(w_, fd), 0);
  mine.Release();
  ASSERT_EQ(gaio_free(w_, fd), 0);
  EXPECT_EQ(gaio_detach(w_, fd), -EBADF) << "being freed";
  ExpectNoResult(w_, 0);
  EXPECT_FALSE(FdIsOpen(fd)) << "the free closed it";
  ExpectDrained(w_);
  EXPECT_EQ(Stats().fds, 0u);
}

TEST_P(OpsTest, DetachFromAnotherThreadDuringWaitIsEBUSY) {
  UniqueFd peer;
  const int fd = AttachedTcp(&peer);
  ASSERT_GE(fd, 0);
  WhileAnotherThreadWaits(fd, peer.get(), [&] { EXPECT_EQ(gaio_detach(w_, fd), -EBUSY); });
  EXPECT_EQ(Stats().fds, 1u) << "still attached";
  FreeAndFinish({fd});
}

/* ------------------------------------------------------------------------------------------ */
/* UDP: recvfrom / sendto                                                                       */
/* ------------------------------------------------------------------------------------------ */

struct Udp {
  int fd = -1; /* attached */
  uint16_t port = 0;
  sockaddr_in addr = {};
};

class UdpTest : public OpsTest {
 protected:
  Udp NewUdp() {
    Udp u;
    UniqueFd s = BoundSocket(SOCK_DGRAM, &u.port);
    if (!s.valid()) return u;
    u.addr = Loopback(u.port);
    u.fd = Attach(s);
    return u;
  }
};

TEST_P(UdpTest, SendtoRecvfromUserAndSwapBuffers) {
  Udp a = NewUdp(), b = NewUdp();
  ASSERT_GE(a.fd, 0);
  ASSERT_GE(b.fd, 0);
  /* A user buffer, with the sender's address. */
  char buf[64];
  sockaddr_storage from;
  memset(&from, 0xee, sizeof from);
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, &from, Ctx(1), 0), 0);
  const char msg[] = "hello datagram";
  ASSERT_EQ(gaio_sendto(w_, a.fd, msg, 14, Sa(&b.addr), sizeof b.addr, Ctx(2), 0), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  for (const gaio_result &r : c.results) {
    if (r.ctx == Ctx(1)) {
      ExpectResult(r, Ctx(1), b.fd, GAIO_OP_RECVFROM, 0, 14);
      EXPECT_EQ(r.buf, static_cast<void *>(buf));
      EXPECT_EQ(r.flags, 0u) << Describe(r);
      EXPECT_EQ(r.addr_len, sizeof(sockaddr_in)) << Describe(r);
    } else {
      ExpectResult(r, Ctx(2), a.fd, GAIO_OP_SENDTO, 0, 14);
    }
  }
  EXPECT_EQ(memcmp(buf, msg, 14), 0);
  const sockaddr_in *fa = reinterpret_cast<const sockaddr_in *>(&from);
  EXPECT_EQ(fa->sin_family, AF_INET);
  EXPECT_EQ(ntohs(fa->sin_port), a.port);
  EXPECT_EQ(fa->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

  /* The swap buffer (NULL buf), the other way round. */
  std::vector<uint8_t> big = Pattern(9, 1200);
  memset(&from, 0xee, sizeof from);
  ASSERT_EQ(gaio_recvfrom(w_, a.fd, nullptr, 0, &from, Ctx(3), 0), 0);
  ASSERT_EQ(gaio_sendto(w_, b.fd, big.data(), big.size(), Sa(&a.addr), sizeof a.addr, Ctx(4),
                        0),
            0);
  c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  for (const gaio_result &r : c.results) {
    if (r.ctx == Ctx(3)) {
      ExpectResult(r, Ctx(3), a.fd, GAIO_OP_RECVFROM, 0, big.size());
      EXPECT_TRUE(r.flags & GAIO_RESULT_SWAP) << Describe(r);
      ASSERT_NE(r.buf, nullptr);
      /* Swap bytes are valid until the next wait: compare now. */
      EXPECT_EQ(memcmp(r.buf, big.data(), big.size()), 0);
      EXPECT_EQ(r.addr_len, sizeof(sockaddr_in)) << Describe(r);
    } else {
      ExpectResult(r, Ctx(4), b.fd, GAIO_OP_SENDTO, 0, big.size());
    }
  }
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in *>(&from)->sin_port), b.port);

  /* from NULL: no address (addr_len 0). to NULL on a connected socket: its peer. */
  ASSERT_EQ(connect(a.fd, Sa(&b.addr), sizeof b.addr), 0);
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(5), 0), 0);
  ASSERT_EQ(gaio_sendto(w_, a.fd, "conn", 4, nullptr, 0, Ctx(6), 0), 0);
  c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  for (const gaio_result &r : c.results) {
    EXPECT_EQ(r.error, 0) << Describe(r);
    EXPECT_EQ(r.size, 4u) << Describe(r);
    if (r.ctx == Ctx(5)) {
      EXPECT_EQ(r.addr_len, 0u) << Describe(r);
    }
  }
  EXPECT_EQ(memcmp(buf, "conn", 4), 0);
  FreeAndFinish({a.fd, b.fd});
}

/* 1000 distinct datagrams (1..1400 bytes) echoed by gaio on the other socket (NULL-buffer
 * receives, replies to the sender's address), at most 32 in flight so that loopback never
 * drops; every datagram comes back whole, in order. */
TEST_P(UdpTest, Echo1000Datagrams) {
  const size_t kCount = 1000;
  const size_t kWindow = 32;
  const size_t kServerRecvs = 8;
  Udp cl = NewUdp(), sv = NewUdp();
  ASSERT_GE(cl.fd, 0);
  ASSERT_GE(sv.fd, 0);
  auto len_of = [](size_t i) { return 1 + (i * 7919) % 1400; };
  std::vector<std::vector<uint8_t>> out(kCount);
  for (size_t i = 0; i < kCount; i++) out[i] = Pattern(1000 + i, len_of(i));

  struct Tag {
    int kind; /* 1 client send, 2 client recv, 3 server recv, 4 server send */
    size_t index = 0;
    uint8_t buf[1500];
    sockaddr_storage from;
    std::vector<uint8_t> echo;
  };
  std::vector<std::unique_ptr<Tag>> tags;
  auto tag = [&](int kind, size_t index) {
    tags.emplace_back(new Tag);
    tags.back()->kind = kind;
    tags.back()->index = index;
    return tags.back().get();
  };
  size_t sent = 0, received = 0, bad = 0, server_sends = 0, server_recvs_live = 0;
  auto send_next = [&]() {
    Tag *t = tag(1, sent);
    ASSERT_EQ(gaio_sendto(w_, cl.fd, out[sent].data(), out[sent].size(), Sa(&sv.addr),
                          sizeof sv.addr, t, 0),
              0);
    Tag *rt = tag(2, sent);
    ASSERT_EQ(gaio_recvfrom(w_, cl.fd, rt->buf, sizeof rt->buf, &rt->from, rt, 0), 0);
    sent++;
  };
  auto server_recv = [&]() {
    Tag *t = tag(3, 0);
    ASSERT_EQ(gaio_recvfrom(w_, sv.fd, nullptr, 0, &t->from, t, 0), 0);
    server_recvs_live++;
  };
  for (size_t i = 0; i < kServerRecvs; i++) server_recv();
  while (sent < kWindow) send_next();

  const uint64_t deadline = gaio_now() + 30000 * kMs;
  gaio_result batch[64];
  size_t client_sends_done = 0;
  while ((received < kCount || client_sends_done < kCount || server_sends < kCount) &&
         gaio_now() < deadline && !HasFailure()) {
    int n = gaio_wait(w_, batch, 64, 100);
    ASSERT_GE(n, 0) << gaio_strerror(n);
    for (int j = 0; j < n; j++) {
      const gaio_result &r = batch[j];
      Tag *t = static_cast<Tag *>(r.ctx);
      if (r.error != 0 && bad++ < 5) ADD_FAILURE() << Describe(r);
      switch (t->kind) {
        case 1:
          if (r.size != out[t->index].size() && bad++ < 5) ADD_FAILURE() << Describe(r);
          client_sends_done++;
          break;
        case 2: {
          if ((t->index != received || r.size != out[received].size() ||
               memcmp(t->buf, out[received].data(), r.size) != 0) &&
              bad++ < 5) {
            ADD_FAILURE() << "datagram " << received << " came back wrong or out of order: "
                          << Describe(r);
          }
          const sockaddr_in *fa = reinterpret_cast<const sockaddr_in *>(&t->from);
          if (ntohs(fa->sin_port) != sv.port && bad++ < 5) ADD_FAILURE() << "sender port";
          received++;
          if (sent < kCount) send_next();
          break;
        }
        case 3: {
          server_recvs_live--;
          Tag *e = tag(4, 0);
          const uint8_t *p = static_cast<const uint8_t *>(r.buf);
          e->echo.assign(p, p + r.size);
          memcpy(&e->from, &t->from, sizeof e->from);
          if (r.size == 0 || !(r.flags & GAIO_RESULT_SWAP)) {
            if (bad++ < 5) ADD_FAILURE() << "server recv " << Describe(r);
            break;
          }
          ASSERT_EQ(gaio_sendto(w_, sv.fd, e->echo.data(), e->echo.size(), Sa(&e->from),
                                r.addr_len, e, 0),
                    0);
          server_recv();
          break;
        }
        case 4:
          server_sends++;
          break;
      }
    }
  }
  EXPECT_EQ(received, kCount);
  EXPECT_EQ(client_sends_done, kCount);
  EXPECT_EQ(server_sends, kCount);
  EXPECT_EQ(bad, 0u);
  /* The server's receives still posted end with the free. */
  ASSERT_EQ(gaio_free(w_, sv.fd), 0);
  Collected c = WaitResults(w_, server_recvs_live, 5000);
  for (const gaio_result &r : c.results) EXPECT_EQ(r.error, -ECANCELED) << Describe(r);
  FreeAndFinish({cl.fd});
}

/* A datagram longer than the buffer: size = the buffer, GAIO_RESULT_TRUNC; the next datagram
 * is received on its own. */
TEST_P(UdpTest, TruncatedDatagramIsFlagged) {
  Udp a = NewUdp(), b = NewUdp();
  ASSERT_GE(a.fd, 0);
  ASSERT_GE(b.fd, 0);
  std::vector<uint8_t> hundred = Pattern(3, 100);
  char small[10];
  ASSERT_EQ(gaio_sendto(w_, a.fd, hundred.data(), 100, Sa(&b.addr), sizeof b.addr, Ctx(1), 0),
            0);
  ASSERT_EQ(gaio_sendto(w_, a.fd, "next!", 5, Sa(&b.addr), sizeof b.addr, Ctx(2), 0), 0);
  Collected c = WaitResults(w_, 2);
  ASSERT_EQ(c.results.size(), 2u);
  ASSERT_TRUE(WaitReadable(b.fd, 5000));
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, small, sizeof small, nullptr, Ctx(3), 0), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(3), b.fd, GAIO_OP_RECVFROM, 0, 10);
  EXPECT_TRUE(r.flags & GAIO_RESULT_TRUNC) << Describe(r);
  EXPECT_EQ(memcmp(small, hundred.data(), 10), 0);
  char buf[64];
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(4), 0), 0);
  r = One();
  ExpectResult(r, Ctx(4), b.fd, GAIO_OP_RECVFROM, 0, 5);
  EXPECT_EQ(r.flags & GAIO_RESULT_TRUNC, 0u) << Describe(r);
  EXPECT_EQ(memcmp(buf, "next!", 5), 0);
  FreeAndFinish({a.fd, b.fd});
}

/* A zero-length datagram (sent with a plain sendto: gaio_sendto refuses len 0) completes a
 * receive with size 0 and error 0, for a user buffer and for the swap buffer. */
TEST_P(UdpTest, ZeroLengthDatagram) {
  Udp b = NewUdp();
  ASSERT_GE(b.fd, 0);
  uint16_t cport = 0;
  UniqueFd c = BoundSocket(SOCK_DGRAM, &cport);
  ASSERT_TRUE(c.valid());
  for (int swap = 0; swap < 2; swap++) {
    SCOPED_TRACE(swap ? "swap buffer" : "user buffer");
    char buf[16];
    sockaddr_storage from;
    memset(&from, 0, sizeof from);
    ASSERT_EQ(gaio_recvfrom(w_, b.fd, swap ? nullptr : buf, swap ? 0 : sizeof buf, &from, Ctx(1),
                            gaio_now() + 5000 * kMs),
              0);
    ASSERT_EQ(sendto(c.get(), "", 0, 0, Sa(&b.addr), sizeof b.addr), 0) << strerror(errno);
    gaio_result r = One();
    ExpectResult(r, Ctx(1), b.fd, GAIO_OP_RECVFROM, 0, 0);
    EXPECT_EQ(r.flags & GAIO_RESULT_TRUNC, 0u);
    EXPECT_EQ(r.addr_len, sizeof(sockaddr_in));
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in *>(&from)->sin_port), cport);
  }
  FreeAndFinish({b.fd});
}

TEST_P(UdpTest, RecvfromDeadlineIsETIMEDOUT) {
  Udp b = NewUdp();
  ASSERT_GE(b.fd, 0);
  char buf[16];
  const uint64_t t0 = gaio_now();
  const uint64_t kDeadlineMs = 100;
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(1), t0 + kDeadlineMs * kMs),
            0);
  gaio_result r = One();
  const double ms = MsSince(t0);
  ExpectResult(r, Ctx(1), b.fd, GAIO_OP_RECVFROM, -ETIMEDOUT, 0);
  EXPECT_GE(ms, kDeadlineMs - 1.0);
  EXPECT_LT(ms, kDeadlineMs + kDeadlineSlackMs);
  /* The socket still works after the timeout. */
  uint16_t cport = 0;
  UniqueFd c = BoundSocket(SOCK_DGRAM, &cport);
  ASSERT_EQ(sendto(c.get(), "late", 4, 0, Sa(&b.addr), sizeof b.addr), 4);
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(2), 0), 0);
  r = One();
  ExpectResult(r, Ctx(2), b.fd, GAIO_OP_RECVFROM, 0, 4);
  EXPECT_EQ(memcmp(buf, "late", 4), 0);
  FreeAndFinish({b.fd});
}

/* A pending recvfrom is cancelled like a read; the datagram that comes later is received by
 * the next one. */
TEST_P(UdpTest, CancelRecvfrom) {
  Udp b = NewUdp();
  ASSERT_GE(b.fd, 0);
  char buf[16];
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(1), 0), 0);
  ExpectNoResult(w_, 20);
  ASSERT_EQ(gaio_cancel(w_, b.fd, Ctx(1)), 0);
  gaio_result r = One();
  ExpectResult(r, Ctx(1), b.fd, GAIO_OP_RECVFROM, -ECANCELED, 0);
  uint16_t cport = 0;
  UniqueFd c = BoundSocket(SOCK_DGRAM, &cport);
  ASSERT_EQ(sendto(c.get(), "dgram", 5, 0, Sa(&b.addr), sizeof b.addr), 5);
  ASSERT_EQ(gaio_recvfrom(w_, b.fd, buf, sizeof buf, nullptr, Ctx(2), 0), 0);
  r = One();
  ExpectResult(r, Ctx(2), b.fd, GAIO_OP_RECVFROM, 0, 5);
  EXPECT_EQ(memcmp(buf, "dgram", 5), 0);
  FreeAndFinish({b.fd});
}

/* A NULL-buffer recvfrom takes up to read_max bytes: a longer datagram is truncated there and
 * flagged, as with a user buffer. */
TEST_P(UdpTest, SwapBufferTruncatesAtReadMax) {
  gaio_options o = {};
  o.read_max = 512;
  gaio_watcher *w2 = NewWatcher(o);
  ASSERT_NE(w2, nullptr);
  uint16_t port = 0;
  UniqueFd s = BoundSocket(SOCK_DGRAM, &port);
  const int fd = Attach(s, w2);
  ASSERT_GE(fd, 0);
  uint16_t cport = 0;
  UniqueFd c = BoundSocket(SOCK_DGRAM, &cport);
  std::vector<uint8_t> big = Pattern(8, 1000);
  sockaddr_in to = Loopback(port);
  ASSERT_EQ(sendto(c.get(), big.data(), big.size(), 0, Sa(&to), sizeof to), 1000);
  ASSERT_EQ(gaio_recvfrom(w2, fd, nullptr, 0, nullptr, Ctx(1), 0), 0);
  Collected got = WaitResults(w2, 1);
  ASSERT_EQ(got.results.size(), 1u);
  const gaio_result &r = got.results[0];
  ExpectResult(r, Ctx(1), fd, GAIO_OP_RECVFROM, 0, 512);
  EXPECT_EQ(r.flags, GAIO_RESULT_SWAP | GAIO_RESULT_TRUNC) << Describe(r);
  ASSERT_NE(r.buf, nullptr);
  EXPECT_EQ(memcmp(r.buf, big.data(), 512), 0);
  FreeAndFinish({}, w_);
  FreeAndFinish({fd}, w2);
}

TEST_P(UdpTest, InvalidArguments) {
  Udp b = NewUdp();
  ASSERT_GE(b.fd, 0);
  char buf[4];
  EXPECT_EQ(gaio_recvfrom(w_, b.fd, buf, 0, nullptr, Ctx(1), 0), -EINVAL);
  EXPECT_EQ(gaio_sendto(w_, b.fd, nullptr, 4, Sa(&b.addr), sizeof b.addr, Ctx(1), 0), -EINVAL);
  EXPECT_EQ(gaio_sendto(w_, b.fd, buf, 0, Sa(&b.addr), sizeof b.addr, Ctx(1), 0), -EINVAL);
  EXPECT_EQ(gaio_recvfrom(w_, -1, buf, 4, nullptr, Ctx(1), 0), -EBADF);
  EXPECT_EQ(gaio_sendto(w_, -1, buf, 4, Sa(&b.addr), sizeof b.addr, Ctx(1), 0), -EBADF);
  ExpectNoResult(w_, 0);
  FreeAndFinish({b.fd});
}

/* ------------------------------------------------------------------------------------------ */
/* backend choice                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Sets GAIO_BACKEND (or unsets it for NULL) for one scope, restoring the old value. */
class ScopedBackendEnv {
 public:
  explicit ScopedBackendEnv(const char *value) {
    const char *old = getenv("GAIO_BACKEND");
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) {
      setenv("GAIO_BACKEND", value, 1);
    } else {
      unsetenv("GAIO_BACKEND");
    }
  }
  ~ScopedBackendEnv() {
    if (had_) {
      setenv("GAIO_BACKEND", old_.c_str(), 1);
    } else {
      unsetenv("GAIO_BACKEND");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

/* The backend name the watcher created with opts reports, or "error N". */
std::string CreatedBackend(const gaio_options *opts) {
  gaio_watcher *w = nullptr;
  int rc = gaio_watcher_create(&w, opts);
  if (rc != 0) return "error " + std::to_string(rc);
  std::string name = gaio_backend_name(w) ? gaio_backend_name(w) : "(null)";
  ExpectDrained(w);
  gaio_watcher_destroy(w);
  return name;
}

TEST_P(OpsTest, BackendChoice) {
  const int fds0 = CountOpenFds();
  {
    ScopedBackendEnv env(nullptr);
    const std::string dflt = CreatedBackend(nullptr);
    EXPECT_TRUE(dflt == "uring" || dflt == "epoll") << dflt;
    gaio_options u = {};
    u.backend = "uring";
    const std::string uring = CreatedBackend(&u);
    if (uring == "uring") {
      EXPECT_EQ(dflt, "uring") << "io_uring starts here, so the automatic choice is io_uring";
    }
    gaio_options o = {};
    o.backend = "epoll";
    EXPECT_EQ(CreatedBackend(&o), "epoll");
    o.backend = "";
    EXPECT_EQ(CreatedBackend(&o), dflt) << "\"\" is the automatic choice";
    o.backend = "kqueue";
    EXPECT_EQ(CreatedBackend(&o), "error " + std::to_string(GAIO_EBACKEND));
    o.backend = "EPOLL";
    EXPECT_EQ(CreatedBackend(&o), "error " + std::to_string(GAIO_EBACKEND)) << "names are exact";
    o.backend = GetParam().c_str();
    EXPECT_EQ(CreatedBackend(&o), GetParam());
  }
  {
    ScopedBackendEnv env("epoll");
    EXPECT_EQ(CreatedBackend(nullptr), "epoll");
    gaio_options o = {};
    EXPECT_EQ(CreatedBackend(&o), "epoll");
    o.backend = GetParam().c_str();
    EXPECT_EQ(CreatedBackend(&o), GetParam()) << "an explicit name wins over the environment";
  }
  {
    ScopedBackendEnv env(GetParam().c_str());
    EXPECT_EQ(CreatedBackend(nullptr), GetParam());
  }
  {
    ScopedBackendEnv env("nonsense");
    EXPECT_EQ(CreatedBackend(nullptr), "error " + std::to_string(GAIO_EBACKEND));
  }
  EXPECT_EQ(std::string(gaio_backend_name(w_)), GetParam());
  EXPECT_EQ(CountOpenFds(), fds0);
  ExpectDrained(w_);
}

#if defined(__x86_64__)
#define OPS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define OPS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef OPS_AUDIT_ARCH
/* Makes io_uring_setup(2) fail with ENOSYS for this process (and its threads created later),
 * as a seccomp policy of a container runtime does; everything else is allowed. */
bool DenyIoUringSetup() {
  sock_filter prog[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, OPS_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog fprog = {static_cast<unsigned short>(sizeof prog / sizeof prog[0]), prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) == 0;
}

/* The checks of the forced fallback, run in the child; exit code 0 or the failing step. */
int FallbackChild() {
  if (!DenyIoUringSetup()) return 10;
  if (syscall(__NR_io_uring_setup, 4, nullptr) != -1 || errno != ENOSYS) return 11;
  unsetenv("GAIO_BACKEND");
  gaio_watcher *w = reinterpret_cast<gaio_watcher *>(uintptr_t{1});
  gaio_options o = {};
  o.backend = "uring";
  if (gaio_watcher_create(&w, &o) != -ENOSYS) return 1; /* no silent switch */
  if (w != nullptr) return 2;
  if (gaio_watcher_create(&w, nullptr) != 0) return 3;
  if (strcmp(gaio_backend_name(w), "epoll") != 0) return 4;
  gaio_watcher_destroy(w);
  setenv("GAIO_BACKEND", "uring", 1);
  w = reinterpret_cast<gaio_watcher *>(uintptr_t{1});
  if (gaio_watcher_create(&w, nullptr) != -ENOSYS) return 5;
  if (w != nullptr) return 6;
  o.backend = "epoll";
  if (gaio_watcher_create(&w, &o) != 0) return 7; /* the explicit name wins over the env */
  if (strcmp(gaio_backend_name(w), "epoll") != 0) return 8;
  gaio_watcher_destroy(w);
  return 0;
}
#endif

/* With io_uring_setup forbidden (seccomp, in a forked child): "uring" gives -ENOSYS, the
 * automatic choice falls back to epoll, GAIO_BACKEND=uring gives -ENOSYS. */
TEST(OpsBackend, ForcedFallbackUnderSeccomp) {
#ifndef OPS_AUDIT_ARCH
  GTEST_SKIP() << "no seccomp arch constant for this architecture";
#else
  Watchdog dog("ForcedFallbackUnderSeccomp", kTestWatchdogMs);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) _exit(FallbackChild());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  const char *steps[] = {
      "ok",
      "backend=uring did not give -ENOSYS",
      "backend=uring failed but stored a watcher",
      "the automatic choice failed",
      "the automatic choice is not epoll",
      "GAIO_BACKEND=uring did not give -ENOSYS",
      "GAIO_BACKEND=uring failed but stored a watcher",
      "backend=epoll with GAIO_BACKEND=uring failed",
      "backend=epoll with GAIO_BACKEND=uring is not epoll",
  };
  const int code = WEXITSTATUS(status);
  if (code == 10) GTEST_SKIP() << "cannot install a seccomp filter here";
  ASSERT_NE(code, 11) << "the seccomp filter does not deny io_uring_setup";
  EXPECT_EQ(code, 0) << (code < 9 ? steps[code] : "unknown step");
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* pin_thread                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Runs f in a new thread, so that the test's own thread keeps its affinity. */
void InThread(const std::function<void()> &f) {
  std::thread t(f);
  t.join();
}

TEST(OpsPin, PinsToOneAllowedCpu) {
  InThread([] {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int cpu = -1;
    for (int i = 0; i < CPU_SETSIZE; i++) {
      if (CPU_ISSET(i, &allowed)) cpu = i; /* the last one, to be other than the default 0 */
    }
    ASSERT_GE(cpu, 0);
    ASSERT_EQ(gaio_pin_thread(cpu), 0);
    cpu_set_t now;
    CPU_ZERO(&now);
    ASSERT_EQ(sched_getaffinity(0, sizeof now, &now), 0);
    EXPECT_EQ(CPU_COUNT(&now), 1);
    EXPECT_TRUE(CPU_ISSET(cpu, &now));
    EXPECT_EQ(sched_getcpu(), cpu);
  });
}

TEST(OpsPin, OutOfRangeIsEINVAL) {
  InThread([] {
    cpu_set_t before;
    CPU_ZERO(&before);
    ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
    EXPECT_EQ(gaio_pin_thread(-1), -EINVAL);
    EXPECT_EQ(gaio_pin_thread(CPU_SETSIZE), -EINVAL);
    EXPECT_EQ(gaio_pin_thread(1 << 30), -EINVAL);
    cpu_set_t after;
    CPU_ZERO(&after);
    ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
    EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "a refused pin changed the affinity";
  });
}

/* A cpu that exists but this thread may not run on (its set restricted to another one). */
TEST(OpsPin, CpuOutsideAllowedSetIsEINVAL) {
  InThread([] {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    std::vector<int> cpus;
    for (int i = 0; i < CPU_SETSIZE; i++) {
      if (CPU_ISSET(i, &allowed)) cpus.push_back(i);
    }
    ASSERT_FALSE(cpus.empty());
    int outside;
    if (cpus.size() >= 2) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpus[0], &one);
      ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
      outside = cpus[1];
    } else {
      outside = cpus[0] + 1; /* not in the set; may not exist, still outside */
    }
    EXPECT_EQ(gaio_pin_thread(outside), -EINVAL) << "cpu " << outside;
    cpu_set_t now;
    CPU_ZERO(&now);
    ASSERT_EQ(sched_getaffinity(0, sizeof now, &now), 0);
    EXPECT_EQ(CPU_COUNT(&now), 1);
    EXPECT_TRUE(CPU_ISSET(cpus[0], &now));
    EXPECT_EQ(gaio_pin_thread(cpus[0]), 0) << "the one allowed cpu";
  });
}

/* Issue 12, defect 5: gaio_cancel() of a read queued behind a read whose own cancel (its
 * deadline passed) the kernel has not answered yet. On io_uring the second read can complete
 * only once the first has settled, in a kick of the fd; gaio_cancel() polled without running
 * the kicks, and waited forever. The second gaio_wait() below returns as soon as a result is
 * ready (an -ENOBUFS write, finished in the loop), right after expiring the first read and
 * before polling, so that read's cancel is still on its way when gaio_cancel() runs. */
TEST_P(OpsTest, CancelBehindAReadWhoseDeadlineCancelIsPending) {
  gaio_options o = {};
  o.max_write_pending = 16;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  UniqueFd peer, peer2;
  int fd = AttachedTcp(&peer, w), fd2 = AttachedTcp(&peer2, w);
  ASSERT_GE(fd, 0);
  ASSERT_GE(fd2, 0);
  static char b1[16], b2[16], big[32];
  ASSERT_EQ(gaio_read_deadline(w, fd, b1, sizeof b1, Ctx(1), gaio_now() + 50 * kMs), 0);
  ASSERT_EQ(gaio_read(w, fd, b2, sizeof b2, Ctx(2)), 0);
  gaio_result r[4];
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 0); /* this one polls: on io_uring the first read is held */
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(gaio_write(w, fd2, big, sizeof big, Ctx(3)), 0);
  int n = gaio_wait(w, r, 4, 0);
  ASSERT_GE(n, 1);
  std::vector<gaio_result> got(r, r + n);

  EXPECT_EQ(gaio_cancel(w, fd, Ctx(2)), 0);
  Collected c = WaitResults(w, 3 - got.size(), 5000);
  got.insert(got.end(), c.results.begin(), c.results.end());
  ASSERT_EQ(got.size(), 3u);
  std::vector<void *> order;
  for (const gaio_result &x : got) {
    order.push_back(x.ctx);
    if (x.ctx == Ctx(1)) ExpectResult(x, Ctx(1), fd, GAIO_OP_READ, -ETIMEDOUT, 0);
    if (x.ctx == Ctx(2)) ExpectResult(x, Ctx(2), fd, GAIO_OP_READ, -ECANCELED, 0);
    if (x.ctx == Ctx(3)) ExpectResult(x, Ctx(3), fd2, GAIO_OP_WRITE, -ENOBUFS, 0);
  }
  auto at = [&](void *ctx) { return std::find(order.begin(), order.end(), ctx) - order.begin(); };
  EXPECT_LT(at(Ctx(1)), at(Ctx(2))) << "FIFO on the fd";
  EXPECT_LT(at(Ctx(2)), 3);
  EXPECT_LT(at(Ctx(3)), 3);
  FreeAndFinish({fd, fd2}, w);
}

const auto kParamName = [](const ::testing::TestParamInfo<std::string> &info) {
  return info.param;
};
INSTANTIATE_TEST_SUITE_P(Backends, OpsTest, ::testing::ValuesIn(Backends()), kParamName);
INSTANTIATE_TEST_SUITE_P(Backends, DetachTest, ::testing::ValuesIn(Backends()), kParamName);
INSTANTIATE_TEST_SUITE_P(Backends, UdpTest, ::testing::ValuesIn(Backends()), kParamName);

}  // namespace
