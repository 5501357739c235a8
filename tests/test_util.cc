#include "tests/test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>

#include "gtest/gtest.h"

namespace gaio_test {

std::vector<std::string> Backends() { return {"epoll", "uring"}; }

bool BackendUnavailable(int rc) {
  return rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EOPNOTSUPP;
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

Listener::Listener(int backlog) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) {
    ADD_FAILURE() << "socket: " << strerror(errno);
    return;
  }
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  if (bind(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
    ADD_FAILURE() << "bind: " << strerror(errno);
    return;
  }
  if (listen(s.get(), backlog) != 0) {
    ADD_FAILURE() << "listen: " << strerror(errno);
    return;
  }
  socklen_t sl = sizeof sa;
  if (getsockname(s.get(), reinterpret_cast<sockaddr *>(&sa), &sl) != 0) {
    ADD_FAILURE() << "getsockname: " << strerror(errno);
    return;
  }
  port_ = ntohs(sa.sin_port);
  fd_ = std::move(s);
}

UniqueFd Listener::Connect() const {
  UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.valid()) {
    ADD_FAILURE() << "socket: " << strerror(errno);
    return UniqueFd();
  }
  sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port_);
  if (connect(c.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
    ADD_FAILURE() << "connect: " << strerror(errno);
    return UniqueFd();
  }
  int one = 1;
  setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

UniqueFd Listener::Accept() const {
  UniqueFd a(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!a.valid()) {
    ADD_FAILURE() << "accept4: " << strerror(errno);
    return UniqueFd();
  }
  int one = 1;
  setsockopt(a.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return a;
}

SocketPair TcpPair() {
  SocketPair p;
  Listener l(1);
  if (!l.ok()) return p;
  UniqueFd c = l.Connect();
  if (!c.valid()) return p;
  UniqueFd s = l.Accept();
  if (!s.valid()) return p;
  p.a = std::move(c);
  p.b = std::move(s);
  return p;
}

SocketPair UnixPair() {
  SocketPair p;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    ADD_FAILURE() << "socketpair: " << strerror(errno);
    return p;
  }
  p.a.Reset(sv[0]);
  p.b.Reset(sv[1]);
  return p;
}

std::vector<SocketPair> TcpPairs(size_t n) {
  std::vector<SocketPair> out;
  out.reserve(n);
  Listener l(16);
  if (!l.ok()) return out;
  /* One connect then its accept: the accept queue holds only that connection, so the two
   * ends match. */
  for (size_t i = 0; i < n; i++) {
    SocketPair p;
    p.a = l.Connect();
    if (!p.a.valid()) break;
    p.b = l.Accept();
    if (!p.b.valid()) break;
    out.push_back(std::move(p));
  }
  return out;
}

static uint64_t Mix64(uint64_t x) {
  /* splitmix64 finaliser: a bijection with good diffusion. */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint64_t PatternWord(uint64_t seed, uint64_t block) { return Mix64(Mix64(seed) ^ block); }

uint8_t PatternByte(uint64_t seed, uint64_t off) {
  return static_cast<uint8_t>(PatternWord(seed, off / 8) >> (8 * (off % 8)));
}

void FillPattern(uint64_t seed, uint64_t off, uint8_t *dst, size_t len) {
  size_t i = 0;
  while (i < len && (off + i) % 8 != 0) {
    dst[i] = PatternByte(seed, off + i);
    i++;
  }
  while (len - i >= 8) {
    uint64_t word = PatternWord(seed, (off + i) / 8);
    for (int k = 0; k < 8; k++) dst[i + k] = static_cast<uint8_t>(word >> (8 * k));
    i += 8;
  }
  while (i < len) {
    dst[i] = PatternByte(seed, off + i);
    i++;
  }
}

std::vector<uint8_t> Pattern(uint64_t seed, size_t len, uint64_t off) {
  std::vector<uint8_t> v(len);
  FillPattern(seed, off, v.data(), len);
  return v;
}

size_t PatternMismatch(uint64_t seed, uint64_t off, const uint8_t *buf, size_t len) {
  uint8_t chunk[4096];
  for (size_t done = 0; done < len;) {
    size_t n = std::min(len - done, sizeof chunk);
    FillPattern(seed, off + done, chunk, n);
    if (memcmp(chunk, buf + done, n) != 0) {
      for (size_t k = 0; k < n; k++) {
        if (chunk[k] != buf[done + k]) return done + k;
      }
    }
    done += n;
  }
  return SIZE_MAX;
}

static bool IsSocket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

bool WriteAll(int fd, const void *buf, size_t len) {
  const char *p = static_cast<const char *>(buf);
  bool sock = IsSocket(fd);
  while (len > 0) {
    ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd pfd = {fd, POLLOUT, 0};
        poll(&pfd, 1, 1000);
        continue;
      }
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

static int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
  return left < 0 ? 0 : static_cast<int>(left);
}

size_t ReadExactly(int fd, void *buf, size_t len, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char *p = static_cast<char *>(buf);
  size_t got = 0;
  while (got < len) {
    pollfd pfd = {fd, POLLIN, 0};
    int left = RemainingMs(deadline);
    int pr = poll(&pfd, 1, left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    ssize_t n = read(fd, p + got, len - got);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

std::vector<uint8_t> ReadToEof(int fd, int timeout_ms, bool *eof, int *err) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::vector<uint8_t> out;
  if (eof) *eof = false;
  if (err) *err = 0;
  char buf[65536];
  for (;;) {
    pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, RemainingMs(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      if (err) *err = errno;
      break;
    }
    if (n == 0) {
      if (eof) *eof = true;
      break;
    }
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

bool WaitReadable(int fd, int timeout_ms) {
  pollfd pfd = {fd, POLLIN, 0};
  int pr;
  do {
    pr = poll(&pfd, 1, timeout_ms);
  } while (pr < 0 && errno == EINTR);
  return pr == 1;
}

bool SetLingerZero(int fd) {
  linger lg = {1, 0};
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0;
}

bool SetRcvBuf(int fd, int bytes) {
  return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) == 0;
}

bool SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

int CountOpenFds() {
  DIR *d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent *e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n - 1; /* the directory's own fd */
}

bool FdIsOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

Collected WaitResults(gaio_watcher *w, size_t n, int timeout_ms, const BatchFn &on_batch) {
  Collected c;
  const uint64_t deadline = gaio_now() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  std::vector<gaio_result> batch(1024);
  size_t want = n;
  while (c.results.size() < want) {
    uint64_t now = gaio_now();
    if (now >= deadline) {
      c.timed_out = true;
      ADD_FAILURE() << "timed out after " << timeout_ms << " ms with " << c.results.size() << " of "
                    << want << " results";
      break;
    }
    int left_ms = static_cast<int>((deadline - now) / 1000000ull) + 1;
    int max = static_cast<int>(std::min(want - c.results.size(), batch.size()));
    int rc = gaio_wait(w, batch.data(), max, std::min(left_ms, 500));
    c.last_rc = rc;
    if (rc < 0) {
      ADD_FAILURE() << "gaio_wait returned " << rc << " (" << gaio_strerror(rc) << ") with "
                    << c.results.size() << " of " << want << " results";
      break;
    }
    if (rc > max) {
      ADD_FAILURE() << "gaio_wait returned " << rc << " results, more than max " << max;
      break;
    }
    c.results.insert(c.results.end(), batch.begin(), batch.begin() + rc);
    if (rc > 0 && on_batch) on_batch(batch.data(), rc, &want);
  }
  return c;
}

void ExpectNoResult(gaio_watcher *w, int timeout_ms) {
  gaio_result r[4];
  int rc = gaio_wait(w, r, 4, timeout_ms);
  EXPECT_EQ(rc, 0) << "unexpected result(s)"
                   << (rc > 0 ? ": first " + Describe(r[0]) : std::string());
}

void ExpectDrained(gaio_watcher *w) {
  gaio_stats st;
  memset(&st, 0xab, sizeof st);
  gaio_watcher_stats(w, &st);
  EXPECT_EQ(st.submitted, st.completed) << "accepted requests without exactly one result";
  EXPECT_EQ(st.in_flight, 0u);
  EXPECT_EQ(st.queued_results, 0u);
}

Watchdog::Watchdog(const std::string &what, int timeout_ms) {
  thread_ = std::thread([this, what, timeout_ms] {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return done_; })) {
      fprintf(stderr, "WATCHDOG: %s did not finish within %d ms; aborting\n", what.c_str(),
              timeout_ms);
      fflush(stderr);
      abort();
    }
  });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

double MsSince(uint64_t t0_ns) { return static_cast<double>(gaio_now() - t0_ns) / 1e6; }

const char *OpName(int op) {
  switch (op) {
    case GAIO_OP_READ:
      return "READ";
    case GAIO_OP_READ_FULL:
      return "READ_FULL";
    case GAIO_OP_WRITE:
      return "WRITE";
    case GAIO_OP_ACCEPT:
      return "ACCEPT";
    case GAIO_OP_CONNECT:
      return "CONNECT";
    case GAIO_OP_RECVFROM:
      return "RECVFROM";
    case GAIO_OP_SENDTO:
      return "SENDTO";
    case GAIO_OP_SHUTDOWN:
      return "SHUTDOWN";
    default:
      return "?";
  }
}

std::string Describe(const gaio_result &r) {
  char s[320];
  snprintf(s, sizeof s,
           "{op=%s fd=%d ctx=%p buf=%p size=%zu error=%d (%s) flags=%#x conn_fd=%d addr_len=%u}",
           OpName(r.op), r.fd, r.ctx, r.buf, r.size, r.error,
           r.error ? gaio_strerror(r.error) : "ok", r.flags, r.conn_fd, r.addr_len);
  return s;
}

void BackendTest::SetUp() {
  fds_at_start_ = CountOpenFds();
  int rc = CreateRc(&w_, gaio_options{});
  if (BackendUnavailable(rc)) {
    GTEST_SKIP() << "backend " << GetParam() << " unavailable: " << rc << " ("
                 << gaio_strerror(rc) << ")";
  }
  ASSERT_EQ(rc, 0) << gaio_strerror(rc);
  ASSERT_NE(w_, nullptr);
  if (watchdog_ms_ > 0) {
    dog_.reset(new Watchdog(
        std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()),
        watchdog_ms_));
  }
}

void BackendTest::TearDown() {
  for (gaio_watcher *x : extra_) gaio_watcher_destroy(x);
  extra_.clear();
  gaio_watcher_destroy(w_);
  w_ = nullptr;
  dog_.reset();
  /* The watcher closes every fd it owns and its own: nothing may leak. */
  if (!IsSkipped() && !HasFailure()) {
    EXPECT_EQ(CountOpenFds(), fds_at_start_) << "fds leaked by the test or the library";
  }
}

int BackendTest::CreateRc(gaio_watcher **out, gaio_options o) {
  o.backend = GetParam().c_str();
  return gaio_watcher_create(out, &o);
}

gaio_watcher *BackendTest::NewWatcher(gaio_options o) {
  gaio_watcher *w = nullptr;
  int rc = CreateRc(&w, o);
  EXPECT_EQ(rc, 0) << gaio_strerror(rc);
  if (rc == 0) extra_.push_back(w);
  return rc == 0 ? w : nullptr;
}

int BackendTest::Attach(UniqueFd &fd, gaio_watcher *w) {
  int n = fd.get();
  int rc = gaio_attach(w ? w : w_, n);
  EXPECT_EQ(rc, 0) << "gaio_attach(" << n << "): " << gaio_strerror(rc);
  if (rc != 0) return -1;
  fd.Release();
  return n;
}

gaio_stats BackendTest::Stats(gaio_watcher *w) {
  gaio_stats s;
  memset(&s, 0xab, sizeof s);
  gaio_watcher_stats(w ? w : w_, &s);
  return s;
}

void BackendTest::FreeAndFinish(const std::vector<int> &fds, gaio_watcher *w) {
  w = w ? w : w_;
  for (int fd : fds) EXPECT_EQ(gaio_free(w, fd), 0) << "fd " << fd;
  ExpectNoResult(w, 0);
  ExpectDrained(w);
  EXPECT_EQ(Stats(w).fds, 0u);
}

// A CA, a server certificate for localhost and 127.0.0.1, client certificates with SPIFFE
// URIs (billing, other), an expired one and one from a foreign CA.
const char kMakeCerts[] = R"(set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 30 -subj "/CN=$1" 2>/dev/null; }
leaf() { # name CA subject SAN
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$3" 2>/dev/null
  printf 'subjectAltName=%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
ca ca
ca foreign_ca
leaf server ca /CN=localhost DNS:localhost,IP:127.0.0.1
leaf billing ca /CN=billing URI:spiffe://example/ns/billing
leaf other ca /CN=other URI:spiffe://example/ns/other
leaf foreign foreign_ca /CN=foreign URI:spiffe://example/ns/billing
# Expired: `openssl ca` takes explicit dates (x509 -req in OpenSSL 3.0 cannot).
key expired.key
openssl req -new -key expired.key -out expired.csr -subj /CN=expired 2>/dev/null
: > index.txt
echo 01 > serial
cat > ca.cnf <<EOF
[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
[p]
commonName = supplied
EOF
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200201000000Z -notext 2>/dev/null
)";

bool MakeTestCerts(const std::string &dir) {
  std::string script = dir + ".sh";
  {
    std::ofstream f(script);
    f << kMakeCerts;
    if (!f) return false;
  }
  std::string cmd = "mkdir -p '" + dir + "' && bash '" + script + "' '" + dir + "'";
  bool ok = system(cmd.c_str()) == 0;
  unlink(script.c_str());
  return ok;
}

}  // namespace gaio_test
