/* Raw wire-protocol clients for the RPC suites: frames built byte by byte (rpc/WIRE.md) and a
 * blocking socket that reads them back, so that tests can send what a well-behaved channel
 * never would (pipelined floods, half-closes, id jumps, garbage). Test-only. */
#ifndef GAIO_TESTS_RPC_WIRE_UTIL_H
#define GAIO_TESTS_RPC_WIRE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "rpc/frame.h"
#include "tests/test_util.h"

namespace rpc_test {

/* A frame to send; Bytes() encodes it. */
struct RawFrame {
  uint8_t type = RPC_TYPE_REQUEST;
  uint8_t flags = 0; /* RPC_FLAG_METADATA: body starts with a metadata block (WIRE.md 13) */
  uint8_t status = 0;
  uint32_t id = 1;
  uint32_t method = 0;
  uint32_t timeout_us = 0;
  std::string body;
  uint32_t body_len_override = 0; /* nonzero: announce this body_len instead */
  std::string Bytes() const;
};

/* What RawConn::Next() saw. */
struct Got {
  bool ok = false;  /* a whole frame arrived */
  bool eof = false; /* the server closed the connection cleanly, after the frames before it */
  int err = 0;      /* the read failed with this errno (ECONNRESET: the server reset it) */
  uint8_t type = 0, flags = 0, status = 0;
  uint32_t id = 0;
  std::string body;
};

/* A client socket speaking raw frames (TCP_NODELAY, blocking). */
class RawConn {
 public:
  explicit RawConn(gaio_test::UniqueFd fd) : fd_(std::move(fd)) {}
  explicit RawConn(int port); /* connects to 127.0.0.1:port */
  void Send(const std::string &b);
  void ShutWrite();
  /* The next frame from the server, or eof / err, within ms. */
  Got Next(int ms = 5000);
  /* A frame already received and buffered, without reading the socket. */
  bool Buffered(Got *g);
  /* Read what the socket has now (non-blocking), into the buffer. Returns bytes read, 0 at
   * EOF, or -errno (-EAGAIN: nothing yet). */
  long Pump();
  int fd() const { return fd_.get(); }

 private:
  gaio_test::UniqueFd fd_;
  std::string buf_;
};

uint32_t MethodId(const char *full);

/* test.v1.EchoRequest packed (tests/rpc_test.proto). */
std::string PackedRequest(const char *text, int delay_ms = 0, int code = 0,
                          const std::string &payload = std::string());

/* A REQUEST of test.v1.Echo/<method> with the given id and text. */
RawFrame EchoFrame(const char *method, uint32_t id, const char *text, int delay_ms = 0,
                   int code = 0);

}  // namespace rpc_test

#endif /* GAIO_TESTS_RPC_WIRE_UTIL_H */
