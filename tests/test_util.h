/* Helpers for the gaio-c test suites: sockets, byte patterns, bounded waits and a watchdog.
 * Test-only; visible to //tests:__pkg__. Every helper reports failures through googletest
 * (ADD_FAILURE) and returns, so a broken library fails a test instead of hanging it. */
#ifndef GAIO_TESTS_TEST_UTIL_H
#define GAIO_TESTS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "gaio/gaio.h"

namespace gaio_test {

/* Every backend the behaviour suites run over (the values of their INSTANTIATE_TEST_SUITE_P).
 * Adding a backend is one line in test_util.cc. */
std::vector<std::string> Backends();

/* Setup errors of gaio_watcher_create() that mean "this backend cannot run here" (no kernel
 * support, forbidden by a seccomp policy or a sysctl): the suites GTEST_SKIP() the backend
 * rather than fail. */
bool BackendUnavailable(int rc);

/* An owned file descriptor, closed on destruction unless released (for example after a
 * successful gaio_attach(), which passes ownership to the watcher). */
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd &&o) noexcept : fd_(o.Release()) {}
  UniqueFd &operator=(UniqueFd &&o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd &) = delete;
  UniqueFd &operator=(const UniqueFd &) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

/* A listening TCP socket on 127.0.0.1, port 0 (the kernel picks it; read back with
 * getsockname). */
class Listener {
 public:
  /* backlog is passed to listen(2) as is. */
  explicit Listener(int backlog = 128);
  bool ok() const { return fd_.valid() && port_ != 0; }
  int fd() const { return fd_.get(); }
  uint16_t port() const { return port_; }
  /* A blocking client socket connected to this listener, or an invalid UniqueFd (and a test
   * failure). */
  UniqueFd Connect() const;
  /* accept4() with SOCK_CLOEXEC; invalid on error. */
  UniqueFd Accept() const;
  /* Give up ownership of the listening fd (for example to gaio_attach() it); port() and
   * Connect() keep working. */
  int Release() { return fd_.Release(); }

 private:
  UniqueFd fd_;
  uint16_t port_ = 0;
};

/* Two connected blocking stream sockets: a and b. */
struct SocketPair {
  UniqueFd a;
  UniqueFd b;
};

/* A TCP connection over 127.0.0.1 (through a fresh listener on port 0). Both ends blocking,
 * TCP_NODELAY set. On failure both are invalid and a test failure is recorded. */
SocketPair TcpPair();
/* socketpair(AF_UNIX, SOCK_STREAM). */
SocketPair UnixPair();
/* n TCP pairs sharing one listener (much faster than n listeners). */
std::vector<SocketPair> TcpPairs(size_t n);

/* Deterministic test data: byte i of stream `seed` at offset `off`. Distinct seeds give
 * distinct streams, and the stream does not repeat with a short period, so a misplaced or
 * duplicated chunk is detected. */
uint8_t PatternByte(uint64_t seed, uint64_t off);
std::vector<uint8_t> Pattern(uint64_t seed, size_t len, uint64_t off = 0);
void FillPattern(uint64_t seed, uint64_t off, uint8_t *dst, size_t len);
/* The first offset where buf differs from the pattern, or SIZE_MAX if it matches. */
size_t PatternMismatch(uint64_t seed, uint64_t off, const uint8_t *buf, size_t len);

/* Blocking I/O on test-owned fds. WriteAll returns false on error (with MSG_NOSIGNAL on
 * sockets). ReadExactly waits at most timeout_ms overall (poll) and returns the bytes read;
 * fewer than len means EOF, error or timeout. */
bool WriteAll(int fd, const void *buf, size_t len);
size_t ReadExactly(int fd, void *buf, size_t len, int timeout_ms);
/* Read until EOF (read returns 0) within timeout_ms; returns the bytes, sets *eof (may be
 * NULL) and *err (errno of a failing read, 0 otherwise; may be NULL). */
std::vector<uint8_t> ReadToEof(int fd, int timeout_ms, bool *eof, int *err);
/* poll(2) for POLLIN on fd; true if readable (data, EOF or error) within timeout_ms. */
bool WaitReadable(int fd, int timeout_ms);

/* Sets SO_LINGER {1, 0}, so that close() sends an RST. */
bool SetLingerZero(int fd);
bool SetNonBlocking(int fd);
/* SO_RCVBUF: a fixed, small receive buffer (it also turns receive autotuning off), so that a
 * peer that does not read stops a writer after a bounded number of bytes. */
bool SetRcvBuf(int fd, int bytes);

/* The number of open fds of this process (entries of /proc/self/fd). */
int CountOpenFds();
/* True if fd is an open descriptor. */
bool FdIsOpen(int fd);

/* Results of gaio_wait(), collected until a count is reached or an overall bound passes. */
struct Collected {
  std::vector<gaio_result> results;
  int last_rc = 0; /* the last gaio_wait() return value */
  bool timed_out = false;
};

/* Calls gaio_wait() until exactly n results have arrived or timeout_ms has passed. Never asks
 * for more than the missing number, so an extra result stays queued (and is caught by
 * ExpectNoResult or by the stats check). on_batch, if set, runs after every gaio_wait() that
 * returned results, before the next call: it may read swap-buffer bytes and submit more
 * requests (it may raise n through *want). Records a test failure on a negative return or on
 * timeout. */
using BatchFn = std::function<void(const gaio_result *res, int n, size_t *want)>;
Collected WaitResults(gaio_watcher *w, size_t n, int timeout_ms = 20000,
                      const BatchFn &on_batch = nullptr);

/* gaio_wait(w, ..., timeout_ms) must return 0: no result is pending. */
void ExpectNoResult(gaio_watcher *w, int timeout_ms = 0);

/* Asserts that every accepted request has been delivered: submitted == completed,
 * in_flight == 0, queued_results == 0. */
void ExpectDrained(gaio_watcher *w);

/* Aborts the process with a message if not disarmed within the given time: a hung test must
 * fail, never hang. Used around calls that may block forever (gaio_wait(-1), joins). */
class Watchdog {
 public:
  Watchdog(const std::string &what, int timeout_ms);
  ~Watchdog();
  Watchdog(const Watchdog &) = delete;
  Watchdog &operator=(const Watchdog &) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/* The fixture of the behaviour suites: parameterised by backend name, it creates w_ on that
 * backend (skipping the test when the backend cannot start here), destroys it and every extra
 * watcher at the end, and then checks that no fd leaked. With watchdog_ms > 0, a Watchdog
 * bounds every test. */
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  explicit BackendTest(int watchdog_ms = 0) : watchdog_ms_(watchdog_ms) {}
  void SetUp() override;
  void TearDown() override;

  /* gaio_watcher_create with options o on this test's backend. */
  int CreateRc(gaio_watcher **out, gaio_options o);
  /* A second watcher with options o (backend = the parameter), destroyed by TearDown. */
  gaio_watcher *NewWatcher(gaio_options o = gaio_options{});
  /* Attach fd to w (default w_) and pass ownership: returns the fd number, or -1. */
  int Attach(UniqueFd &fd, gaio_watcher *w = nullptr);
  gaio_stats Stats(gaio_watcher *w = nullptr);
  /* Free the fds, let one gaio_wait() carry the frees out (it must deliver nothing: no request
   * may be pending), then every submit has had its one result and the watcher owns no fd. */
  void FreeAndFinish(const std::vector<int> &fds, gaio_watcher *w = nullptr);

  gaio_watcher *w_ = nullptr;
  std::vector<gaio_watcher *> extra_;
  int fds_at_start_ = 0;

 private:
  int watchdog_ms_;
  std::unique_ptr<Watchdog> dog_;
};

/* Elapsed milliseconds since a gaio_now() timestamp. */
// Test certificates, made by the `openssl` command in dir (created): ca.pem/.key, a server
// certificate for localhost and 127.0.0.1 (server.pem/.key), client certificates with SPIFFE URIs
// (billing, other), one from a foreign CA (foreign) and an expired one (expired). P-256 keys,
// valid 30 days. Returns whether every step succeeded.
bool MakeTestCerts(const std::string &dir);

double MsSince(uint64_t t0_ns);

const char *OpName(int op);
std::string Describe(const gaio_result &r);

}  // namespace gaio_test

#endif /* GAIO_TESTS_TEST_UTIL_H */
