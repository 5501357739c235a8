// A server for tests/rpc_reflection_test.cc and tests/cli_test.cc, on 127.0.0.1 port 0: the Echo
// service of tests/cli_test.proto, health, and on request reflection (with the descriptors of
// tests/cli_test.desc, read with libprotobuf) and a fake admin service that answers fixed stats.
#ifndef GAIO_TESTS_CLI_TEST_SERVER_H
#define GAIO_TESTS_CLI_TEST_SERVER_H

#include <deque>
#include <string>
#include <vector>

#include "rpc/rpc.h"

namespace gaio_test {

// The files of a FileDescriptorSet (protoc --descriptor_set_out --include_imports) as
// rpc_proto_file values, each with its imports as deps; they live as long as this object.
class ProtoFiles {
 public:
  // Returns 0, or -ENOENT (unreadable file), -EINVAL (not a FileDescriptorSet).
  int Load(const std::string &path);
  const rpc_proto_file *Find(const std::string &name) const;
  // The serialized FileDescriptorProto of a file ("" when unknown).
  std::string Bytes(const std::string &name) const;

 private:
  struct File {
    std::string name, bytes;
    std::vector<const rpc_proto_file *> deps;
    rpc_proto_file pf;
  };
  std::deque<File> files_;
};

// The path of the test descriptor set in the runfiles.
extern const char kCliTestDescriptors[];

struct CliTestServerOptions {
  bool reflection = true;  // enable reflection and add tests/cli_test.proto (with its import)
  bool admin = true;       // host the fake gaio.admin.v1.Admin
};

class CliTestServer {
 public:
  CliTestServer() = default;
  CliTestServer(const CliTestServer &) = delete;
  CliTestServer &operator=(const CliTestServer &) = delete;
  ~CliTestServer();
  // Create, configure and start. Returns 0 or a negative errno.
  int Start(const CliTestServerOptions &o);
  std::string address() const { return "127.0.0.1:" + std::to_string(rpc_server_port(s_)); }
  rpc_server *server() const { return s_; }
  const ProtoFiles &files() const { return files_; }

 private:
  rpc_server *s_ = nullptr;
  ProtoFiles files_;
};

}  // namespace gaio_test

#endif  // GAIO_TESTS_CLI_TEST_SERVER_H
