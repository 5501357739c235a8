/* Requests longer than 32 bits of length (issue 12, defect 1), over every backend.
 *
 * io_uring's SQE carries a 32-bit length, and liburing casts a size_t to it: a read of exactly
 * 4 GiB became a 0-byte receive, reported as a false GAIO_EOF, and a write of 4 GiB and a page
 * sent its first page and then nothing. gaio now moves at most GAIO_MAX_IO_CHUNK per system call.
 *
 * The buffers are sparse: one anonymous MAP_NORESERVE mapping of 4 GiB and a page, of which
 * only the pages touched cost memory (the kernel reads untouched ones as zeros). No test moves
 * more than 64 MiB, so time and memory stay small. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "gaio/gaio.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace {

using gaio_test::BackendTest;
using gaio_test::Backends;
using gaio_test::Collected;
using gaio_test::Describe;
using gaio_test::ExpectDrained;
using gaio_test::FillPattern;
using gaio_test::Pattern;
using gaio_test::PatternMismatch;
using gaio_test::ReadExactly;
using gaio_test::SocketPair;
using gaio_test::TcpPair;
using gaio_test::WaitResults;
using gaio_test::WriteAll;

constexpr size_t kPage = 4096;
constexpr size_t kFourGiB = size_t{1} << 32;
constexpr size_t kChecked = size_t{64} << 20; /* bytes the peer reads and checks */
constexpr size_t kMapLen = kFourGiB + kPage;
constexpr uint64_t kSeed = 12;

class LargeIoTest : public BackendTest {
 protected:
  LargeIoTest() : BackendTest(120000) {}

  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    void *p = mmap(nullptr, kMapLen, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) GTEST_SKIP() << "no 4 GiB of address space: " << strerror(errno);
    buf_ = static_cast<uint8_t *>(p);
  }

  /* The watcher goes first: until it is destroyed the kernel may still hold the buffer. */
  void TearDown() override {
    BackendTest::TearDown();
    if (buf_ != nullptr) {
      EXPECT_EQ(munmap(buf_, kMapLen), 0);
    }
  }

  void RunBigWrite(bool queue_another);

  uint8_t *buf_ = nullptr;
};

TEST_P(LargeIoTest, ReadOf4GiBGetsTheBytesSent) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(p.a.valid());
  int fd = Attach(p.a);
  ASSERT_GE(fd, 0);
  int ctx = 0;
  ASSERT_EQ(gaio_read(w_, fd, buf_, kFourGiB, &ctx), 0);
  std::vector<uint8_t> sent = Pattern(kSeed, 100);
  ASSERT_TRUE(WriteAll(p.b.get(), sent.data(), sent.size()));
  Collected c = WaitResults(w_, 1, 10000);
  ASSERT_EQ(c.results.size(), 1u);
  const gaio_result &r = c.results[0];
  EXPECT_EQ(r.ctx, &ctx) << Describe(r);
  EXPECT_EQ(r.op, GAIO_OP_READ) << Describe(r);
  EXPECT_EQ(r.error, 0) << Describe(r) << " (a 4 GiB read must not be a 0-byte read)";
  EXPECT_EQ(r.size, 100u) << Describe(r);
  EXPECT_EQ(memcmp(buf_, sent.data(), sent.size()), 0);
  FreeAndFinish({fd});
}

/* A read-full of 4 GiB takes the 100 bytes sent, then the end of stream: GAIO_EOF with size 100,
 * not a 0-byte read's GAIO_EOF with size 0. */
TEST_P(LargeIoTest, ReadFullOf4GiBKeepsTheBytesBeforeEof) {
  SocketPair p = TcpPair();
  ASSERT_TRUE(p.a.valid());
  int fd = Attach(p.a);
  ASSERT_GE(fd, 0);
  int ctx = 0;
  ASSERT_EQ(gaio_read_full(w_, fd, buf_, kFourGiB, &ctx, 0), 0);
  std::vector<uint8_t> sent = Pattern(kSeed, 100);
  ASSERT_TRUE(WriteAll(p.b.get(), sent.data(), sent.size()));
  ASSERT_EQ(shutdown(p.b.get(), SHUT_WR), 0);
  Collected c = WaitResults(w_, 1, 10000);
  ASSERT_EQ(c.results.size(), 1u);
  const gaio_result &r = c.results[0];
  EXPECT_EQ(r.op, GAIO_OP_READ_FULL) << Describe(r);
  EXPECT_EQ(r.error, GAIO_EOF) << Describe(r);
  EXPECT_EQ(r.size, 100u) << Describe(r);
  EXPECT_EQ(memcmp(buf_, sent.data(), sent.size()), 0);
  FreeAndFinish({fd});
}

/* A write of 4 GiB and a page (a pattern in its first 64 MiB, zeros after; max_write_pending
 * raised to let it in) makes progress: a peer reads and checks the first 64 MiB, then the fd is
 * freed, and the write ends with -ECANCELED and size >= 64 MiB. With queue_another, a short
 * write queued behind it makes the two go out as one sendmsg/writev (whose iovecs are cut to
 * GAIO_MAX_IO_CHUNK in all); it is cancelled with nothing written. */
void LargeIoTest::RunBigWrite(bool queue_another) {
  gaio_options o = {};
  o.max_write_pending = 2 * kMapLen;
  gaio_watcher *w = NewWatcher(o);
  ASSERT_NE(w, nullptr);
  SocketPair p = TcpPair();
  ASSERT_TRUE(p.a.valid());
  int fd = Attach(p.a, w);
  ASSERT_GE(fd, 0);
  FillPattern(kSeed, 0, buf_, kChecked);
  const size_t len = kFourGiB + kPage;
  int big = 0, small = 0;
  static const char kTail[] = "tail";
  ASSERT_EQ(gaio_write(w, fd, buf_, len, &big), 0);
  if (queue_another) {
    ASSERT_EQ(gaio_write(w, fd, kTail, 4, &small), 0);
  }

  std::atomic<bool> peer_done{false};
  size_t got = 0, mismatch = SIZE_MAX;
  std::thread peer([&] {
    std::vector<uint8_t> chunk(size_t{1} << 20);
    while (got < kChecked) {
      size_t n = ReadExactly(p.b.get(), chunk.data(), chunk.size(), 10000);
      size_t m = PatternMismatch(kSeed, got, chunk.data(), n);
      if (m != SIZE_MAX && mismatch == SIZE_MAX) mismatch = got + m;
      got += n;
      if (n < chunk.size()) break; /* no progress for 10 s */
    }
    peer_done = true;
  });
  gaio_result r[4];
  int early = 0;
  while (!peer_done) {
    int n = gaio_wait(w, r, 4, 20);
    if (n != 0) {
      early++;
      if (n > 0) ADD_FAILURE() << "early: " << Describe(r[0]);
    }
  }
  peer.join();
  EXPECT_EQ(early, 0) << "a result (or an error) while the write was still going";
  EXPECT_EQ(got, kChecked) << "the write stopped making progress";
  EXPECT_EQ(mismatch, SIZE_MAX) << "bytes differ from the buffer at offset " << mismatch;

  ASSERT_EQ(gaio_free(w, fd), 0);
  Collected c = WaitResults(w, queue_another ? 2 : 1, 10000);
  std::map<const void *, gaio_result> by_ctx;
  for (const gaio_result &x : c.results) by_ctx[x.ctx] = x;
  ASSERT_EQ(by_ctx.count(&big), 1u);
  const gaio_result &b = by_ctx[&big];
  EXPECT_EQ(b.op, GAIO_OP_WRITE) << Describe(b);
  EXPECT_EQ(b.error, -ECANCELED) << Describe(b);
  EXPECT_GE(b.size, kChecked) << Describe(b);
  EXPECT_LT(b.size, len) << Describe(b);
  if (queue_another) {
    ASSERT_EQ(by_ctx.count(&small), 1u);
    EXPECT_EQ(by_ctx[&small].error, -ECANCELED) << Describe(by_ctx[&small]);
    EXPECT_EQ(by_ctx[&small].size, 0u) << Describe(by_ctx[&small]);
  }
  ExpectDrained(w);
}

TEST_P(LargeIoTest, WriteOf4GiBMakesProgress) { RunBigWrite(false); }

TEST_P(LargeIoTest, WriteOf4GiBCoalescedWithAnotherMakesProgress) { RunBigWrite(true); }

INSTANTIATE_TEST_SUITE_P(Backends, LargeIoTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

}  // namespace
