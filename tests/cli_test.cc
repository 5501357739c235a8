// The command-line client //rpc/cli:gaiorpc, run as a process against a real server in this
// test (cli_test_server.h): every subcommand with its exact output and exit status, bad input,
// metadata, --proto without reflection, and the Prometheus output checked by promtool.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rpc/rpc.h"
#include "tests/cli_test_server.h"

namespace {

using gaio_test::CliTestServer;
using gaio_test::CliTestServerOptions;

constexpr int kRunTimeoutMs = 30000;  // per process; a hang fails the test instead of Bazel's

struct Result {
  int exit = -1;  // the exit status; 128 + signal; -1 when killed at the timeout
  std::string out, err;
};

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Run argv[0] with argv, stdin fed from `in`, and collect its output, for at most kRunTimeoutMs.
Result Exec(const std::vector<std::string> &argv, const std::string &in) {
  Result r;
  int pin[2], pout[2], perr[2];
  if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pin[0], 0);
    dup2(pout[1], 1);
    dup2(perr[1], 2);
    std::vector<char *> args;
    for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  signal(SIGPIPE, SIG_IGN);
  if (!in.empty() && write(pin[1], in.data(), in.size()) < 0) r.err = "stdin write failed";
  close(pin[1]);
  int64_t deadline = NowMs() + kRunTimeoutMs;
  struct pollfd fds[2] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}};
  std::string *dst[2] = {&r.out, &r.err};
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        dst[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (auto &f : fds)
    if (f.fd >= 0) close(f.fd);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!killed) r.exit = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

const char kGaiorpc[] = "rpc/cli/gaiorpc";

Result Gaiorpc(const std::vector<std::string> &args, const std::string &in = "") {
  std::vector<std::string> argv = {kGaiorpc};
  argv.insert(argv.end(), args.begin(), args.end());
  return Exec(argv, in);
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(0, server_.Start(CliTestServerOptions())); }
  std::string addr() const { return server_.address(); }
  CliTestServer server_;
};

TEST(CliUsage, HelpListsEveryFlagWithItsDefault) {
  for (const char *h : {"-h", "--help"}) {
    Result r = Gaiorpc({h});
    EXPECT_EQ(0, r.exit);
    EXPECT_EQ("", r.err);
    EXPECT_EQ(0u, r.out.find("usage: gaiorpc [options] ADDR COMMAND [ARGS]\n"));
    for (const char *flag : {"--timeout MS", "-H, --header KEY:VALUE", "-d, --data REQUEST",
                             "--format json|text", "--proto FILE", "-I, --import-path DIR",
                             "--prometheus", "-v, --verbose", "-h, --help", "(default 10000)",
                             "(default json)", "(default .)", "Exit status: 0 OK"})
      EXPECT_NE(std::string::npos, r.out.find(flag)) << flag;
  }
}

TEST(CliUsage, BadCommandLinesExit64) {
  for (const auto &args : std::vector<std::vector<std::string>>{
           {},
           {"127.0.0.1:1"},
           {"127.0.0.1:1", "frobnicate"},
           {"--timeout", "abc", "127.0.0.1:1", "health"},
           {"--timeout=0", "127.0.0.1:1", "health"},
           {"-H", "novalue", "127.0.0.1:1", "health"},
           {"-H", "Bad Key:v", "127.0.0.1:1", "health"},
           {"--format=xml", "127.0.0.1:1", "health"},
           {"--nope", "127.0.0.1:1", "health"},
           {"127.0.0.1:1", "health", "--timeout"},
           {"127.0.0.1:1", "call", "NoSlash", "{}"},
       }) {
    Result r = Gaiorpc(args);
    EXPECT_EQ(64, r.exit) << testing::PrintToString(args) << r.err;
    EXPECT_EQ("", r.out);
    EXPECT_NE(std::string::npos, r.err.find("(gaiorpc --help for usage)\n"));
  }
}

TEST(CliUsage, BadAddressExits68AndUnreachableExits14) {
  Result r = Gaiorpc({"not an address", "health"});
  EXPECT_EQ(68, r.exit);
  EXPECT_EQ("gaiorpc: not an address: bad address (Invalid argument)\n", r.err);
  // Port 1 on loopback: nothing listens, the connection is refused.
  r = Gaiorpc({"127.0.0.1:1", "health"});
  EXPECT_EQ(RPC_STATUS_UNAVAILABLE, r.exit);
  EXPECT_EQ(0u, r.err.find("gaiorpc: gaio.health.v1.Health/Check: UNAVAILABLE"));
}

TEST_F(Cli, ListNamesServicesAndMethods) {
  Result r = Gaiorpc({addr(), "list"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.admin.v1.Admin\ngaio.health.v1.Health\ngaio.reflection.v1.Reflection\n"
      "gaio.test.cli.Echo\n",
      r.out);
  r = Gaiorpc({addr(), "list", "gaio.test.cli.Echo"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("gaio.test.cli.Echo/Say\ngaio.test.cli.Echo/Fail\n", r.out);
  // Built into gaiorpc: no reflection needed for the library's own services.
  r = Gaiorpc({addr(), "list", "gaio.health.v1.Health"});
  EXPECT_EQ("gaio.health.v1.Health/Check\n", r.out);
  r = Gaiorpc({addr(), "list", "gaio.test.cli.Nope"});
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.exit);
  EXPECT_EQ(
      "gaiorpc: gaio.reflection.v1.Reflection/FileContainingSymbol: NOT_FOUND: unknown symbol: "
      "gaio.test.cli.Nope\n",
      r.err);
}

TEST_F(Cli, DescribePrintsProtoText) {
  Result r = Gaiorpc({addr(), "describe", "gaio.test.cli.Echo"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.test.cli.Echo is a service:\n"
      "service Echo {\n"
      "  rpc Say(.gaio.test.cli.EchoRequest) returns (.gaio.test.cli.EchoReply);\n"
      "  rpc Fail(.gaio.test.cli.EchoRequest) returns (.gaio.test.cli.EchoReply);\n"
      "}\n",
      r.out);
  r = Gaiorpc({addr(), "describe", "gaio.test.cli.Echo/Say"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.test.cli.Echo.Say is a method:\n"
      "rpc Say(.gaio.test.cli.EchoRequest) returns (.gaio.test.cli.EchoReply);\n",
      r.out);
  r = Gaiorpc({addr(), "describe", "gaio.test.cli.EchoReply"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.test.cli.EchoReply is a message:\n"
      "message EchoReply {\n"
      "  string text = 1;\n"
      "  string header = 2;\n"
      "  .gaio.health.v1.HealthCheckResponse.ServingStatus status = 3;\n"
      "  repeated int64 numbers = 4;\n"
      "}\n",
      r.out);
  r = Gaiorpc({addr(), "describe", "gaio.test.cli.EchoRequest.Kind"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.test.cli.EchoRequest.Kind is an enum:\n"
      "enum Kind {\n"
      "  PLAIN = 0;\n"
      "  LOUD = 1;\n"
      "}\n",
      r.out);
  r = Gaiorpc({addr(), "describe", "gaio.test.cli.Missing"});
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.exit);
  EXPECT_EQ("", r.out);
}

TEST_F(Cli, CallWithJson) {
  Result r = Gaiorpc(
      {addr(), "call", "gaio.test.cli.Echo/Say",
       R"({"text": "ab", "times": 2, "kind": "LOUD", "inner": {"numbers": [1, "-2"]}})"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("", r.err);
  EXPECT_EQ(
      "{\n"
      " \"text\": \"ABAB\",\n"
      " \"status\": \"SERVING\",\n"
      " \"numbers\": [\n"
      "  \"1\",\n"
      "  \"-2\"\n"
      " ]\n"
      "}\n",
      r.out);
  // No request: the empty message.
  r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Say"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"status\": \"SERVING\"\n}\n", r.out);
}

TEST_F(Cli, CallWithTextFormat) {
  Result r = Gaiorpc({"--format=text", addr(), "call", "gaio.test.cli.Echo/Say",
                      "text: \"hi\" inner { numbers: 3 numbers: 4 }"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("text: \"hi\"\nstatus: SERVING\nnumbers: 3\nnumbers: 4\n", r.out);
}

TEST_F(Cli, CallReadsTheRequestFromAFileOrStdin) {
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/req.json";
  std::ofstream(path) << R"({"text": "file"})";
  Result r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Say", "-d", "@" + path});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"text\": \"file\",\n \"status\": \"SERVING\"\n}\n", r.out);
  r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Say", "-"}, R"({"text": "stdin"})");
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"text\": \"stdin\",\n \"status\": \"SERVING\"\n}\n", r.out);
  r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Say", "@/nonexistent/req.json"});
  EXPECT_EQ(66, r.exit);
  EXPECT_EQ("gaiorpc: /nonexistent/req.json: No such file or directory\n", r.err);
}

TEST_F(Cli, ErrorStatusesBecomeTheExitStatus) {
  Result r =
      Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Fail", R"({"text": "gone", "failCode": 5})"});
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.exit);
  EXPECT_EQ("", r.out);
  EXPECT_EQ("gaiorpc: gaio.test.cli.Echo/Fail: NOT_FOUND: gone\n", r.err);
  r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Fail", R"({"text": "no", "failCode": 7})"});
  EXPECT_EQ(RPC_STATUS_PERMISSION_DENIED, r.exit);
  // A method reflection does not know.
  r = Gaiorpc({addr(), "call", "gaio.test.cli.Echo/Nope", "{}"});
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.exit);
  EXPECT_EQ(
      "gaiorpc: gaio.reflection.v1.Reflection/FileContainingSymbol: NOT_FOUND: unknown symbol: "
      "gaio.test.cli.Echo.Nope\n",
      r.err);
}

TEST_F(Cli, TimeoutBoundsTheCall) {
  Result r = Gaiorpc({"--timeout", "100", addr(), "call", "gaio.test.cli.Echo/Say",
                      R"({"delayMs": 1000})"});
  EXPECT_EQ(RPC_STATUS_DEADLINE_EXCEEDED, r.exit);
  EXPECT_EQ("", r.out);
  EXPECT_EQ(0u, r.err.find("gaiorpc: gaio.test.cli.Echo/Say: DEADLINE_EXCEEDED")) << r.err;
}

TEST_F(Cli, MalformedRequestsExit65) {
  for (const auto &args : std::vector<std::vector<std::string>>{
           {addr(), "call", "gaio.test.cli.Echo/Say", R"({"text": )"},
           {addr(), "call", "gaio.test.cli.Echo/Say", R"({"nope": 1})"},
           {addr(), "call", "gaio.test.cli.Echo/Say", R"({"times": "many"})"},
           {"--format=text", addr(), "call", "gaio.test.cli.Echo/Say", "text: 1 2"},
       }) {
    Result r = Gaiorpc(args);
    EXPECT_EQ(65, r.exit) << testing::PrintToString(args);
    EXPECT_EQ("", r.out);
    EXPECT_EQ(0u, r.err.find("gaiorpc: the request is not gaio.test.cli.EchoRequest in "))
        << r.err;
  }
}

TEST_F(Cli, HeadersReachTheServer) {
  Result r = Gaiorpc({"-H", "X-Tag: v1", "-H", "other:x", "-v", addr(), "call",
                      "gaio.test.cli.Echo/Say", R"({"echoHeader": "x-tag"})"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"header\": \"v1\",\n \"status\": \"SERVING\"\n}\n", r.out);
  EXPECT_EQ("trailer echo: v1\n", r.err);
}

TEST_F(Cli, HealthPrintsTheServingStatus) {
  Result r = Gaiorpc({addr(), "health"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("SERVING\n", r.out);
  r = Gaiorpc({addr(), "health", "gaio.test.cli.Echo"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("SERVING\n", r.out);
  r = Gaiorpc({addr(), "health", "gaio.test.cli.Nope"});
  EXPECT_EQ(RPC_STATUS_NOT_FOUND, r.exit);
  EXPECT_EQ("gaiorpc: gaio.health.v1.Health/Check: NOT_FOUND: unknown service\n", r.err);
  rpc_server_set_serving(server_.server(), 0);
  r = Gaiorpc({addr(), "health"});
  EXPECT_EQ(69, r.exit);
  EXPECT_EQ("NOT_SERVING\n", r.out);
}

const char kStatsTable[] =
    "backend epoll, 2 workers, up 1.5 s\n"
    "connections: 3 accepted, 1 open; closed: peer 2\n"
    "protocol errors: bad_magic 1\n"
    "goaways sent 0, calls refused 0, unknown methods 1\n"
    "listener 127.0.0.1:7000: 3 accepted, 0 accept errors\n"
    "loop: 10 polls, 0.005 s idle, 12 events, 20 completions, 8 reads (400 B), 7 writes (600 B)\n"
    "\n"
    "METHOD                   STARTED  OK  ERRORS  IN_FLIGHT  REQ_BYTES  RESP_BYTES  P50_US"
    "  P90_US  P99_US  MAX_US\n"
    "gaio.test.cli.Echo/Say         4   3       1          0         40          60     200"
    "     900     900     900\n"
    "gaio.test.cli.Echo/Fail        1   0       0          1          0           0       -"
    "       -       -       -\n";

TEST_F(Cli, StatsTable) {
  Result r = Gaiorpc({addr(), "stats"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(kStatsTable, r.out);
}

const char kStatsPrometheus[] = R"(# HELP gaio_rpc_server_info The server's gaio backend and worker threads.
# TYPE gaio_rpc_server_info gauge
gaio_rpc_server_info{backend="epoll",workers="2"} 1
# HELP gaio_rpc_server_uptime_seconds Time since the server was created.
# TYPE gaio_rpc_server_uptime_seconds gauge
gaio_rpc_server_uptime_seconds 1.5
# HELP gaio_rpc_server_connections_accepted_total Connections accepted.
# TYPE gaio_rpc_server_connections_accepted_total counter
gaio_rpc_server_connections_accepted_total 3
# HELP gaio_rpc_server_connections_open Connections open.
# TYPE gaio_rpc_server_connections_open gauge
gaio_rpc_server_connections_open 1
# HELP gaio_rpc_server_connections_closed_total Connections closed, by cause.
# TYPE gaio_rpc_server_connections_closed_total counter
gaio_rpc_server_connections_closed_total{cause="peer"} 2
# HELP gaio_rpc_server_protocol_errors_total Protocol errors, by kind.
# TYPE gaio_rpc_server_protocol_errors_total counter
gaio_rpc_server_protocol_errors_total{kind="bad_magic"} 1
# HELP gaio_rpc_server_goaways_sent_total GOAWAY frames sent.
# TYPE gaio_rpc_server_goaways_sent_total counter
gaio_rpc_server_goaways_sent_total 0
# HELP gaio_rpc_server_calls_refused_total Calls answered RESOURCE_EXHAUSTED by a calls limit.
# TYPE gaio_rpc_server_calls_refused_total counter
gaio_rpc_server_calls_refused_total 0
# HELP gaio_rpc_server_calls_unimplemented_total Requests naming an unknown method.
# TYPE gaio_rpc_server_calls_unimplemented_total counter
gaio_rpc_server_calls_unimplemented_total 1
# HELP gaio_rpc_server_calls_started_total Requests dispatched to the handler.
# TYPE gaio_rpc_server_calls_started_total counter
gaio_rpc_server_calls_started_total{method="gaio.test.cli.Echo/Say"} 4
gaio_rpc_server_calls_started_total{method="gaio.test.cli.Echo/Fail"} 1
# HELP gaio_rpc_server_calls_in_flight Calls started and not yet answered.
# TYPE gaio_rpc_server_calls_in_flight gauge
gaio_rpc_server_calls_in_flight{method="gaio.test.cli.Echo/Say"} 0
gaio_rpc_server_calls_in_flight{method="gaio.test.cli.Echo/Fail"} 1
# HELP gaio_rpc_server_request_bytes_total Request body bytes received.
# TYPE gaio_rpc_server_request_bytes_total counter
gaio_rpc_server_request_bytes_total{method="gaio.test.cli.Echo/Say"} 40
gaio_rpc_server_request_bytes_total{method="gaio.test.cli.Echo/Fail"} 0
# HELP gaio_rpc_server_response_bytes_total Response body bytes sent.
# TYPE gaio_rpc_server_response_bytes_total counter
gaio_rpc_server_response_bytes_total{method="gaio.test.cli.Echo/Say"} 60
gaio_rpc_server_response_bytes_total{method="gaio.test.cli.Echo/Fail"} 0
# HELP gaio_rpc_server_calls_completed_total Calls completed, by status code.
# TYPE gaio_rpc_server_calls_completed_total counter
gaio_rpc_server_calls_completed_total{method="gaio.test.cli.Echo/Say",code="OK"} 3
gaio_rpc_server_calls_completed_total{method="gaio.test.cli.Echo/Say",code="NOT_FOUND"} 1
# HELP gaio_rpc_server_call_duration_seconds Time from a call's dispatch to its reply being queued.
# TYPE gaio_rpc_server_call_duration_seconds histogram
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Say",le="0.0001"} 1
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Say",le="0.0002"} 3
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Say",le="0.0005"} 3
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Say",le="0.001"} 4
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Say",le="+Inf"} 4
gaio_rpc_server_call_duration_seconds_sum{method="gaio.test.cli.Echo/Say"} 0.0015
gaio_rpc_server_call_duration_seconds_count{method="gaio.test.cli.Echo/Say"} 4
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Fail",le="0.0001"} 0
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Fail",le="0.0002"} 0
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Fail",le="0.0005"} 0
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Fail",le="0.001"} 0
gaio_rpc_server_call_duration_seconds_bucket{method="gaio.test.cli.Echo/Fail",le="+Inf"} 0
gaio_rpc_server_call_duration_seconds_sum{method="gaio.test.cli.Echo/Fail"} 0
gaio_rpc_server_call_duration_seconds_count{method="gaio.test.cli.Echo/Fail"} 0
# HELP gaio_rpc_listener_accepted_total Connections accepted, by listener.
# TYPE gaio_rpc_listener_accepted_total counter
gaio_rpc_listener_accepted_total{address="127.0.0.1:7000"} 3
# HELP gaio_rpc_listener_accept_errors_total Failed accepts, by listener.
# TYPE gaio_rpc_listener_accept_errors_total counter
gaio_rpc_listener_accept_errors_total{address="127.0.0.1:7000"} 0
# HELP gaio_loop_polls_total Waits in the kernel.
# TYPE gaio_loop_polls_total counter
gaio_loop_polls_total 10
# HELP gaio_loop_idle_seconds_total Time blocked in those waits.
# TYPE gaio_loop_idle_seconds_total counter
gaio_loop_idle_seconds_total 0.005
# HELP gaio_loop_events_total Readiness events or CQEs returned.
# TYPE gaio_loop_events_total counter
gaio_loop_events_total 12
# HELP gaio_loop_completions_total gaio results delivered.
# TYPE gaio_loop_completions_total counter
gaio_loop_completions_total 20
# HELP gaio_loop_reads_total Reads completed.
# TYPE gaio_loop_reads_total counter
gaio_loop_reads_total 8
# HELP gaio_loop_writes_total Writes completed.
# TYPE gaio_loop_writes_total counter
gaio_loop_writes_total 7
# HELP gaio_loop_read_bytes_total Bytes read.
# TYPE gaio_loop_read_bytes_total counter
gaio_loop_read_bytes_total 400
# HELP gaio_loop_write_bytes_total Bytes written.
# TYPE gaio_loop_write_bytes_total counter
gaio_loop_write_bytes_total 600
)";

TEST_F(Cli, StatsPrometheusPassesPromtool) {
  Result r = Gaiorpc({addr(), "stats", "--prometheus"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(kStatsPrometheus, r.out);
  if (access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool missing (tools/setup.sh)";
  // promtool check metrics reads stdin; exit 0 and no lint finding.
  Result p = Exec({"/usr/bin/promtool", "check", "metrics"}, r.out);
  EXPECT_EQ(0, p.exit) << p.out << p.err;
  EXPECT_EQ("", p.out + p.err);
  // promtool does find problems: a counter without _total.
  p = Exec({"/usr/bin/promtool", "check", "metrics"},
           "# HELP x_bytes A.\n# TYPE x_bytes counter\nx_bytes 1\n");
  EXPECT_NE(0, p.exit);
}

TEST(CliNoReflection, ProtoFilesStandInForReflection) {
  CliTestServerOptions o;
  o.reflection = false;
  o.admin = false;
  CliTestServer server;
  ASSERT_EQ(0, server.Start(o));
  std::string addr = server.address();
  Result r = Gaiorpc({addr, "list"});
  EXPECT_EQ(RPC_STATUS_UNIMPLEMENTED, r.exit);
  EXPECT_EQ(
      "gaiorpc: gaio.reflection.v1.Reflection/ListServices: UNIMPLEMENTED: "
      "unknown method id 0xdb382b93\n"
      "(the server has no reflection service: give --proto FILE)\n",
      r.err);
  r = Gaiorpc({"--proto", "tests/cli_test.proto", addr, "list"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("gaio.test.cli.Echo\n", r.out);
  r = Gaiorpc({"--proto", "tests/cli_test.proto", "-I", ".", addr, "describe",
               "gaio.test.cli.Echo/Fail"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ(
      "gaio.test.cli.Echo.Fail is a method:\n"
      "rpc Fail(.gaio.test.cli.EchoRequest) returns (.gaio.test.cli.EchoReply);\n",
      r.out);
  r = Gaiorpc({"--proto", "tests/cli_test.proto", addr, "call", "gaio.test.cli.Echo/Say",
               R"({"text": "p"})"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"text\": \"p\",\n \"status\": \"SERVING\"\n}\n", r.out);
  r = Gaiorpc({"--proto", "tests/cli_test.proto", addr, "call", "gaio.test.cli.Echo/Nope", "{}"});
  EXPECT_EQ(65, r.exit);
  EXPECT_EQ("gaiorpc: unknown symbol: gaio.test.cli.Echo.Nope\n", r.err);
  // The library's own services need no file.
  r = Gaiorpc({addr, "call", "gaio.health.v1.Health/Check", "{}"});
  EXPECT_EQ(0, r.exit) << r.err;
  EXPECT_EQ("{\n \"status\": \"SERVING\"\n}\n", r.out);
  r = Gaiorpc({addr, "stats"});
  EXPECT_EQ(RPC_STATUS_UNIMPLEMENTED, r.exit);

  r = Gaiorpc({"--proto", "tests/missing.proto", addr, "list"});
  EXPECT_EQ(66, r.exit);
  EXPECT_EQ("gaiorpc: tests/missing.proto: No such file or directory\n", r.err);
  std::string dir = getenv("TEST_TMPDIR");
  std::ofstream(dir + "/broken.proto") << "syntax = \"proto3\";\nmessage {\n";
  r = Gaiorpc({"--proto", dir + "/broken.proto", "-I", dir, addr, "list"});
  EXPECT_EQ(65, r.exit);
  EXPECT_EQ(0u, r.err.find("gaiorpc: --proto " + dir + "/broken.proto does not compile:\n"
                           "broken.proto:2:9: Expected message name.\n"))
      << r.err;
  r = Gaiorpc({"--proto", dir + "/broken.proto", addr, "list"});
  EXPECT_EQ(65, r.exit);
  EXPECT_EQ("gaiorpc: " + dir + "/broken.proto: not under an import path (-I)\n", r.err);
}

}  // namespace
