// Running a server (rpc/rpc.h): rpc_server_run() stopped by rpc_server_stop() from another
// thread (a call in flight still completes OK), by SIGTERM and SIGINT, also in a process started
// with SIGTERM ignored; its errors; and the signal mask and dispositions it leaves behind. Also a
// listener under an fd shortage (EMFILE), which pauses accepting and never closes the listener.
//
// The test's own threads are created with SIGINT and SIGTERM blocked (SpawnBlocked), as
// rpc_server_run() asks of threads created before it: a SIGTERM sent to the process must reach
// the thread that waits for it, not end the test. The child process of IgnoredSigterm* is this
// binary run again with --run-child (its own main() below).
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"

namespace {

constexpr int kWaitMs = 10000;  // bound of every wait for something that must happen

// ---- The service: Say answers at once; Hold keeps the call until Release() ------------------

struct HoldState {
  std::mutex mu;
  std::condition_variable cv;
  Test__V1__EchoReply_Closure closure = nullptr;
  void *data = nullptr;
};
HoldState g_hold;

void h_say(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
           Test__V1__EchoReply_Closure closure, void *data) {
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  std::string text = std::string("echo:") + in->text;
  out.text = const_cast<char *>(text.c_str());
  closure(&out, data);
}
void h_slow(Test__V1__Echo_Service *s, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure closure, void *data) {
  h_say(s, in, closure, data);
}
void h_hold(Test__V1__Echo_Service *, const Test__V1__EchoRequest *,
            Test__V1__EchoReply_Closure closure, void *data) {
  std::lock_guard<std::mutex> lk(g_hold.mu);
  g_hold.closure = closure;
  g_hold.data = data;
  g_hold.cv.notify_all();
}
void h_fail(Test__V1__Echo_Service *, const Test__V1__EchoRequest *in,
            Test__V1__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), in->code, in->text);
}
Test__V1__Echo_Service g_service = TEST__V1__ECHO__INIT(h_);

bool WaitHeld() {
  std::unique_lock<std::mutex> lk(g_hold.mu);
  return g_hold.cv.wait_for(lk, std::chrono::milliseconds(kWaitMs),
                            [] { return g_hold.closure != nullptr; });
}

void Release(const char *text) {
  std::unique_lock<std::mutex> lk(g_hold.mu);
  Test__V1__EchoReply out = TEST__V1__ECHO_REPLY__INIT;
  out.text = const_cast<char *>(text);
  auto closure = g_hold.closure;
  void *data = g_hold.data;
  g_hold.closure = nullptr;
  lk.unlock();
  closure(&out, data);
}

rpc_server *NewServer(unsigned workers = 2) {
  rpc_server_options o = {};
  o.workers = workers;
  rpc_server *s = nullptr;
  EXPECT_EQ(0, rpc_server_create(&s, &o));
  EXPECT_EQ(0, rpc_server_add_service(s, &g_service.base));
  return s;
}

// ---- Signals --------------------------------------------------------------------------------

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// A thread that starts with SIGINT and SIGTERM blocked (the caller's mask is unchanged).
std::thread SpawnBlocked(std::function<void()> fn) {
  sigset_t set = StopSignals(), old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  std::thread t(std::move(fn));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return t;
}

// Whether SIGINT and SIGTERM are blocked in this thread, and their handlers.
struct SignalState {
  bool int_blocked, term_blocked;
  void (*int_handler)(int), (*term_handler)(int);
  bool operator==(const SignalState &o) const {
    return int_blocked == o.int_blocked && term_blocked == o.term_blocked &&
           int_handler == o.int_handler && term_handler == o.term_handler;
  }
};

SignalState CurrentSignals() {
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  struct sigaction si, st;
  sigaction(SIGINT, nullptr, &si);
  sigaction(SIGTERM, nullptr, &st);
  return {sigismember(&mask, SIGINT) == 1, sigismember(&mask, SIGTERM) == 1, si.sa_handler,
          st.sa_handler};
}

// A blocking call of Say over a new channel: the status, and the reply's text in *text.
int CallSay(int port, const char *text, std::string *reply_text) {
  rpc_channel *ch = nullptr;
  std::string target = "127.0.0.1:" + std::to_string(port);
  if (rpc_channel_create(&ch, target.c_str(), nullptr) != 0) return -1;
  rpc_method m;
  EXPECT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Say"));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text);
  ProtobufCMessage *reply = nullptr;
  int st = rpc_channel_call(ch, &m, &req.base, kWaitMs, &reply, nullptr, 0);
  if (reply) {
    *reply_text = reinterpret_cast<Test__V1__EchoReply *>(reply)->text;
    protobuf_c_message_free_unpacked(reply, nullptr);
  }
  rpc_channel_destroy(ch);
  return st;
}

// Whether a TCP connect to 127.0.0.1:port is refused (nobody listens any more).
bool ConnectRefused(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, reinterpret_cast<struct sockaddr *>(&a), sizeof a);
  int err = errno;
  close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

struct Started {
  std::mutex mu;
  std::condition_variable cv;
  int port = 0;
  static void Cb(void *arg, rpc_server *s) {
    auto *st = static_cast<Started *>(arg);
    std::lock_guard<std::mutex> lk(st->mu);
    st->port = rpc_server_port(s);
    st->cv.notify_all();
  }
  int Wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, std::chrono::milliseconds(kWaitMs), [this] { return port != 0; });
    return port;
  }
};

// ---- rpc_server_stop() ----------------------------------------------------------------------

// A stop from another thread ends the run; the call in flight at the stop completes OK within
// the drain, and the listener is closed before the run returns.
TEST(ServerRun, StopFromAnotherThreadDrainsTheCallInFlight) {
  rpc_server *s = NewServer();
  Started started;
  rpc_server_run_options o = {};
  o.address = "127.0.0.1:0";
  o.drain_ms = kWaitMs;
  o.on_started = Started::Cb;
  o.arg = &started;
  std::atomic<int> run_rc{1};
  std::thread runner = SpawnBlocked([&] { run_rc = rpc_server_run(s, &o); });
  int port = started.Wait();
  ASSERT_GT(port, 0);

  rpc_channel *ch = nullptr;
  ASSERT_EQ(0, rpc_channel_create(&ch, ("127.0.0.1:" + std::to_string(port)).c_str(), nullptr));
  rpc_cq *cq = nullptr;
  ASSERT_EQ(0, rpc_cq_create(&cq));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &test__v1__echo__descriptor, "Hold"));
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  ASSERT_EQ(0, rpc_channel_submit(ch, &m, &req.base, kWaitMs, cq, nullptr, nullptr));
  ASSERT_TRUE(WaitHeld());

  ASSERT_EQ(0, rpc_server_stop(s));
  // The shutdown has begun once nobody listens on the port; the held call is still in flight.
  bool refused = false;
  for (int i = 0; i < kWaitMs / 10 && !refused; i++) {
    refused = ConnectRefused(port);
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(refused);
  EXPECT_EQ(1, run_rc.load());  // still draining
  Release("done in the drain");

  rpc_completion c;
  ASSERT_EQ(1, rpc_cq_wait(cq, &c, 1, kWaitMs));
  EXPECT_EQ(RPC_STATUS_OK, c.status) << c.message;
  ASSERT_NE(nullptr, c.reply);
  EXPECT_STREQ("done in the drain", reinterpret_cast<Test__V1__EchoReply *>(c.reply)->text);
  protobuf_c_message_free_unpacked(c.reply, nullptr);
  runner.join();
  EXPECT_EQ(0, run_rc.load());
  rpc_channel_destroy(ch);
  rpc_cq_destroy(cq);
  rpc_server_destroy(s);
}

// A stop made before the run makes it return right after starting.
TEST(ServerRun, StopBeforeRunReturnsAtOnce) {
  rpc_server *s = NewServer(1);
  ASSERT_EQ(0, rpc_server_stop(s));
  rpc_server_run_options o = {};
  o.address = "127.0.0.1:0";
  o.drain_ms = -1;
  EXPECT_EQ(0, rpc_server_run(s, &o));
  EXPECT_EQ(-EBUSY, rpc_server_run(s, nullptr));  // started once already: no second run
  rpc_server_destroy(s);
  EXPECT_EQ(-EINVAL, rpc_server_stop(nullptr));
  EXPECT_EQ(-EINVAL, rpc_server_run(nullptr, nullptr));
}

// ---- Signals --------------------------------------------------------------------------------

// kill(getpid(), SIGTERM) once started: the run returns 0, the server answered calls until
// then, and the mask and dispositions are as before (SIGTERM unblocked again, SIG_DFL).
TEST(ServerRun, SigtermToTheProcessStopsIt) {
  SignalState before = CurrentSignals();
  ASSERT_FALSE(before.term_blocked);
  rpc_server *s = NewServer();
  struct Ctx {
    std::string reply;
    int status = -1;
  } ctx;
  rpc_server_run_options o = {};
  o.address = "127.0.0.1:0";
  o.on_started = [](void *arg, rpc_server *srv) {
    auto *c = static_cast<Ctx *>(arg);
    // A call from another thread (its channel thread blocks the signals too), then the signal.
    std::thread t = SpawnBlocked([c, srv] { c->status = CallSay(rpc_server_port(srv), "hi", &c->reply); });
    t.join();
    kill(getpid(), SIGTERM);
  };
  o.arg = &ctx;
  EXPECT_EQ(0, rpc_server_run(s, &o));
  EXPECT_EQ(RPC_STATUS_OK, ctx.status);
  EXPECT_EQ("echo:hi", ctx.reply);
  EXPECT_TRUE(before == CurrentSignals());
  rpc_server_destroy(s);
}

// SIGINT sent to the running thread with pthread_kill() from another thread stops it too; a
// caller that had blocked the signals keeps them blocked, and nothing stays pending.
TEST(ServerRun, SigintFromAnotherThreadStopsIt) {
  sigset_t set = StopSignals(), old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  SignalState before = CurrentSignals();
  rpc_server *s = NewServer();
  Started started;
  rpc_server_run_options o = {};
  o.address = "127.0.0.1:0";
  o.on_started = Started::Cb;
  o.arg = &started;
  pthread_t self = pthread_self();
  std::thread killer = SpawnBlocked([&] {
    if (started.Wait() > 0) pthread_kill(self, SIGINT);
  });
  EXPECT_EQ(0, rpc_server_run(s, &o));
  killer.join();
  EXPECT_TRUE(before == CurrentSignals());
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(0, sigismember(&pending, SIGINT));
  rpc_server_destroy(s);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// The child (this binary with --run-child) inherits SIGTERM ignored across exec, as under a
// parent that ignores it; rpc_server_run() stops on SIGTERM all the same, and leaves it ignored.
TEST(ServerRun, IgnoredSigtermStillStopsIt) {
  int out[2];
  ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // only async-signal-safe calls until exec
    signal(SIGTERM, SIG_IGN);
    dup2(out[1], 1);
    execl("/proc/self/exe", "server_run_test", "--run-child", static_cast<char *>(nullptr));
    _exit(127);
  }
  close(out[1]);
  // Its first line: "child: listening on 127.0.0.1:PORT".
  std::string text;
  char buf[256];
  while (text.find('\n') == std::string::npos) {
    struct pollfd p = {out[0], POLLIN, 0};
    if (poll(&p, 1, kWaitMs) != 1) break;
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(0u, text.find("child: listening on 127.0.0.1:")) << text;
  ASSERT_EQ(0, kill(pid, SIGTERM));
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < kWaitMs / 10 && got == 0; i++) {
    got = waitpid(pid, &status, WNOHANG);
    if (got == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (got == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the child did not stop on SIGTERM";
  }
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ", output: " << text;
  EXPECT_EQ(0, WEXITSTATUS(status)) << text;  // 3: not ignored at start; 4: not ignored after
  EXPECT_NE(std::string::npos, text.find("child: SIGTERM, draining for up to 1000 ms\n")) << text;
}

// ---- Errors ---------------------------------------------------------------------------------

// Bad address, address in use, no service: the error of listen or start, nothing running, and
// the signal state untouched.
TEST(ServerRun, ErrorsLeaveNothingRunning) {
  SignalState before = CurrentSignals();
  rpc_server *s = NewServer(1);
  rpc_server_run_options o = {};
  o.address = "not an address";
  EXPECT_EQ(-EINVAL, rpc_server_run(s, &o));

  rpc_server *other = NewServer(1);
  ASSERT_EQ(0, rpc_server_listen(other, "127.0.0.1:0"));
  std::string taken = "127.0.0.1:" + std::to_string(rpc_server_port(other));
  o.address = taken.c_str();
  EXPECT_EQ(-EADDRINUSE, rpc_server_run(s, &o));
  rpc_server_destroy(other);

  o.address = nullptr;  // not listening at all: rpc_server_start() says -EINVAL
  EXPECT_EQ(-EINVAL, rpc_server_run(s, &o));
  o.address = "127.0.0.1:0";
  o.drain_ms = RPC_MAX_RUN_DRAIN_MS + 1;
  EXPECT_EQ(-EINVAL, rpc_server_run(s, &o));
  EXPECT_TRUE(before == CurrentSignals());
  rpc_server_destroy(s);

  rpc_server *empty = nullptr;  // no service
  ASSERT_EQ(0, rpc_server_create(&empty, nullptr));
  o.drain_ms = 0;
  EXPECT_EQ(-EINVAL, rpc_server_run(empty, &o));
  EXPECT_TRUE(before == CurrentSignals());
  rpc_server_destroy(empty);
}

// ---- Accepting under an fd shortage ---------------------------------------------------------

// With no fd left (RLIMIT_NOFILE at the lowest free fd), every accept fails EMFILE: accepting
// pauses and retries (rpc.h: "shortages only pause"), the listener stays open, and once fds are
// back a new client is served.
TEST(ServerRun, AcceptUnderFdShortagePausesAndResumes) {
  rpc_server *s = NewServer(1);
  ASSERT_EQ(0, rpc_server_listen(s, "127.0.0.1:0"));
  ASSERT_EQ(0, rpc_server_start(s));
  int port = rpc_server_port(s);
  int early = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // before the limit
  ASSERT_GE(early, 0);
  struct rlimit saved;
  ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &saved));
  int lowest_free = dup(0);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  struct rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &tight));
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(early, reinterpret_cast<struct sockaddr *>(&a), sizeof a);  // the backlog
  EXPECT_EQ(-1, dup(0));  // the shortage is real
  // Several pauses of 100 ms go by, each ending in an accept that fails EMFILE again.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &saved));
  EXPECT_EQ(0, rc);
  EXPECT_EQ(0, rpc_server_listen_error(s));
  std::string reply;
  EXPECT_EQ(RPC_STATUS_OK, CallSay(port, "after", &reply));
  EXPECT_EQ("echo:after", reply);
  EXPECT_EQ(0, rpc_server_listen_error(s));
  close(early);
  rpc_server_destroy(s);
}

// The child of IgnoredSigtermStillStopsIt: exit 3 if SIGTERM was not ignored on entry, 4 if it
// is not ignored again after the run, 1 if the run failed, 0 otherwise.
int RunChild() {
  struct sigaction sa;
  sigaction(SIGTERM, nullptr, &sa);
  if (sa.sa_handler != SIG_IGN) return 3;
  rpc_server *s = NewServer(2);
  rpc_server_run_options o = {};
  o.address = "127.0.0.1:0";
  o.drain_ms = 1000;
  o.print = 1;
  o.name = "child";
  int rc = rpc_server_run(s, &o);
  rpc_server_destroy(s);
  sigaction(SIGTERM, nullptr, &sa);
  if (rc != 0) return 1;
  return sa.sa_handler == SIG_IGN ? 0 : 4;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--run-child") == 0) return RunChild();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
