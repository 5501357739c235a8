// Raw wire-protocol clients for the RPC suites (see rpc_wire_util.h).
#include "tests/rpc_wire_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/rpc_test.pb-c.h"

namespace rpc_test {

std::string RawFrame::Bytes() const {
  rpc_frame f = {};
  f.type = type;
  f.flags = flags;
  f.status = status;
  f.request_id = id;
  f.method_id = method;
  f.timeout_us = timeout_us;
  f.body_len = body_len_override ? body_len_override : uint32_t(body.size());
  uint8_t h[RPC_FRAME_HEADER_SIZE];
  rpc_frame_encode(&f, h);
  return std::string(reinterpret_cast<char *>(h), sizeof h) + body;
}

RawConn::RawConn(int port) {
  fd_ = gaio_test::UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(0, connect(fd_.get(), reinterpret_cast<sockaddr *>(&a), sizeof a));
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void RawConn::Send(const std::string &b) {
  ASSERT_TRUE(gaio_test::WriteAll(fd_.get(), b.data(), b.size()));
}

void RawConn::ShutWrite() { ASSERT_EQ(0, shutdown(fd_.get(), SHUT_WR)); }

bool RawConn::Buffered(Got *g) {
  rpc_frame f;
  int n = rpc_frame_parse(reinterpret_cast<const uint8_t *>(buf_.data()), buf_.size(),
                          RPC_MAX_BODY_HARD, &f);
  EXPECT_TRUE(n > 0 || n == -EAGAIN) << "the server sent a malformed frame";
  if (n <= 0) return false;
  *g = Got();
  g->ok = true;
  g->type = f.type;
  g->flags = f.flags;
  g->status = f.status;
  g->id = f.request_id;
  g->body.assign(reinterpret_cast<const char *>(f.body), f.body_len);
  buf_.erase(0, size_t(n));
  return true;
}

long RawConn::Pump() {
  char tmp[65536];
  ssize_t r = recv(fd_.get(), tmp, sizeof tmp, MSG_DONTWAIT);
  if (r < 0) return -errno;
  buf_.append(tmp, size_t(r));
  return long(r);
}

Got RawConn::Next(int ms) {
  Got g;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    if (Buffered(&g)) return g;
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                       until - std::chrono::steady_clock::now()).count());
    if (left <= 0 || !gaio_test::WaitReadable(fd_.get(), left)) return g;
    long r = Pump();
    if (r == -EAGAIN || r == -EINTR) continue;
    if (r == 0) g.eof = buf_.empty();
    if (r < 0) g.err = int(-r);
    if (r <= 0) return g;
  }
}

uint32_t MethodId(const char *full) { return rpc_method_id(full, strlen(full)); }

std::string PackedRequest(const char *text, int delay_ms, int code, const std::string &payload) {
  Test__V1__EchoRequest req = TEST__V1__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>(text);
  req.delay_ms = delay_ms;
  req.code = code;
  req.payload.data = reinterpret_cast<uint8_t *>(const_cast<char *>(payload.data()));
  req.payload.len = payload.size();
  std::string out(protobuf_c_message_get_packed_size(&req.base), '\0');
  protobuf_c_message_pack(&req.base, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

RawFrame EchoFrame(const char *method, uint32_t id, const char *text, int delay_ms, int code) {
  RawFrame f;
  f.id = id;
  f.method = MethodId((std::string("test.v1.Echo/") + method).c_str());
  f.body = PackedRequest(text, delay_ms, code);
  return f;
}

}  // namespace rpc_test
