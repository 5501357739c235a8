// The test server of tests/cli_test_server.h.
#include "tests/cli_test_server.h"

#include <ctype.h>
#include <errno.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <google/protobuf/descriptor.pb.h>

#include "rpc/admin.pb-c.h"
#include "tests/cli_test.pb-c.h"

namespace gaio_test {

const char kCliTestDescriptors[] = "tests/cli_test.desc";

int ProtoFiles::Load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return -ENOENT;
  std::stringstream ss;
  ss << in.rdbuf();
  google::protobuf::FileDescriptorSet set;
  if (!set.ParseFromString(ss.str())) return -EINVAL;
  for (const auto &fd : set.file()) {  // imports come first in the set
    files_.emplace_back();
    File &f = files_.back();
    f.name = fd.name();
    f.bytes = fd.SerializeAsString();
    for (const auto &dep : fd.dependency()) {
      const rpc_proto_file *d = Find(dep);
      if (!d) return -EINVAL;
      f.deps.push_back(d);
    }
    f.deps.push_back(nullptr);
    f.pf = {f.name.c_str(), reinterpret_cast<const uint8_t *>(f.bytes.data()), f.bytes.size(),
            f.deps.data()};
  }
  return 0;
}

const rpc_proto_file *ProtoFiles::Find(const std::string &name) const {
  for (const File &f : files_)
    if (f.name == name) return &f.pf;
  return nullptr;
}

std::string ProtoFiles::Bytes(const std::string &name) const {
  for (const File &f : files_)
    if (f.name == name) return f.bytes;
  return "";
}

namespace {

// ---- Echo -------------------------------------------------------------------------------

void Say(Gaio__Test__Cli__Echo_Service *, const Gaio__Test__Cli__EchoRequest *in,
         Gaio__Test__Cli__EchoReply_Closure closure, void *data) {
  rpc_call *call = rpc_server_call(data);
  if (in->delay_ms > 0) usleep(static_cast<useconds_t>(in->delay_ms) * 1000);
  std::string text;
  for (int i = 0; i < (in->times > 0 ? in->times : 1); i++) text += in->text;
  if (in->kind == GAIO__TEST__CLI__ECHO_REQUEST__KIND__LOUD)
    for (char &c : text) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  std::string header;
  const void *v;
  size_t len;
  if (in->echo_header[0] && rpc_call_header(call, in->echo_header, &v, &len)) {
    header.assign(static_cast<const char *>(v), len);
    rpc_call_set_trailer(call, "echo", header.data(), header.size());
  }
  Gaio__Test__Cli__EchoReply out = GAIO__TEST__CLI__ECHO_REPLY__INIT;
  out.text = const_cast<char *>(text.c_str());
  out.header = const_cast<char *>(header.c_str());
  out.status = GAIO__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  if (in->inner) {
    out.n_numbers = in->inner->n_numbers;
    out.numbers = in->inner->numbers;
  }
  closure(&out, data);
}

void Fail(Gaio__Test__Cli__Echo_Service *, const Gaio__Test__Cli__EchoRequest *in,
          Gaio__Test__Cli__EchoReply_Closure, void *data) {
  rpc_call_fail(rpc_server_call(data), static_cast<int>(in->fail_code), in->text);
}

Gaio__Test__Cli__Echo_Service g_echo = {GAIO__TEST__CLI__ECHO__BASE_INIT, Say, Fail};

// ---- The fake admin service: fixed figures ----------------------------------------------

void GetStats(Gaio__Admin__V1__Admin_Service *, const Gaio__Admin__V1__StatsRequest *,
              Gaio__Admin__V1__ServerStats_Closure closure, void *data) {
  Gaio__Admin__V1__Counter closed_peer = GAIO__ADMIN__V1__COUNTER__INIT;
  closed_peer.name = const_cast<char *>("peer");
  closed_peer.value = 2;
  Gaio__Admin__V1__Counter bad_magic = GAIO__ADMIN__V1__COUNTER__INIT;
  bad_magic.name = const_cast<char *>("bad_magic");
  bad_magic.value = 1;
  Gaio__Admin__V1__Counter *closed[] = {&closed_peer}, *proto_errors[] = {&bad_magic};

  uint64_t bounds[] = {100, 200, 500, 1000};
  uint64_t counts[] = {1, 2, 0, 1, 0};
  Gaio__Admin__V1__Histogram say_latency = GAIO__ADMIN__V1__HISTOGRAM__INIT;
  say_latency.n_bounds_us = 4;
  say_latency.bounds_us = bounds;
  say_latency.n_counts = 5;
  say_latency.counts = counts;
  say_latency.count = 4;
  say_latency.sum_us = 1500;
  say_latency.max_us = 900;
  Gaio__Admin__V1__StatusCount ok = GAIO__ADMIN__V1__STATUS_COUNT__INIT;
  ok.code = RPC_STATUS_OK;
  ok.name = const_cast<char *>("OK");
  ok.count = 3;
  Gaio__Admin__V1__StatusCount nf = GAIO__ADMIN__V1__STATUS_COUNT__INIT;
  nf.code = RPC_STATUS_NOT_FOUND;
  nf.name = const_cast<char *>("NOT_FOUND");
  nf.count = 1;
  Gaio__Admin__V1__StatusCount *completed[] = {&ok, &nf};
  Gaio__Admin__V1__MethodStats say = GAIO__ADMIN__V1__METHOD_STATS__INIT;
  say.method = const_cast<char *>("gaio.test.cli.Echo/Say");
  say.started = 4;
  say.n_completed = 2;
  say.completed = completed;
  say.request_bytes = 40;
  say.response_bytes = 60;
  say.latency = &say_latency;
  Gaio__Admin__V1__Histogram empty = GAIO__ADMIN__V1__HISTOGRAM__INIT;
  empty.n_bounds_us = 4;
  empty.bounds_us = bounds;
  uint64_t zeros[5] = {0};
  empty.n_counts = 5;
  empty.counts = zeros;
  Gaio__Admin__V1__MethodStats fail = GAIO__ADMIN__V1__METHOD_STATS__INIT;
  fail.method = const_cast<char *>("gaio.test.cli.Echo/Fail");
  fail.in_flight = 1;
  fail.started = 1;
  fail.latency = &empty;
  Gaio__Admin__V1__MethodStats *methods[] = {&say, &fail};
  Gaio__Admin__V1__ListenerStats l = GAIO__ADMIN__V1__LISTENER_STATS__INIT;
  l.address = const_cast<char *>("127.0.0.1:7000");
  l.accepted = 3;
  Gaio__Admin__V1__ListenerStats *listeners[] = {&l};
  Gaio__Admin__V1__LoopStats loop = GAIO__ADMIN__V1__LOOP_STATS__INIT;
  loop.polls = 10;
  loop.idle_us = 5000;
  loop.events = 12;
  loop.completions = 20;
  loop.reads = 8;
  loop.writes = 7;
  loop.read_bytes = 400;
  loop.write_bytes = 600;

  Gaio__Admin__V1__ServerStats out = GAIO__ADMIN__V1__SERVER_STATS__INIT;
  out.backend = const_cast<char *>("epoll");
  out.workers = 2;
  out.uptime_us = 1500000;
  out.connections_accepted = 3;
  out.connections_open = 1;
  out.n_connections_closed = 1;
  out.connections_closed = closed;
  out.n_protocol_errors = 1;
  out.protocol_errors = proto_errors;
  out.goaways_sent = 0;
  out.calls_refused = 0;
  out.calls_unimplemented = 1;
  out.n_methods = 2;
  out.methods = methods;
  out.n_listeners = 1;
  out.listeners = listeners;
  out.loop = &loop;
  closure(&out, data);
}

Gaio__Admin__V1__Admin_Service g_admin = {GAIO__ADMIN__V1__ADMIN__BASE_INIT, GetStats};

}  // namespace

CliTestServer::~CliTestServer() { rpc_server_destroy(s_); }

int CliTestServer::Start(const CliTestServerOptions &o) {
  rpc_server_options so = {};
  so.workers = 1;
  int rc = rpc_server_create(&s_, &so);
  if (rc == 0) rc = rpc_server_add_service(s_, &g_echo.base);
  if (rc == 0) rc = rpc_server_enable_health(s_);
  if (rc == 0 && o.admin) rc = rpc_server_add_service(s_, &g_admin.base);
  if (rc == 0 && o.reflection) {
    rc = files_.Load(kCliTestDescriptors);
    const rpc_proto_file *f = files_.Find("tests/cli_test.proto");
    if (rc == 0) rc = f ? rpc_server_add_proto_file(s_, f) : -ENOENT;
    if (rc == 0) rc = rpc_server_enable_reflection(s_);
  }
  if (rc == 0) rc = rpc_server_listen(s_, "127.0.0.1:0");
  if (rc == 0) rc = rpc_server_start(s_);
  return rc;
}

}  // namespace gaio_test
