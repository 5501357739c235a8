// The reflection service (rpc_server_add_proto_file, rpc_server_enable_reflection) and the
// raw-bytes call API (rpc_channel_call_bytes), against the test server of cli_test_server.h.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/reflection.pb-c.h"
#include "rpc/rpc.h"
#include "tests/cli_test.pb-c.h"
#include "tests/cli_test_server.h"

namespace {

using gaio_test::CliTestServer;
using gaio_test::CliTestServerOptions;
using gaio_test::ProtoFiles;

class Reflection : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(0, server_.Start(CliTestServerOptions()));
    rpc_channel_options o = {};
    o.default_timeout_ms = 10000;
    o.max_body = 4096;
    ASSERT_EQ(0, rpc_channel_create(&ch_, server_.address().c_str(), &o));
  }
  void TearDown() override { EXPECT_EQ(0, rpc_channel_destroy(ch_)); }

  // FileContainingSymbol for a symbol (or a filename when by_name): the status, and the files.
  int Files(const char *what, bool by_name, std::vector<std::string> *files, std::string *msg) {
    Gaio__Reflection__V1__FileRequest req = GAIO__REFLECTION__V1__FILE_REQUEST__INIT;
    if (what) {
      req.what_case = by_name ? GAIO__REFLECTION__V1__FILE_REQUEST__WHAT_FILENAME
                              : GAIO__REFLECTION__V1__FILE_REQUEST__WHAT_SYMBOL;
      req.symbol = const_cast<char *>(what);  // the same union member as filename
    }
    rpc_method m;
    rpc_method_find(&m, &gaio__reflection__v1__reflection__descriptor, "FileContainingSymbol");
    ProtobufCMessage *reply = nullptr;
    char buf[256];
    int st = rpc_channel_call(ch_, &m, &req.base, 0, &reply, buf, sizeof buf);
    *msg = buf;
    files->clear();
    if (reply) {
      auto *r = reinterpret_cast<Gaio__Reflection__V1__FileResponse *>(reply);
      for (size_t i = 0; i < r->n_file_descriptor_proto; i++)
        files->emplace_back(reinterpret_cast<const char *>(r->file_descriptor_proto[i].data),
                            r->file_descriptor_proto[i].len);
      protobuf_c_message_free_unpacked(reply, nullptr);
    }
    return st;
  }

  CliTestServer server_;
  rpc_channel *ch_ = nullptr;
};

TEST_F(Reflection, ListServicesNamesEveryHostedServiceSorted) {
  Gaio__Reflection__V1__ListServicesRequest req = GAIO__REFLECTION__V1__LIST_SERVICES_REQUEST__INIT;
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &gaio__reflection__v1__reflection__descriptor, "ListServices"));
  ProtobufCMessage *reply = nullptr;
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call(ch_, &m, &req.base, 0, &reply, nullptr, 0));
  auto *r = reinterpret_cast<Gaio__Reflection__V1__ListServicesResponse *>(reply);
  std::vector<std::string> names(r->services, r->services + r->n_services);
  EXPECT_EQ((std::vector<std::string>{"gaio.admin.v1.Admin", "gaio.health.v1.Health",
                                      "gaio.reflection.v1.Reflection", "gaio.test.cli.Echo"}),
            names);
  protobuf_c_message_free_unpacked(reply, nullptr);
}

TEST_F(Reflection, FileContainingSymbolAnswersTheFileAfterItsImports) {
  const ProtoFiles &pf = server_.files();
  std::string health = pf.Bytes("rpc/health.proto"), cli = pf.Bytes("tests/cli_test.proto");
  ASSERT_FALSE(health.empty());
  ASSERT_FALSE(cli.empty());
  std::vector<std::string> files;
  std::string msg;
  for (const char *sym : {"gaio.test.cli.Echo", "gaio.test.cli.Echo.Say", "gaio.test.cli.Echo.Fail",
                          "gaio.test.cli.EchoRequest", "gaio.test.cli.EchoRequest.Inner",
                          "gaio.test.cli.EchoRequest.Kind", "gaio.test.cli.EchoReply"}) {
    EXPECT_EQ(RPC_STATUS_OK, Files(sym, false, &files, &msg)) << sym << ": " << msg;
    EXPECT_EQ((std::vector<std::string>{health, cli}), files) << sym;
  }
  for (const char *sym : {"gaio.health.v1.Health", "gaio.health.v1.Health.Check",
                          "gaio.health.v1.HealthCheckResponse.ServingStatus"}) {
    EXPECT_EQ(RPC_STATUS_OK, Files(sym, false, &files, &msg)) << sym;
    EXPECT_EQ((std::vector<std::string>{health}), files) << sym;
  }
  EXPECT_EQ(RPC_STATUS_OK, Files("tests/cli_test.proto", true, &files, &msg));
  EXPECT_EQ((std::vector<std::string>{health, cli}), files);
  EXPECT_EQ(RPC_STATUS_OK, Files("rpc/health.proto", true, &files, &msg));
  EXPECT_EQ((std::vector<std::string>{health}), files);
}

TEST_F(Reflection, UnknownSymbolsAndFilesAreNotFound) {
  std::vector<std::string> files;
  std::string msg;
  for (const char *sym : {"gaio.test.cli", "gaio.test.cli.", "gaio.test.cli.Echo.Missing",
                          "gaio.test.cli.EchoRequest.text", "gaio.test.cli.Echo/Say", "Echo",
                          ".gaio.test.cli.Echo", "gaio.test.cli.EchoX", ""}) {
    EXPECT_EQ(RPC_STATUS_NOT_FOUND, Files(sym, false, &files, &msg)) << sym;
    EXPECT_EQ(std::string("unknown symbol: ") + sym, msg);
    EXPECT_TRUE(files.empty());
  }
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, Files("tests/other.proto", true, &files, &msg));
  EXPECT_EQ("unknown file: tests/other.proto", msg);
  EXPECT_EQ(RPC_STATUS_INVALID_ARGUMENT, Files(nullptr, false, &files, &msg));
  EXPECT_EQ("no symbol or filename", msg);
}

// ---- rpc_server_add_proto_file ------------------------------------------------------------

// A FileDescriptorProto with only its name (field 1).
std::string NamedFile(const std::string &name) {
  return std::string("\x0a", 1) + static_cast<char>(name.size()) + name;
}

TEST(ReflectionSetup, AddProtoFileRefusesBadInput) {
  rpc_server *s = nullptr;
  ASSERT_EQ(0, rpc_server_create(&s, nullptr));
  EXPECT_EQ(-EINVAL, rpc_server_add_proto_file(nullptr, nullptr));
  EXPECT_EQ(-EINVAL, rpc_server_add_proto_file(s, nullptr));
  std::string a = NamedFile("a.proto"), bad = "\x0a\x09" "a.proto";  // length past the end
  const rpc_proto_file *none[] = {nullptr};
  rpc_proto_file noname = {nullptr, reinterpret_cast<const uint8_t *>(a.data()), a.size(), none};
  EXPECT_EQ(-EINVAL, rpc_server_add_proto_file(s, &noname));
  rpc_proto_file truncated = {"a.proto", reinterpret_cast<const uint8_t *>(bad.data()), bad.size(),
                              none};
  EXPECT_EQ(-EINVAL, rpc_server_add_proto_file(s, &truncated));
  rpc_proto_file misnamed = {"b.proto", reinterpret_cast<const uint8_t *>(a.data()), a.size(),
                             none};
  EXPECT_EQ(-EINVAL, rpc_server_add_proto_file(s, &misnamed));
  rpc_proto_file ok = {"a.proto", reinterpret_cast<const uint8_t *>(a.data()), a.size(), none};
  EXPECT_EQ(0, rpc_server_add_proto_file(s, &ok));
  EXPECT_EQ(0, rpc_server_add_proto_file(s, &ok));  // the same again: nothing to do
  std::string a2 = a + std::string("\x12\x01p", 3);  // a.proto with a package: other bytes
  rpc_proto_file other = {"a.proto", reinterpret_cast<const uint8_t *>(a2.data()), a2.size(), none};
  EXPECT_EQ(-EEXIST, rpc_server_add_proto_file(s, &other));
  // An import cycle (impossible from protoc, possible in hand-made values).
  std::string c = NamedFile("c.proto"), d = NamedFile("d.proto");
  const rpc_proto_file *c_deps[2] = {nullptr, nullptr}, *d_deps[2] = {nullptr, nullptr};
  rpc_proto_file fc = {"c.proto", reinterpret_cast<const uint8_t *>(c.data()), c.size(), c_deps};
  rpc_proto_file fd = {"d.proto", reinterpret_cast<const uint8_t *>(d.data()), d.size(), d_deps};
  c_deps[0] = &fd;
  d_deps[0] = &fc;
  EXPECT_EQ(-ELOOP, rpc_server_add_proto_file(s, &fc));
  EXPECT_EQ(0, rpc_server_enable_reflection(s));
  EXPECT_EQ(-EEXIST, rpc_server_enable_reflection(s));
  ASSERT_EQ(0, rpc_server_listen(s, "127.0.0.1:0"));
  ASSERT_EQ(0, rpc_server_start(s));
  rpc_proto_file late = {"late.proto", reinterpret_cast<const uint8_t *>(a.data()), a.size(), none};
  EXPECT_EQ(-EBUSY, rpc_server_add_proto_file(s, &late));
  EXPECT_EQ(-EBUSY, rpc_server_enable_reflection(s));
  EXPECT_EQ(-EINVAL, rpc_server_enable_reflection(nullptr));
  rpc_server_destroy(s);
}

// The limit is RPC_MAX_PROTO_FILES in all; a file whose imports do not fit adds nothing.
TEST(ReflectionSetup, AddProtoFileStopsAtTheLimit) {
  rpc_server *s = nullptr;
  ASSERT_EQ(0, rpc_server_create(&s, nullptr));
  std::vector<std::string> bytes(RPC_MAX_PROTO_FILES + 2);
  std::vector<std::string> names(RPC_MAX_PROTO_FILES + 2);
  std::vector<rpc_proto_file> files(RPC_MAX_PROTO_FILES + 2);
  const rpc_proto_file *none[] = {nullptr};
  for (size_t i = 0; i < files.size(); i++) {
    names[i] = "f" + std::to_string(i) + ".proto";
    bytes[i] = NamedFile(names[i]);
    files[i] = {names[i].c_str(), reinterpret_cast<const uint8_t *>(bytes[i].data()),
                bytes[i].size(), none};
  }
  for (size_t i = 0; i + 1 < RPC_MAX_PROTO_FILES; i++)
    ASSERT_EQ(0, rpc_server_add_proto_file(s, &files[i])) << i;
  // Two files (one import) where one place is left.
  const rpc_proto_file *deps[] = {&files[RPC_MAX_PROTO_FILES], nullptr};
  rpc_proto_file two = files[RPC_MAX_PROTO_FILES + 1];
  two.deps = deps;
  EXPECT_EQ(-ENOSPC, rpc_server_add_proto_file(s, &two));
  EXPECT_EQ(0, rpc_server_add_proto_file(s, &files[RPC_MAX_PROTO_FILES]));  // it was undone
  EXPECT_EQ(-ENOSPC, rpc_server_add_proto_file(s, &files[RPC_MAX_PROTO_FILES + 1]));
  rpc_server_destroy(s);
}

// ---- rpc_channel_call_bytes -----------------------------------------------------------------

std::string Pack(const ProtobufCMessage *m) {
  std::string out(protobuf_c_message_get_packed_size(m), '\0');
  protobuf_c_message_pack(m, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

TEST_F(Reflection, CallBytesReturnsTheReplyBytesAndTrailers) {
  Gaio__Test__Cli__EchoRequest req = GAIO__TEST__CLI__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("ab");
  req.times = 2;
  req.echo_header = const_cast<char *>("x-tag");
  std::string body = Pack(&req.base);
  rpc_md md = {"x-tag", 5, "v1", 2};
  rpc_call_options o = {};
  o.metadata = &md;
  o.metadata_count = 1;
  uint8_t *reply = nullptr;
  size_t len = 0;
  char msg[64] = "junk";
  rpc_metadata trailers;
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", body.data(),
                                                  body.size(), &o, &reply, &len, msg, sizeof msg,
                                                  &trailers));
  EXPECT_STREQ("", msg);
  Gaio__Test__Cli__EchoReply want = GAIO__TEST__CLI__ECHO_REPLY__INIT;
  want.text = const_cast<char *>("abab");
  want.header = const_cast<char *>("v1");
  want.status = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  EXPECT_EQ(Pack(&want.base), std::string(reinterpret_cast<char *>(reply), len));
  free(reply);
  rpc_md e;
  ASSERT_EQ(1, rpc_metadata_get(&trailers, "echo", 4, &e));
  EXPECT_EQ("v1", std::string(static_cast<const char *>(e.value), e.value_len));
  rpc_metadata_free(&trailers);

  // An empty request (all defaults) and a reply of zero bytes is still a buffer.
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", nullptr, 0,
                                                  nullptr, &reply, &len, nullptr, 0, nullptr));
  ASSERT_NE(nullptr, reply);
  Gaio__Test__Cli__EchoReply serving = GAIO__TEST__CLI__ECHO_REPLY__INIT;
  serving.status = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  EXPECT_EQ(Pack(&serving.base), std::string(reinterpret_cast<char *>(reply), len));
  free(reply);
}

TEST_F(Reflection, CallBytesReportsErrorStatuses) {
  Gaio__Test__Cli__EchoRequest req = GAIO__TEST__CLI__ECHO_REQUEST__INIT;
  req.text = const_cast<char *>("no such key");
  req.fail_code = RPC_STATUS_NOT_FOUND;
  std::string body = Pack(&req.base);
  uint8_t *reply = reinterpret_cast<uint8_t *>(1);
  size_t len = 7;
  char msg[64];
  EXPECT_EQ(RPC_STATUS_NOT_FOUND,
            rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Fail", body.data(), body.size(),
                                   nullptr, &reply, &len, msg, sizeof msg, nullptr));
  EXPECT_EQ(nullptr, reply);
  EXPECT_EQ(0u, len);
  EXPECT_STREQ("no such key", msg);

  EXPECT_EQ(RPC_STATUS_UNIMPLEMENTED,
            rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Nope", body.data(), body.size(),
                                   nullptr, &reply, &len, msg, sizeof msg, nullptr));
  EXPECT_EQ(nullptr, reply);

  // Bytes that are not an EchoRequest: the server cannot unpack them.
  EXPECT_EQ(RPC_STATUS_INVALID_ARGUMENT,
            rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", "\xff\xff", 2, nullptr, &reply,
                                   &len, msg, sizeof msg, nullptr));
}

TEST_F(Reflection, CallBytesRefusesBadArguments) {
  uint8_t *reply = nullptr;
  size_t len = 0;
  std::string big(4097, 'x');  // the channel's max_body is 4096
  EXPECT_EQ(-EMSGSIZE, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", big.data(),
                                              big.size(), nullptr, &reply, &len, nullptr, 0,
                                              nullptr));
  EXPECT_EQ(-EINVAL, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo.Say", "", 0, nullptr,
                                            &reply, &len, nullptr, 0, nullptr));
  EXPECT_EQ(-EINVAL, rpc_channel_call_bytes(ch_, nullptr, "", 0, nullptr, &reply, &len, nullptr,
                                            0, nullptr));
  EXPECT_EQ(-EINVAL, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", nullptr, 3, nullptr,
                                            &reply, &len, nullptr, 0, nullptr));
  EXPECT_EQ(-EINVAL, rpc_channel_call_bytes(ch_, "gaio.test.cli.Echo/Say", "", 0, nullptr,
                                            nullptr, &len, nullptr, 0, nullptr));
  EXPECT_EQ(-EINVAL, rpc_channel_call_bytes(nullptr, "gaio.test.cli.Echo/Say", "", 0, nullptr,
                                            &reply, &len, nullptr, 0, nullptr));
  EXPECT_EQ(nullptr, reply);
}

}  // namespace
