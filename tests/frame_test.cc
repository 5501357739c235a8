// The wire frame codec (rpc/frame.h) against rpc/WIRE.md. Every parse runs on input that ends
// right before a PROT_NONE page, so a read past len crashes the test (picohttpparser's trick).
#include <gtest/gtest.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
#include "rpc/frame.h"
#include "rpc/metadata.h"
}

namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kHeader = RPC_FRAME_HEADER_SIZE;
const uint8_t kAllTypes[] = {RPC_TYPE_REQUEST, RPC_TYPE_RESPONSE, RPC_TYPE_CANCEL,
                             RPC_TYPE_PING,    RPC_TYPE_PONG,     RPC_TYPE_GOAWAY};

// Memory whose last usable byte is followed by an inaccessible page. Place() copies input so
// that it ends exactly at the guard.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t capacity) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_ = (capacity + page_ - 1) / page_ * page_;
    if (size_ == 0) size_ = page_;
    void *m = mmap(nullptr, size_ + page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) abort();
    mem_ = static_cast<uint8_t *>(m);
    if (mprotect(mem_ + size_, page_, PROT_NONE) != 0) abort();
  }
  ~GuardedBuffer() { munmap(mem_, size_ + page_); }
  GuardedBuffer(const GuardedBuffer &) = delete;
  GuardedBuffer &operator=(const GuardedBuffer &) = delete;

  const uint8_t *Place(const uint8_t *p, size_t n) {
    if (n > size_) abort();
    uint8_t *dst = mem_ + size_ - n;
    if (n > 0) memcpy(dst, p, n);
    return dst;
  }
  const uint8_t *Place(const Bytes &b, size_t n) { return Place(b.data(), n); }
  const uint8_t *Place(const Bytes &b) { return Place(b.data(), b.size()); }

 private:
  size_t page_ = 0;
  size_t size_ = 0;
  uint8_t *mem_ = nullptr;
};

// Parses the first n bytes of b, placed against the guard page. *at receives where they were.
int ParseGuarded(GuardedBuffer &g, const Bytes &b, size_t n, size_t max_body, rpc_frame *f,
                 const uint8_t **at = nullptr) {
  const uint8_t *p = g.Place(b, n);
  if (at != nullptr) *at = p;
  return rpc_frame_parse(p, n, max_body, f);
}

rpc_frame Header(uint8_t type, uint32_t request_id = 0) {
  rpc_frame f;
  memset(&f, 0, sizeof f);
  f.type = type;
  f.request_id = request_id;
  return f;
}

// Header + body; body_len is taken from the body.
Bytes Frame(rpc_frame h, const Bytes &body = {}) {
  h.body_len = static_cast<uint32_t>(body.size());
  Bytes out(kHeader);
  rpc_frame_encode(&h, out.data());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A header whose body_len is given and whose body is absent.
Bytes HeaderOnly(rpc_frame h, uint32_t body_len) {
  h.body_len = body_len;
  Bytes out(kHeader);
  rpc_frame_encode(&h, out.data());
  return out;
}

Bytes Str(const std::string &s) { return Bytes(s.begin(), s.end()); }

std::string Hex(const uint8_t *p, size_t n) {
  std::string s;
  char tmp[4];
  for (size_t i = 0; i < n; i++) {
    snprintf(tmp, sizeof tmp, "%02x", p[i]);
    s += (i > 0 ? " " : "");
    s += tmp;
  }
  return s;
}

rpc_frame Sentinel() {
  rpc_frame f;
  memset(&f, 0xAB, sizeof f);
  return f;
}

bool SameBytes(const rpc_frame &a, const rpc_frame &b) { return memcmp(&a, &b, sizeof a) == 0; }

void ExpectFields(const rpc_frame &got, const rpc_frame &want) {
  EXPECT_EQ(got.type, want.type);
  EXPECT_EQ(got.flags, want.flags);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.request_id, want.request_id);
  EXPECT_EQ(got.method_id, want.method_id);
  EXPECT_EQ(got.timeout_us, want.timeout_us);
  EXPECT_EQ(got.body_len, want.body_len);
}

// Every type with every field it may carry, and bodies where it may have one.
std::vector<std::pair<rpc_frame, Bytes>> ValidFrames() {
  std::vector<std::pair<rpc_frame, Bytes>> v;
  rpc_frame req = Header(RPC_TYPE_REQUEST, 0xfedcba98u);
  req.method_id = 0x89abcdefu;
  req.timeout_us = 0xffffffffu;
  v.push_back({req, Str("input message")});
  req.timeout_us = 0;
  req.request_id = 0;
  v.push_back({req, {}});
  for (int s = RPC_STATUS_OK; s <= RPC_STATUS_UNAUTHENTICATED; s++) {
    rpc_frame resp = Header(RPC_TYPE_RESPONSE, 1000u + s);
    resp.status = static_cast<uint8_t>(s);
    v.push_back({resp, Str(s == 0 ? "output" : "error text")});
  }
  v.push_back({Header(RPC_TYPE_RESPONSE, 5), {}});
  v.push_back({Header(RPC_TYPE_CANCEL, 0x01020304u), {}});
  v.push_back({Header(RPC_TYPE_PING, 0xffffffffu), {}});
  v.push_back({Header(RPC_TYPE_PONG, 0xffffffffu), {}});
  v.push_back({Header(RPC_TYPE_GOAWAY, 41), {}});
  v.push_back({Header(RPC_TYPE_GOAWAY, 0), Str("server shutting down")});
  return v;
}

TEST(FrameGuard, ReadPastPlacedInputCrashes) {
  GuardedBuffer g(16);
  Bytes b = {1, 2, 3};
  const uint8_t *p = g.Place(b);
  EXPECT_EQ(p[2], 3);
  EXPECT_DEATH({ (void)*(volatile const uint8_t *)(p + 3); }, "");
}

TEST(FrameEncode, LayoutIsLittleEndianAtDocumentedOffsets) {
  rpc_frame f = Header(RPC_TYPE_RESPONSE, 0x11223344u);
  f.status = 0x0c;
  f.method_id = 0x55667788u;
  f.timeout_us = 0x99aabbccu;
  f.body_len = 0xddeeff00u;
  f.body = reinterpret_cast<const uint8_t *>("ignored");
  uint8_t out[RPC_FRAME_HEADER_SIZE];
  rpc_frame_encode(&f, out);
  EXPECT_EQ(Hex(out, sizeof out),
            "47 52 01 02 00 0c 00 00 44 33 22 11 88 77 66 55 cc bb aa 99 00 ff ee dd");
}

TEST(FrameParse, RoundTripEveryType) {
  GuardedBuffer g(4096);
  for (const auto &hb : ValidFrames()) {
    const rpc_frame &h = hb.first;
    const Bytes &body = hb.second;
    SCOPED_TRACE("type " + std::to_string(h.type) + " status " + std::to_string(h.status));
    Bytes wire = Frame(h, body);
    rpc_frame f = Sentinel();
    const uint8_t *at;
    ASSERT_EQ(ParseGuarded(g, wire, wire.size(), RPC_DEFAULT_MAX_BODY, &f, &at),
              static_cast<int>(wire.size()));
    rpc_frame want = h;
    want.body_len = static_cast<uint32_t>(body.size());
    ExpectFields(f, want);
    EXPECT_EQ(f.body, at + kHeader);  // a view into the input, not a copy
    EXPECT_EQ(Bytes(f.body, f.body + f.body_len), body);
    uint8_t again[RPC_FRAME_HEADER_SIZE];
    rpc_frame_encode(&f, again);
    EXPECT_EQ(Bytes(again, again + kHeader), Bytes(wire.begin(), wire.begin() + kHeader));
  }
}

TEST(FrameParse, EveryHeaderPrefixNeedsMoreAndLeavesFrameUntouched) {
  GuardedBuffer g(4096);
  for (const auto &hb : ValidFrames()) {
    const rpc_frame &h = hb.first;
    const Bytes &body = hb.second;
    Bytes wire = Frame(h, body);
    for (size_t n = 0; n < kHeader; n++) {
      rpc_frame f = Sentinel();
      ASSERT_EQ(ParseGuarded(g, wire, n, RPC_DEFAULT_MAX_BODY, &f), -EAGAIN)
          << "type " << int(h.type) << " prefix " << n;
      EXPECT_TRUE(SameBytes(f, Sentinel()));
    }
  }
}

TEST(FrameParse, NullBufferWithZeroLengthNeedsMore) {
  rpc_frame f = Sentinel();
  EXPECT_EQ(rpc_frame_parse(nullptr, 0, RPC_DEFAULT_MAX_BODY, &f), -EAGAIN);
  EXPECT_TRUE(SameBytes(f, Sentinel()));
}

TEST(FrameParse, CallerMistakesAreEinval) {
  uint8_t b[RPC_FRAME_HEADER_SIZE] = {0};
  rpc_frame f;
  EXPECT_EQ(rpc_frame_parse(nullptr, 1, RPC_DEFAULT_MAX_BODY, &f), -EINVAL);
  EXPECT_EQ(rpc_frame_parse(b, sizeof b, RPC_DEFAULT_MAX_BODY, nullptr), -EINVAL);
}

TEST(FrameParse, EveryTruncatedBodyNeedsMoreWithHeaderFilled) {
  GuardedBuffer g(4096);
  for (const auto &hb : ValidFrames()) {
    const rpc_frame &h = hb.first;
    const Bytes &body = hb.second;
    if (body.empty()) continue;
    Bytes wire = Frame(h, body);
    for (size_t n = kHeader; n < wire.size(); n++) {
      rpc_frame f = Sentinel();
      const uint8_t *at;
      ASSERT_EQ(ParseGuarded(g, wire, n, RPC_DEFAULT_MAX_BODY, &f, &at), -EAGAIN) << n;
      rpc_frame want = h;
      want.body_len = static_cast<uint32_t>(body.size());
      ExpectFields(f, want);
      EXPECT_EQ(f.body, at + kHeader);
    }
  }
}

TEST(FrameParse, HeaderFedOneByteAtATime) {
  rpc_frame h = Header(RPC_TYPE_REQUEST, 77);
  h.method_id = rpc_method_id("demo.Echo/Say", 13);
  h.timeout_us = 1000;
  Bytes wire = Frame(h, Str("abcde"));
  GuardedBuffer g(4096);
  Bytes got;  // what a reader has received so far
  for (uint8_t byte : wire) {
    got.push_back(byte);
    rpc_frame f = Sentinel();
    int rc = ParseGuarded(g, got, got.size(), RPC_DEFAULT_MAX_BODY, &f);
    if (got.size() < kHeader) {
      ASSERT_EQ(rc, -EAGAIN);
      EXPECT_TRUE(SameBytes(f, Sentinel()));
    } else if (got.size() < wire.size()) {
      ASSERT_EQ(rc, -EAGAIN);
      EXPECT_EQ(f.body_len, 5u);
      EXPECT_EQ(f.request_id, 77u);
    } else {
      ASSERT_EQ(rc, static_cast<int>(wire.size()));
      EXPECT_EQ(memcmp(f.body, "abcde", 5), 0);
    }
  }
}

TEST(FrameParse, PipelinedFramesAreConsumedOneByOne) {
  Bytes stream;
  std::vector<Bytes> frames;
  for (const auto &hb : ValidFrames()) {
    const rpc_frame &h = hb.first;
    const Bytes &body = hb.second;
    frames.push_back(Frame(h, body));
    stream.insert(stream.end(), frames.back().begin(), frames.back().end());
  }
  GuardedBuffer g(stream.size());
  const uint8_t *p = g.Place(stream);
  size_t off = 0;
  for (const Bytes &want : frames) {
    rpc_frame f;
    int rc = rpc_frame_parse(p + off, stream.size() - off, RPC_DEFAULT_MAX_BODY, &f);
    ASSERT_EQ(rc, static_cast<int>(want.size()));
    EXPECT_EQ(f.body, p + off + kHeader);
    off += static_cast<size_t>(rc);
  }
  rpc_frame f;
  EXPECT_EQ(rpc_frame_parse(p + off, 0, RPC_DEFAULT_MAX_BODY, &f), -EAGAIN);
}

struct Malformed {
  std::string name;
  Bytes wire;
};

// A valid header of this type (empty body), with byte off set to v.
Bytes Poked(uint8_t type, size_t off, uint8_t v) {
  Bytes b = HeaderOnly(Header(type, 9), 0);
  b[off] = v;
  return b;
}

// Every rule of WIRE.md's "Header" and "Frame types" tables, broken once.
std::vector<Malformed> MalformedFrames() {
  std::vector<Malformed> v;
  for (uint8_t t : kAllTypes) {
    std::string ty = "type" + std::to_string(t) + ": ";
    v.push_back({ty + "magic byte 0", Poked(t, 0, 0x48)});
    v.push_back({ty + "magic byte 1", Poked(t, 1, 0x53)});
    Bytes swapped = Poked(t, 0, 0x52);
    swapped[1] = 0x47;  // 0x4752: the magic written big-endian
    v.push_back({ty + "magic big-endian", swapped});
    for (uint8_t ver : {0, 2, 255}) v.push_back({ty + "version " + std::to_string(ver), Poked(t, 2, ver)});
    // Bit 0 is METADATA (WIRE.md section 13), valid on a REQUEST or a RESPONSE only.
    for (int bit = (t == RPC_TYPE_REQUEST || t == RPC_TYPE_RESPONSE) ? 1 : 0; bit < 8; bit++)
      v.push_back({ty + "flag bit " + std::to_string(bit), Poked(t, 4, uint8_t(1u << bit))});
    v.push_back({ty + "reserved byte 6", Poked(t, 6, 1)});
    v.push_back({ty + "reserved byte 7", Poked(t, 7, 0x80)});
    Bytes huge = HeaderOnly(Header(t, 9), uint32_t(RPC_MAX_BODY_HARD) + 1);
    v.push_back({ty + "body_len hard cap + 1", huge});
    v.push_back({ty + "body_len 0xffffffff", HeaderOnly(Header(t, 9), 0xffffffffu)});
    if (t != RPC_TYPE_RESPONSE) {
      for (uint8_t s : {1, 16, 255}) v.push_back({ty + "status " + std::to_string(s), Poked(t, 5, s)});
    }
    if (t != RPC_TYPE_REQUEST) {
      for (size_t off : {12, 15}) v.push_back({ty + "method_id byte " + std::to_string(off), Poked(t, off, 1)});
      for (size_t off : {16, 19}) v.push_back({ty + "timeout_us byte " + std::to_string(off), Poked(t, off, 1)});
    }
    if (t == RPC_TYPE_CANCEL || t == RPC_TYPE_PING || t == RPC_TYPE_PONG) {
      v.push_back({ty + "body_len 1", Frame(Header(t, 9), {0})});
      v.push_back({ty + "body_len 0x01000000", HeaderOnly(Header(t, 9), 0x01000000u)});
    }
  }
  for (uint8_t t : {0, 7, 8, 0x80, 255}) v.push_back({"type " + std::to_string(t), Poked(1, 3, t)});
  for (int s = RPC_STATUS_UNAUTHENTICATED + 1; s <= 255; s++)
    v.push_back({"RESPONSE status " + std::to_string(s), Poked(RPC_TYPE_RESPONSE, 5, uint8_t(s))});
  return v;
}

TEST(FrameParse, EveryMalformedHeaderIsEproto) {
  GuardedBuffer g(4096);
  for (const Malformed &m : MalformedFrames()) {
    for (size_t max_body : {size_t(0), size_t(RPC_DEFAULT_MAX_BODY), size_t(SIZE_MAX)}) {
      rpc_frame f = Sentinel();
      EXPECT_EQ(ParseGuarded(g, m.wire, m.wire.size(), max_body, &f), -EPROTO)
          << m.name << ", max_body " << max_body;
      EXPECT_TRUE(SameBytes(f, Sentinel())) << m.name;
    }
    // The header alone decides: the same verdict with trailing bytes after it.
    Bytes more = m.wire;
    more.resize(more.size() + 32, 0);
    rpc_frame f;
    EXPECT_EQ(ParseGuarded(g, more, more.size(), RPC_DEFAULT_MAX_BODY, &f), -EPROTO) << m.name;
  }
}

TEST(FrameParse, BodyAtHardCapIsValid) {
  GuardedBuffer g(4096);
  for (uint8_t t : {RPC_TYPE_REQUEST, RPC_TYPE_RESPONSE, RPC_TYPE_GOAWAY}) {
    Bytes b = HeaderOnly(Header(t, 3), RPC_MAX_BODY_HARD);
    rpc_frame f;
    EXPECT_EQ(ParseGuarded(g, b, b.size(), RPC_MAX_BODY_HARD, &f), -EAGAIN);
    EXPECT_EQ(f.body_len, uint32_t(RPC_MAX_BODY_HARD));
    EXPECT_EQ(ParseGuarded(g, b, b.size(), SIZE_MAX, &f), -EAGAIN);
    EXPECT_EQ(ParseGuarded(g, b, b.size(), RPC_DEFAULT_MAX_BODY, &f), -EMSGSIZE);
  }
}

TEST(FrameParse, BodyOverMaxIsEmsgsizeWithFrameFilled) {
  GuardedBuffer g(4096);
  for (uint8_t t : {RPC_TYPE_REQUEST, RPC_TYPE_RESPONSE, RPC_TYPE_GOAWAY}) {
    rpc_frame h = Header(t, 0xcafe);
    if (t == RPC_TYPE_REQUEST) {
      h.method_id = 0x12345678;
      h.timeout_us = 99;
    }
    if (t == RPC_TYPE_RESPONSE) h.status = RPC_STATUS_INTERNAL;
    const size_t max_body = 100;
    // Header alone, header plus part of the body, and the whole frame: -EMSGSIZE every time.
    Bytes wire = Frame(h, Bytes(max_body + 1, 'x'));
    for (size_t n : {kHeader, kHeader + 1, wire.size()}) {
      rpc_frame f = Sentinel();
      const uint8_t *at;
      ASSERT_EQ(ParseGuarded(g, wire, n, max_body, &f, &at), -EMSGSIZE) << int(t) << " " << n;
      rpc_frame want = h;
      want.body_len = max_body + 1;
      ExpectFields(f, want);
      EXPECT_EQ(f.body, at + kHeader);
    }
    // Exactly max_body is accepted.
    Bytes ok = Frame(h, Bytes(max_body, 'x'));
    rpc_frame f;
    EXPECT_EQ(ParseGuarded(g, ok, ok.size(), max_body, &f), int(ok.size()));
  }
}

TEST(FrameParse, MaxBodyZeroAcceptsOnlyEmptyBodies) {
  GuardedBuffer g(4096);
  rpc_frame f;
  for (uint8_t t : kAllTypes) {
    Bytes empty = Frame(Header(t, 1));
    EXPECT_EQ(ParseGuarded(g, empty, empty.size(), 0, &f), int(kHeader)) << int(t);
  }
  Bytes one = Frame(Header(RPC_TYPE_REQUEST, 1), {0x08});
  EXPECT_EQ(ParseGuarded(g, one, one.size(), 0, &f), -EMSGSIZE);
}

TEST(FrameParse, ErrorPrecedenceEprotoThenEmsgsizeThenEagain) {
  GuardedBuffer g(4096);
  rpc_frame f;
  // PING with a body over max_body: malformed, not too big.
  Bytes ping = HeaderOnly(Header(RPC_TYPE_PING, 1), 1000);
  EXPECT_EQ(ParseGuarded(g, ping, ping.size(), 10, &f), -EPROTO);
  // A REQUEST over max_body with its body missing: too big, not incomplete.
  Bytes req = HeaderOnly(Header(RPC_TYPE_REQUEST, 1), 1000);
  EXPECT_EQ(ParseGuarded(g, req, req.size(), 10, &f), -EMSGSIZE);
}

TEST(MethodId, Fnv1aKnownVectors) {
  EXPECT_EQ(rpc_method_id(nullptr, 0), 2166136261u);
  EXPECT_EQ(rpc_method_id("", 0), 0x811c9dc5u);
  EXPECT_EQ(rpc_method_id("a", 1), 0xe40c292cu);
  EXPECT_EQ(rpc_method_id("foobar", 6), 0xbf9cf968u);
  // Only len bytes count, and they are hashed as unsigned bytes (UTF-8 above 0x7f).
  EXPECT_EQ(rpc_method_id("ab", 1), 0xe40c292cu);
  EXPECT_EQ(rpc_method_id("\xc3\xa9", 2), rpc_method_id("\xc3\xa9x", 2));
  EXPECT_NE(rpc_method_id("\xc3\xa9", 2), rpc_method_id("\x43\x29", 2));
}

TEST(MethodId, WireDocWorkedExample) {
  // WIRE.md, "method_id": FNV-1a of "demo.Echo/Say".
  EXPECT_EQ(rpc_method_id("demo.Echo/Say", 13), 0x528a023du);
  EXPECT_EQ(rpc_method_id("demo.Echo/Say", 13), 1384776253u);
  EXPECT_EQ(rpc_method_id("demo.Echo/S", 11), 0x35df2cb3u);  // the table's row after 'S'
}

TEST(StatusName, AllCodesAndOutOfRange) {
  const char *names[] = {"OK",
                         "CANCELLED",
                         "UNKNOWN",
                         "INVALID_ARGUMENT",
                         "DEADLINE_EXCEEDED",
                         "NOT_FOUND",
                         "ALREADY_EXISTS",
                         "PERMISSION_DENIED",
                         "RESOURCE_EXHAUSTED",
                         "FAILED_PRECONDITION",
                         "ABORTED",
                         "OUT_OF_RANGE",
                         "UNIMPLEMENTED",
                         "INTERNAL",
                         "UNAVAILABLE",
                         "DATA_LOSS",
                         "UNAUTHENTICATED"};
  for (int s = 0; s <= 16; s++) EXPECT_STREQ(rpc_status_name(s), names[s]) << s;
  EXPECT_EQ(RPC_STATUS_RESOURCE_EXHAUSTED, 8);
  EXPECT_EQ(RPC_STATUS_UNIMPLEMENTED, 12);
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, 14);
  for (int s : {-1, 17, 255, 1 << 30}) EXPECT_STREQ(rpc_status_name(s), "UNKNOWN_STATUS") << s;
}

TEST(FrameConstants, MatchWireDoc) {
  EXPECT_EQ(RPC_FRAME_HEADER_SIZE, 24);
  EXPECT_EQ(RPC_MAGIC, 0x5247);
  EXPECT_EQ(RPC_VERSION, 1);
  EXPECT_EQ(RPC_DEFAULT_MAX_BODY, 4 * 1024 * 1024);
  EXPECT_EQ(RPC_MAX_BODY_HARD, 64 * 1024 * 1024);
  EXPECT_EQ(RPC_MAX_ERROR_MESSAGE, 1024);
  EXPECT_EQ(RPC_TYPE_REQUEST, 1);
  EXPECT_EQ(RPC_TYPE_GOAWAY, 6);
}

// WIRE.md, "Worked example": these exact bytes are printed there. If this test changes, the
// document changes with it.
const char kExampleRequestHex[] =
    "47 52 01 01 00 00 00 00 07 00 00 00 3d 02 8a 52 90 d0 03 00 07 00 00 00 "
    "0a 05 68 65 6c 6c 6f";
const char kExampleResponseHex[] =
    "47 52 01 02 00 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 07 00 00 00 "
    "0a 05 68 65 6c 6c 6f";
const char kExampleErrorHex[] =
    "47 52 01 02 00 0c 00 00 08 00 00 00 00 00 00 00 00 00 00 00 0e 00 00 00 "
    "75 6e 6b 6e 6f 77 6e 20 6d 65 74 68 6f 64";

// demo.EchoRequest{text: "hello"} packed: field 1, wire type 2 (0x0a), length 5, "hello".
const Bytes kHelloMessage = {0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'};

TEST(WireDoc, WorkedExampleRequest) {
  rpc_frame h = Header(RPC_TYPE_REQUEST, 7);
  h.method_id = rpc_method_id("demo.Echo/Say", strlen("demo.Echo/Say"));
  h.timeout_us = 250000;  // 250 ms
  Bytes wire = Frame(h, kHelloMessage);
  EXPECT_EQ(Hex(wire.data(), wire.size()), kExampleRequestHex);

  GuardedBuffer g(4096);
  rpc_frame f;
  ASSERT_EQ(ParseGuarded(g, wire, wire.size(), RPC_DEFAULT_MAX_BODY, &f), 31);
  EXPECT_EQ(f.type, RPC_TYPE_REQUEST);
  EXPECT_EQ(f.request_id, 7u);
  EXPECT_EQ(f.method_id, 0x528a023du);
  EXPECT_EQ(f.timeout_us, 250000u);
  EXPECT_EQ(Bytes(f.body, f.body + f.body_len), kHelloMessage);
}

TEST(WireDoc, WorkedExampleResponses) {
  rpc_frame ok = Header(RPC_TYPE_RESPONSE, 7);
  Bytes wire = Frame(ok, kHelloMessage);
  EXPECT_EQ(Hex(wire.data(), wire.size()), kExampleResponseHex);

  rpc_frame err = Header(RPC_TYPE_RESPONSE, 8);
  err.status = RPC_STATUS_UNIMPLEMENTED;
  Bytes ewire = Frame(err, Str("unknown method"));
  EXPECT_EQ(Hex(ewire.data(), ewire.size()), kExampleErrorHex);

  GuardedBuffer g(4096);
  rpc_frame f;
  ASSERT_EQ(ParseGuarded(g, ewire, ewire.size(), RPC_DEFAULT_MAX_BODY, &f), 38);
  EXPECT_STREQ(rpc_status_name(f.status), "UNIMPLEMENTED");
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(f.body), f.body_len), "unknown method");
}

// The text of rpc/WIRE.md from the test's runfiles.
std::string WireDocText() {
  const char *srcdir = getenv("TEST_SRCDIR");
  const char *ws = getenv("TEST_WORKSPACE");
  std::string path = std::string(srcdir ? srcdir : ".") + "/" + (ws ? ws : "gaio_c") + "/rpc/WIRE.md";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(in.good() || in.eof()) << "cannot read " << path;
  return ss.str();
}

TEST(WireDoc, DocumentShowsTheseExactBytes) {
  std::string doc = WireDocText();
  ASSERT_FALSE(doc.empty());
  EXPECT_NE(doc.find("\n" + std::string(kExampleRequestHex) + "\n"), std::string::npos);
  EXPECT_NE(doc.find("\n" + std::string(kExampleResponseHex) + "\n"), std::string::npos);
  EXPECT_NE(doc.find("\n" + std::string(kExampleErrorHex) + "\n"), std::string::npos);

  // The short frames of the example's last paragraph.
  Bytes cancel = Frame(Header(RPC_TYPE_CANCEL, 7));
  Bytes ping = Frame(Header(RPC_TYPE_PING, 1));
  Bytes pong = Frame(Header(RPC_TYPE_PONG, 1));
  Bytes goaway = Frame(Header(RPC_TYPE_GOAWAY, 7));
  for (const Bytes *b : {&cancel, &ping, &goaway}) {
    std::string hex = "`" + Hex(b->data(), b->size()) + "`";
    EXPECT_NE(doc.find(hex), std::string::npos) << hex;
  }
  EXPECT_EQ(pong, [&] { Bytes p = ping; p[3] = 0x05; return p; }());

  // The FNV-1a table of section 5, row by row, and the result in both bases.
  const std::string name = "demo.Echo/Say";
  for (size_t i = 1; i <= name.size(); i++) {
    char row[64], bold[64];
    uint32_t h = rpc_method_id(name.data(), i);
    snprintf(row, sizeof row, "`%c` 0x%02x | `0x%08x` |", name[i - 1], name[i - 1], h);
    snprintf(bold, sizeof bold, "`%c` 0x%02x | **`0x%08x`** |", name[i - 1], name[i - 1], h);
    EXPECT_TRUE(doc.find(row) != std::string::npos || doc.find(bold) != std::string::npos) << row;
  }
  EXPECT_NE(doc.find("**0x528a023d** = 1384776253"), std::string::npos);
  EXPECT_NE(doc.find("`3d 02 8a 52`"), std::string::npos);
  EXPECT_NE(doc.find("2166136261 (`0x811c9dc5`)"), std::string::npos);
  EXPECT_NE(doc.find("3826002220 (`0xe40c292c`)"), std::string::npos);
  EXPECT_NE(doc.find("3214735720 (`0xbf9cf968`)"), std::string::npos);
}


// ---- Metadata (WIRE.md section 13) ---------------------------------------------------------

// An entry viewing its key and value: string literals (static), or strings that outlive it.
rpc_md Md(const char *k, const char *v) { return rpc_md{k, strlen(k), v, strlen(v)}; }
rpc_md Md(const char *k, const std::string &v) { return rpc_md{k, strlen(k), v.data(), v.size()}; }
rpc_md Md(const std::string &k, const std::string &v) {
  return rpc_md{k.data(), k.size(), v.data(), v.size()};
}
rpc_md Md(const std::string &k, const char *v) { return rpc_md{k.data(), k.size(), v, strlen(v)}; }

Bytes Encode(const std::vector<rpc_md> &e) {
  size_t n = rpc_metadata_size(e.data(), e.size());
  EXPECT_GT(n, 0u);
  Bytes out(n);
  EXPECT_EQ(rpc_metadata_encode(e.data(), e.size(), out.data(), out.size()), long(n));
  return out;
}

// Parses b placed against the guard page with the default limits.
long ParseMd(GuardedBuffer &g, const Bytes &b, rpc_metadata *md, size_t max_bytes = RPC_DEFAULT_MAX_METADATA_BYTES,
             unsigned max_entries = RPC_DEFAULT_MAX_METADATA_ENTRIES) {
  return rpc_metadata_parse(g.Place(b), b.size(), max_bytes, max_entries, md);
}

TEST(Metadata, RoundTripsZeroOneManyAndTheMaximumOfEntries) {
  GuardedBuffer g(1 << 20);
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(RPC_DEFAULT_MAX_METADATA_ENTRIES)}) {
    std::vector<std::string> keys, vals;
    for (size_t i = 0; i < n; i++) {
      keys.push_back("k-" + std::to_string(i) + ".x_y");
      vals.push_back(std::string(i % 5, char('a' + i % 26)));
    }
    std::vector<rpc_md> e;
    for (size_t i = 0; i < n; i++) e.push_back(Md(keys[i], vals[i]));
    Bytes b = Encode(e);
    b.insert(b.end(), kHelloMessage.begin(), kHelloMessage.end());  // the message follows
    rpc_metadata md;
    long used = ParseMd(g, b, &md);
    ASSERT_EQ(used, long(b.size() - kHelloMessage.size())) << n << " entries";
    EXPECT_EQ(md.count, n);
    size_t pos = 0, i = 0;
    rpc_md got;
    while (rpc_metadata_next(&md, &pos, &got)) {
      ASSERT_LT(i, n);
      EXPECT_EQ(std::string(got.key, got.key_len), keys[i]);
      EXPECT_EQ(std::string(static_cast<const char *>(got.value), got.value_len), vals[i]);
      i++;
    }
    EXPECT_EQ(i, n);
  }
}

TEST(Metadata, ValuesAreBinarySafeAndKeysAndValuesReachTheirLimits) {
  std::string all;
  for (int c = 0; c < 256; c++) all += char(c);
  std::string big(RPC_METADATA_MAX_VALUE, '\0');
  std::string key255(RPC_METADATA_MAX_KEY, 'k');
  std::vector<rpc_md> e = {Md("bin", all), Md(key255, ""), Md("big", big)};
  Bytes b = Encode(e);
  GuardedBuffer g(1 << 20);
  rpc_metadata md;
  ASSERT_EQ(ParseMd(g, b, &md, SIZE_MAX, 64), long(b.size()));
  rpc_md got;
  ASSERT_TRUE(rpc_metadata_get(&md, "bin", 3, &got));
  EXPECT_EQ(std::string(static_cast<const char *>(got.value), got.value_len), all);
  ASSERT_TRUE(rpc_metadata_get(&md, key255.data(), key255.size(), &got));
  EXPECT_EQ(got.value_len, 0u);
  ASSERT_TRUE(rpc_metadata_get(&md, "big", 3, &got));
  EXPECT_EQ(got.value_len, size_t(RPC_METADATA_MAX_VALUE));
  EXPECT_FALSE(rpc_metadata_get(&md, "absent", 6, &got));
}

TEST(Metadata, InvalidEntriesAreRefusedByTheEncoder) {
  std::string big(RPC_METADATA_MAX_VALUE + 1, 'v');
  for (const std::string &k : {std::string(""), std::string("Upper"), std::string("sp ace"),
                               std::string("col:on"), std::string(256, 'k'), std::string("\xc3\xa9")}) {
    rpc_md e = Md(k, "v");
    EXPECT_EQ(rpc_metadata_size(&e, 1), 0u) << k;
    uint8_t out[512];
    EXPECT_EQ(rpc_metadata_encode(&e, 1, out, sizeof out), -EINVAL) << k;
  }
  rpc_md e = Md("ok", big);
  EXPECT_EQ(rpc_metadata_size(&e, 1), 0u);
  rpc_md small = Md("ok", "value");
  uint8_t out[8];
  EXPECT_EQ(rpc_metadata_encode(&small, 1, out, sizeof out), -ENOSPC);
}

TEST(Metadata, MalformedBlocksAreEprotoAndNeverReadPastTheBody) {
  Bytes good = Encode({Md("a", "1"), Md("bb", "22")});
  GuardedBuffer g(4096);
  rpc_metadata md;
  for (size_t n = 0; n < good.size(); n++) {  // every truncation of the block
    Bytes cut(good.begin(), good.begin() + n);
    EXPECT_EQ(ParseMd(g, cut, &md), -EPROTO) << n << " bytes";
  }
  Bytes longer = good;
  longer[0] = uint8_t(longer[0] + 1);  // block_len past the body
  EXPECT_EQ(ParseMd(g, longer, &md), -EPROTO);
  Bytes entry_past = good;
  entry_past[4 + 1] = 0x40;  // first value_len runs past block_len
  EXPECT_EQ(ParseMd(g, entry_past, &md), -EPROTO);
  Bytes bad_key = good;
  bad_key[4 + 3] = 'A';  // uppercase key
  EXPECT_EQ(ParseMd(g, bad_key, &md), -EPROTO);
  Bytes zero_key = good;
  zero_key[4] = 0;  // key_len 0
  EXPECT_EQ(ParseMd(g, zero_key, &md), -EPROTO);
  EXPECT_EQ(rpc_metadata_parse(nullptr, 0, 8192, 64, &md), -EPROTO);
  EXPECT_EQ(rpc_metadata_parse(good.data(), good.size(), 8192, 64, nullptr), -EINVAL);
}

TEST(Metadata, OverTheLimitsIsEmsgsize) {
  Bytes b = Encode({Md("a", std::string(100, 'x')), Md("b", "y"), Md("c", "z")});
  GuardedBuffer g(4096);
  rpc_metadata md;
  size_t entries = b.size() - RPC_METADATA_PREFIX;
  EXPECT_EQ(ParseMd(g, b, &md, entries, 3), long(b.size()));  // exactly at both limits
  EXPECT_EQ(ParseMd(g, b, &md, entries - 1, 3), -EMSGSIZE);
  EXPECT_EQ(ParseMd(g, b, &md, entries, 2), -EMSGSIZE);
}

TEST(Metadata, FlagIsValidOnRequestAndResponseOnly) {
  GuardedBuffer g(4096);
  for (uint8_t t : kAllTypes) {
    rpc_frame h = Header(t, 3);
    h.flags = RPC_FLAG_METADATA;
    Bytes wire = HeaderOnly(h, 0);
    rpc_frame f;
    int rc = ParseGuarded(g, wire, wire.size(), RPC_DEFAULT_MAX_BODY, &f);
    if (t == RPC_TYPE_REQUEST || t == RPC_TYPE_RESPONSE) {
      EXPECT_EQ(rc, int(kHeader)) << int(t);
      EXPECT_EQ(f.flags, RPC_FLAG_METADATA);
    } else {
      EXPECT_EQ(rc, -EPROTO) << int(t);
    }
  }
}

// WIRE.md section 13's worked example, built with the encoder.
const char kMetadataRequestHex[] =
    "47 52 01 01 01 00 00 00 09 00 00 00 3d 02 8a 52 00 00 00 00 34 00 00 00 29 00 00 00 0d 0c "
    "00 61 75 74 68 6f 72 69 7a 61 74 69 6f 6e 42 65 61 72 65 72 20 74 30 6b 33 6e 06 04 00 74 "
    "65 6e 61 6e 74 61 63 6d 65 0a 05 68 65 6c 6c 6f";
const char kMetadataErrorHex[] =
    "47 52 01 02 01 0e 00 00 09 00 00 00 00 00 00 00 00 00 00 00 1c 00 00 00 0f 00 00 00 0b 01 "
    "00 72 65 74 72 79 2d 61 66 74 65 72 33 74 72 79 20 6c 61 74 65 72";

TEST(WireDoc, MetadataExampleMatchesTheEncoderAndTheDocument) {
  rpc_frame h = Header(RPC_TYPE_REQUEST, 9);
  h.method_id = rpc_method_id("demo.Echo/Say", strlen("demo.Echo/Say"));
  h.flags = RPC_FLAG_METADATA;
  Bytes body = Encode({Md("authorization", "Bearer t0k3n"), Md("tenant", "acme")});
  body.insert(body.end(), kHelloMessage.begin(), kHelloMessage.end());
  Bytes wire = Frame(h, body);
  EXPECT_EQ(Hex(wire.data(), wire.size()), kMetadataRequestHex);

  rpc_frame e = Header(RPC_TYPE_RESPONSE, 9);
  e.status = RPC_STATUS_UNAVAILABLE;
  e.flags = RPC_FLAG_METADATA;
  Bytes ebody = Encode({Md("retry-after", "3")});
  Bytes text = Str("try later");
  ebody.insert(ebody.end(), text.begin(), text.end());
  Bytes ewire = Frame(e, ebody);
  EXPECT_EQ(Hex(ewire.data(), ewire.size()), kMetadataErrorHex);

  // Parsed back: the frame, then the block, then the message after it.
  GuardedBuffer g(4096);
  rpc_frame f;
  ASSERT_EQ(ParseGuarded(g, wire, wire.size(), RPC_DEFAULT_MAX_BODY, &f), 76);
  rpc_metadata md;
  long used = rpc_metadata_parse(f.body, f.body_len, 8192, 64, &md);
  ASSERT_EQ(used, 45);
  EXPECT_EQ(md.count, 2u);
  EXPECT_EQ(Bytes(f.body + used, f.body + f.body_len), kHelloMessage);

  std::string doc = WireDocText();
  EXPECT_NE(doc.find("\n" + std::string(kMetadataRequestHex) + "\n"), std::string::npos);
  EXPECT_NE(doc.find("\n" + std::string(kMetadataErrorHex) + "\n"), std::string::npos);
}

// A frame without metadata is the version 1 frame of sections 2-12, byte for byte.
TEST(WireDoc, FrameWithoutMetadataIsUnchanged) {
  rpc_frame h = Header(RPC_TYPE_REQUEST, 7);
  h.method_id = rpc_method_id("demo.Echo/Say", strlen("demo.Echo/Say"));
  h.timeout_us = 250000;
  h.flags = 0;
  Bytes wire = Frame(h, kHelloMessage);
  EXPECT_EQ(Hex(wire.data(), wire.size()), kExampleRequestHex);
  EXPECT_EQ(wire[4], 0);
}

}  // namespace
