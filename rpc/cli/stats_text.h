// The admin service's ServerStats (rpc/admin.proto) as text: a table for people, and the
// Prometheus text exposition format (version 0.0.4) for scrapers. Used by `gaiorpc ADDR stats`.
#ifndef GAIO_RPC_CLI_STATS_TEXT_H
#define GAIO_RPC_CLI_STATS_TEXT_H

#include <cstdint>
#include <string>

#include "rpc/admin.pb.h"

namespace gaiorpc {

// The latency under which a fraction q (0 < q <= 1) of the histogram's calls fell: the upper
// bound of the bucket holding that rank, at most max_us (calls above the last bound: max_us).
// 0 when the histogram is empty.
uint64_t Percentile(const gaio::admin::v1::Histogram &h, double q);

// Server totals, then one row per method: calls started, OK, errors, in flight, bytes, and
// p50/p90/p99/max latency in microseconds ("-" when no call completed).
std::string StatsTable(const gaio::admin::v1::ServerStats &s);

// Every figure as a Prometheus metric with HELP and TYPE: counters end in _total, latency is a
// histogram in seconds (_bucket{le="..."} cumulative, then _sum and _count), labelled method=.
std::string StatsPrometheus(const gaio::admin::v1::ServerStats &s);

}  // namespace gaiorpc

#endif  // GAIO_RPC_CLI_STATS_TEXT_H
