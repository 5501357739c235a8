/* Failures of the kernel interface itself (issue 12, defects 2 and 3), over every backend.
 *
 * gaio has no fault injection yet, so these tests make the failure real: for a while they put
 * /dev/null in place of the backend's own fd with dup2() (a dup keeps the backend's file open),
 * so that epoll_wait(2) fails with EINVAL and io_uring_enter(2) with EOPNOTSUPP, then put the
 * backend's file back. Each test creates its own watcher and finds that fd among the fds the
 * creation opened. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace {

using gaio_test::BackendTest;
using gaio_test::Backends;
using gaio_test::Collected;
using gaio_test::Describe;
using gaio_test::ExpectDrained;
using gaio_test::SocketPair;
using gaio_test::TcpPair;
using gaio_test::WaitResults;
using gaio_test::WriteAll;

constexpr uint64_t kMs = 1000000ull; /* nanoseconds per millisecond */

std::set<int> OpenFds() {
  std::set<int> fds;
  DIR *d = opendir("/proc/self/fd");
  if (d == nullptr) return fds;
  const int own = dirfd(d);
  while (struct dirent *e = readdir(d)) {
    if (e->d_name[0] != '.') fds.insert(atoi(e->d_name));
  }
  closedir(d);
  fds.erase(own);
  return fds;
}

/* The fd opened since `before` that is the backend's own: an io_uring or an epoll instance. */
int BackendFd(const std::set<int> &before, const std::string &backend) {
  const std::string want =
      backend == "uring" ? "anon_inode:[io_uring]" : "anon_inode:[eventpoll]";
  for (int fd : OpenFds()) {
    if (before.count(fd) != 0) continue;
    char link[256];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
    if (n > 0 && std::string(link, static_cast<size_t>(n)) == want) return fd;
  }
  return -1;
}

/* What the backend's poll fails with while its fd is /dev/null. */
int BrokenPollError(const std::string &backend) {
  return backend == "uring" ? -EOPNOTSUPP : -EINVAL;
}

/* /dev/null in place of fd, until Restore() or the end of the scope. */
class Clobber {
 public:
  explicit Clobber(int fd) : fd_(fd), saved_(fcntl(fd, F_DUPFD_CLOEXEC, 0)) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    EXPECT_GE(saved_, 0) << strerror(errno);
    EXPECT_GE(null, 0) << strerror(errno);
    EXPECT_EQ(dup3(null, fd_, O_CLOEXEC), fd_) << strerror(errno);
    close(null);
  }
  ~Clobber() { Restore(); }
  Clobber(const Clobber &) = delete;
  Clobber &operator=(const Clobber &) = delete;

  void Restore() {
    if (saved_ < 0) return;
    EXPECT_EQ(dup3(saved_, fd_, O_CLOEXEC), fd_) << strerror(errno);
    close(saved_);
    saved_ = -1;
  }

 private:
  int fd_;
  int saved_;
};

class FaultTest : public BackendTest {
 protected:
  FaultTest() : BackendTest(60000) {}

  /* A watcher of its own with options o, and its backend fd in *kfd. */
  gaio_watcher *Watcher(gaio_options o, int *kfd) {
    std::set<int> before = OpenFds();
    gaio_watcher *w = NewWatcher(o);
    *kfd = w != nullptr ? BackendFd(before, GetParam()) : -1;
    EXPECT_GE(*kfd, 0) << "no " << GetParam() << " fd among the new fds";
    return w;
  }
};

/* Defect 3: a poll error met while results are ready was dropped (the results went out and the
 * error vanished). Now the results go out first, and the error is held until they are all
 * delivered: gaio_wait() returns it once, even though the fd is back in place by then.
 *
 * A write beyond max_write_pending completes with -ENOBUFS in the loop, with no kernel
 * involved, so it is ready at once. gaio_wait() returns such results without polling only every
 * other batch: the first wait does not poll, the second one does, and that poll fails. */
TEST_P(FaultTest, PollErrorIsHeldUntilTheQueuedResultsAreDelivered) {
  gaio_options o = {};
  o.max_write_pending = 16;
  int kfd = -1;
  gaio_watcher *w = Watcher(o, &kfd);
  ASSERT_NE(w, nullptr);
  ASSERT_GE(kfd, 0);
  SocketPair p = TcpPair();
  int fd = Attach(p.a, w);
  ASSERT_GE(fd, 0);
  static char big[32];
  int c1 = 1, c2 = 2, c3 = 3, rd = 4;
  gaio_result r[4];
  ASSERT_EQ(gaio_write(w, fd, big, sizeof big, &c1), 0);
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 1);
  EXPECT_EQ(r[0].error, -ENOBUFS) << Describe(r[0]);

  Clobber broken(kfd);
  ASSERT_EQ(gaio_write(w, fd, big, sizeof big, &c2), 0);
  ASSERT_EQ(gaio_write(w, fd, big, sizeof big, &c3), 0);
  ASSERT_EQ(gaio_wait(w, r, 1, 0), 1) << "the results ready when the poll failed come first";
  EXPECT_EQ(r[0].ctx, &c2) << Describe(r[0]);
  broken.Restore();
  ASSERT_EQ(gaio_wait(w, r, 1, 0), 1) << "then the rest of them";
  EXPECT_EQ(r[0].ctx, &c3) << Describe(r[0]);
  EXPECT_EQ(gaio_wait(w, r, 4, 0), BrokenPollError(GetParam())) << "then the error";
  EXPECT_EQ(gaio_wait(w, r, 4, 0), 0) << "once";

  /* The watcher works on. */
  static char in[8];
  ASSERT_EQ(gaio_read(w, fd, in, sizeof in, &rd), 0);
  ASSERT_TRUE(WriteAll(p.b.get(), "ok", 2));
  Collected c = WaitResults(w, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].ctx, &rd);
  EXPECT_EQ(c.results[0].size, 2u) << Describe(c.results[0]);
  FreeAndFinish({fd}, w);
}

/* Defect 2, a cancel: with the one-entry submission queue full, a read held by the kernel
 * reaches its deadline and its cancel needs an SQE. The loop that waited for one ignored the
 * failing io_uring_enter and spun forever. Now the cancel is owed: the wait returns the error,
 * and once the ring works again the cancel goes out and the read ends with -ETIMEDOUT. */
TEST_P(FaultTest, ExpiryWithFullQueueWhileEnterFailsReturnsTheError) {
  if (GetParam() != "uring") GTEST_SKIP() << "io_uring only: epoll submits nothing";
  gaio_options o = {};
  o.ring_entries = 1;
  int kfd = -1;
  gaio_watcher *w = Watcher(o, &kfd);
  ASSERT_NE(w, nullptr);
  ASSERT_GE(kfd, 0);
  SocketPair pa = TcpPair(), pb = TcpPair();
  int a = Attach(pa.a, w), b = Attach(pb.a, w);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  static char ina[8], inb[8];
  int ra = 1, rb = 2;
  gaio_result r[4];
  ASSERT_EQ(gaio_read_deadline(w, a, ina, sizeof ina, &ra, gaio_now() + 100 * kMs), 0);
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 0); /* a's read is in the kernel */
  ASSERT_EQ(gaio_read(w, b, inb, sizeof inb, &rb), 0);

  Clobber broken(kfd);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  /* b's read takes the one SQE; a's read expires and its cancel finds none. */
  EXPECT_EQ(gaio_wait(w, r, 4, 0), -EOPNOTSUPP);
  broken.Restore();

  Collected c = WaitResults(w, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].ctx, &ra) << Describe(c.results[0]);
  EXPECT_EQ(c.results[0].error, -ETIMEDOUT) << Describe(c.results[0]);
  ASSERT_TRUE(WriteAll(pb.b.get(), "b", 1));
  c = WaitResults(w, 1, 5000);
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].ctx, &rb) << Describe(c.results[0]);
  EXPECT_EQ(c.results[0].size, 1u) << Describe(c.results[0]);
  FreeAndFinish({a, b}, w);
}

/* Defect 2, a release: gaio_free() of an fd whose read the kernel holds, while the full
 * submission queue leaves no SQE for the cancel and io_uring_enter fails. The loop that waited
 * for an SQE spun forever. Now the wait gives up: the read completes (-ECANCELED), and the
 * error is returned, by every later wait, since the kernel may still hold the read: the watcher
 * is only fit to be destroyed (gaio.h, gaio_wait). */
TEST_P(FaultTest, FreeWithFullQueueWhileEnterFailsReturnsTheError) {
  if (GetParam() != "uring") GTEST_SKIP() << "io_uring only: epoll submits nothing";
  gaio_options o = {};
  o.ring_entries = 1;
  o.max_write_pending = 16;
  int kfd = -1;
  gaio_watcher *w = Watcher(o, &kfd);
  ASSERT_NE(w, nullptr);
  ASSERT_GE(kfd, 0);
  SocketPair pa = TcpPair(), pb = TcpPair();
  int a = Attach(pa.a, w), b = Attach(pb.a, w);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  /* Static: the kernel may hold them until the watcher is destroyed, after this body. */
  static char ina[8], inb[8], big[32];
  int ra = 1, rb = 2, wb = 3;
  gaio_result r[4];
  ASSERT_EQ(gaio_read(w, a, ina, sizeof ina, &ra), 0);
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 0); /* a's read is in the kernel */
  /* This wait returns the -ENOBUFS write without polling, so b's read stays in the queue,
   * unsubmitted, and fills it. */
  ASSERT_EQ(gaio_read(w, b, inb, sizeof inb, &rb), 0);
  ASSERT_EQ(gaio_write(w, b, big, sizeof big, &wb), 0);
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 1);
  EXPECT_EQ(r[0].ctx, &wb) << Describe(r[0]);

  Clobber broken(kfd);
  ASSERT_EQ(gaio_free(w, a), 0);
  ASSERT_EQ(gaio_wait(w, r, 4, 0), 1);
  EXPECT_EQ(r[0].ctx, &ra) << Describe(r[0]);
  EXPECT_EQ(r[0].error, -ECANCELED) << Describe(r[0]);
  EXPECT_EQ(gaio_wait(w, r, 4, 0), -EOPNOTSUPP);
  broken.Restore();
  EXPECT_EQ(gaio_wait(w, r, 4, 0), -EOPNOTSUPP) << "lasting";
  /* b's read never gets its result; the watcher is destroyed by TearDown. */
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

}  // namespace
