// ServerStats as a table and in the Prometheus text format (stats_text.h).
#include "rpc/cli/stats_text.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <vector>

namespace gaiorpc {

namespace {

using gaio::admin::v1::Histogram;
using gaio::admin::v1::ServerStats;

std::string U64(uint64_t v) { return std::to_string(v); }

// Microseconds as decimal seconds, exactly and without trailing zeros: 1500000 -> "1.5".
std::string Seconds(uint64_t us) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// A label value with \, " and newline escaped, as the exposition format wants.
std::string Label(const std::string &v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Family(std::string *out, const char *name, const char *type, const char *help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Sample(std::string *out, const std::string &name, const std::string &labels,
            const std::string &value) {
  *out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
}

// One counter or gauge without labels.
void Single(std::string *out, const char *name, const char *type, const char *help,
            const std::string &value) {
  Family(out, name, type, help);
  Sample(out, name, "", value);
}

uint64_t Errors(const gaio::admin::v1::MethodStats &m) {
  uint64_t n = 0;
  for (const auto &c : m.completed())
    if (c.code() != 0) n += c.count();
  return n;
}

uint64_t Ok(const gaio::admin::v1::MethodStats &m) {
  for (const auto &c : m.completed())
    if (c.code() == 0) return c.count();
  return 0;
}

void MethodHistograms(std::string *out, const ServerStats &s) {
  const char *name = "gaio_rpc_server_call_duration_seconds";
  Family(out, name, "histogram", "Time from a call's dispatch to its reply being queued.");
  for (const auto &m : s.methods()) {
    std::string method = "method=\"" + Label(m.method()) + "\"";
    const Histogram &h = m.latency();
    uint64_t cum = 0;
    for (int i = 0; i < h.bounds_us_size(); i++) {
      cum += i < h.counts_size() ? h.counts(i) : 0;
      Sample(out, std::string(name) + "_bucket", method + ",le=\"" + Seconds(h.bounds_us(i)) + "\"",
             U64(cum));
    }
    Sample(out, std::string(name) + "_bucket", method + ",le=\"+Inf\"", U64(h.count()));
    Sample(out, std::string(name) + "_sum", method, Seconds(h.sum_us()));
    Sample(out, std::string(name) + "_count", method, U64(h.count()));
  }
}

void MethodCounters(std::string *out, const ServerStats &s) {
  struct Col {
    const char *name, *type, *help;
    uint64_t (*get)(const gaio::admin::v1::MethodStats &);
  };
  static const Col cols[] = {
      {"gaio_rpc_server_calls_started_total", "counter", "Requests dispatched to the handler.",
       [](const gaio::admin::v1::MethodStats &m) { return m.started(); }},
      {"gaio_rpc_server_calls_in_flight", "gauge", "Calls started and not yet answered.",
       [](const gaio::admin::v1::MethodStats &m) { return m.in_flight(); }},
      {"gaio_rpc_server_request_bytes_total", "counter", "Request body bytes received.",
       [](const gaio::admin::v1::MethodStats &m) { return m.request_bytes(); }},
      {"gaio_rpc_server_response_bytes_total", "counter", "Response body bytes sent.",
       [](const gaio::admin::v1::MethodStats &m) { return m.response_bytes(); }},
  };
  for (const Col &c : cols) {
    Family(out, c.name, c.type, c.help);
    for (const auto &m : s.methods())
      Sample(out, c.name, "method=\"" + Label(m.method()) + "\"", U64(c.get(m)));
  }
  const char *done = "gaio_rpc_server_calls_completed_total";
  Family(out, done, "counter", "Calls completed, by status code.");
  for (const auto &m : s.methods())
    for (const auto &c : m.completed())
      Sample(out, done, "method=\"" + Label(m.method()) + "\",code=\"" + Label(c.name()) + "\"",
             U64(c.count()));
}

void Named(std::string *out, const char *name, const char *label, const char *help,
           const google::protobuf::RepeatedPtrField<gaio::admin::v1::Counter> &counters) {
  Family(out, name, "counter", help);
  for (const auto &c : counters)
    Sample(out, name, std::string(label) + "=\"" + Label(c.name()) + "\"", U64(c.value()));
}

void Loop(std::string *out, const gaio::admin::v1::LoopStats &l) {
  Single(out, "gaio_loop_polls_total", "counter", "Waits in the kernel.", U64(l.polls()));
  Single(out, "gaio_loop_idle_seconds_total", "counter", "Time blocked in those waits.",
         Seconds(l.idle_us()));
  Single(out, "gaio_loop_events_total", "counter", "Readiness events or CQEs returned.",
         U64(l.events()));
  Single(out, "gaio_loop_completions_total", "counter", "gaio results delivered.",
         U64(l.completions()));
  Single(out, "gaio_loop_reads_total", "counter", "Reads completed.", U64(l.reads()));
  Single(out, "gaio_loop_writes_total", "counter", "Writes completed.", U64(l.writes()));
  Single(out, "gaio_loop_read_bytes_total", "counter", "Bytes read.", U64(l.read_bytes()));
  Single(out, "gaio_loop_write_bytes_total", "counter", "Bytes written.", U64(l.write_bytes()));
}

// A table: the first row is the header; the first column left-aligned, the others right.
std::string Table(const std::vector<std::vector<std::string>> &rows) {
  std::vector<size_t> w;
  for (const auto &r : rows)
    for (size_t i = 0; i < r.size(); i++) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  std::string out;
  for (const auto &r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); i++) {
      std::string pad(w[i] - r[i].size(), ' ');
      line += i == 0 ? r[i] + pad : "  " + pad + r[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string Counters(const google::protobuf::RepeatedPtrField<gaio::admin::v1::Counter> &cs) {
  if (cs.empty()) return " none";
  std::string out;
  for (const auto &c : cs) out += " " + c.name() + " " + U64(c.value());
  return out;
}

}  // namespace

uint64_t Percentile(const Histogram &h, double q) {
  if (h.count() == 0) return 0;
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(h.count()));
  if (static_cast<double>(rank) < q * static_cast<double>(h.count())) rank++;  // ceil
  if (rank == 0) rank = 1;
  uint64_t cum = 0;
  for (int i = 0; i < h.counts_size(); i++) {
    cum += h.counts(i);
    if (cum < rank) continue;
    return i < h.bounds_us_size() ? std::min(h.bounds_us(i), h.max_us()) : h.max_us();
  }
  return h.max_us();
}

std::string StatsTable(const ServerStats &s) {
  std::string out;
  out += "backend " + s.backend() + ", " + U64(s.workers()) + " workers, up " +
         Seconds(s.uptime_us()) + " s\n";
  out += "connections: " + U64(s.connections_accepted()) + " accepted, " +
         U64(s.connections_open()) + " open; closed:" + Counters(s.connections_closed()) + "\n";
  out += "protocol errors:" + Counters(s.protocol_errors()) + "\n";
  out += "goaways sent " + U64(s.goaways_sent()) + ", calls refused " + U64(s.calls_refused()) +
         ", unknown methods " + U64(s.calls_unimplemented()) + "\n";
  for (const auto &l : s.listeners())
    out += "listener " + l.address() + ": " + U64(l.accepted()) + " accepted, " +
           U64(l.accept_errors()) + " accept errors\n";
  const auto &l = s.loop();
  out += "loop: " + U64(l.polls()) + " polls, " + Seconds(l.idle_us()) + " s idle, " +
         U64(l.events()) + " events, " + U64(l.completions()) + " completions, " +
         U64(l.reads()) + " reads (" + U64(l.read_bytes()) + " B), " + U64(l.writes()) +
         " writes (" + U64(l.write_bytes()) + " B)\n\n";
  std::vector<std::vector<std::string>> rows = {{"METHOD", "STARTED", "OK", "ERRORS", "IN_FLIGHT",
                                                 "REQ_BYTES", "RESP_BYTES", "P50_US", "P90_US",
                                                 "P99_US", "MAX_US"}};
  for (const auto &m : s.methods()) {
    const Histogram &h = m.latency();
    auto pct = [&](double q) { return h.count() ? U64(Percentile(h, q)) : std::string("-"); };
    rows.push_back({m.method(), U64(m.started()), U64(Ok(m)), U64(Errors(m)), U64(m.in_flight()),
                    U64(m.request_bytes()), U64(m.response_bytes()), pct(0.5), pct(0.9),
                    pct(0.99), h.count() ? U64(h.max_us()) : "-"});
  }
  return out + Table(rows);
}

std::string StatsPrometheus(const ServerStats &s) {
  std::string out;
  Family(&out, "gaio_rpc_server_info", "gauge", "The server's gaio backend and worker threads.");
  Sample(&out, "gaio_rpc_server_info",
         "backend=\"" + Label(s.backend()) + "\",workers=\"" + U64(s.workers()) + "\"", "1");
  Single(&out, "gaio_rpc_server_uptime_seconds", "gauge", "Time since the server was created.",
         Seconds(s.uptime_us()));
  Single(&out, "gaio_rpc_server_connections_accepted_total", "counter", "Connections accepted.",
         U64(s.connections_accepted()));
  Single(&out, "gaio_rpc_server_connections_open", "gauge", "Connections open.",
         U64(s.connections_open()));
  Named(&out, "gaio_rpc_server_connections_closed_total", "cause", "Connections closed, by cause.",
        s.connections_closed());
  Named(&out, "gaio_rpc_server_protocol_errors_total", "kind", "Protocol errors, by kind.",
        s.protocol_errors());
  Single(&out, "gaio_rpc_server_goaways_sent_total", "counter", "GOAWAY frames sent.",
         U64(s.goaways_sent()));
  Single(&out, "gaio_rpc_server_calls_refused_total", "counter",
         "Calls answered RESOURCE_EXHAUSTED by a calls limit.", U64(s.calls_refused()));
  Single(&out, "gaio_rpc_server_calls_unimplemented_total", "counter",
         "Requests naming an unknown method.", U64(s.calls_unimplemented()));
  MethodCounters(&out, s);
  MethodHistograms(&out, s);
  Family(&out, "gaio_rpc_listener_accepted_total", "counter", "Connections accepted, by listener.");
  for (const auto &l : s.listeners())
    Sample(&out, "gaio_rpc_listener_accepted_total", "address=\"" + Label(l.address()) + "\"",
           U64(l.accepted()));
  Family(&out, "gaio_rpc_listener_accept_errors_total", "counter", "Failed accepts, by listener.");
  for (const auto &l : s.listeners())
    Sample(&out, "gaio_rpc_listener_accept_errors_total",
           "address=\"" + Label(l.address()) + "\"", U64(l.accept_errors()));
  Loop(&out, s.loop());
  return out;
}

}  // namespace gaiorpc
