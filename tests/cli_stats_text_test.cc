// Percentiles of the admin service's histograms as gaiorpc's stats table derives them
// (rpc/cli/stats_text.h): the upper bound of the bucket holding the rank, capped at max_us.
#include "gtest/gtest.h"
#include "rpc/cli/stats_text.h"

namespace {

gaio::admin::v1::Histogram Make(std::initializer_list<uint64_t> bounds,
                                std::initializer_list<uint64_t> counts, uint64_t max_us) {
  gaio::admin::v1::Histogram h;
  uint64_t n = 0;
  for (uint64_t b : bounds) h.add_bounds_us(b);
  for (uint64_t c : counts) {
    h.add_counts(c);
    n += c;
  }
  h.set_count(n);
  h.set_max_us(max_us);
  return h;
}

TEST(CliStatsText, PercentileIsTheBucketBoundCappedAtMax) {
  auto h = Make({100, 200, 500}, {1, 2, 1, 0}, 450);
  EXPECT_EQ(100u, gaiorpc::Percentile(h, 0.25));
  EXPECT_EQ(200u, gaiorpc::Percentile(h, 0.5));
  EXPECT_EQ(200u, gaiorpc::Percentile(h, 0.75));
  EXPECT_EQ(450u, gaiorpc::Percentile(h, 0.9));  // bucket (200, 500], but max is 450
  EXPECT_EQ(450u, gaiorpc::Percentile(h, 1.0));
}

TEST(CliStatsText, CallsAboveTheLastBoundGiveMax) {
  auto h = Make({100}, {1, 3}, 98765);
  EXPECT_EQ(100u, gaiorpc::Percentile(h, 0.25));
  EXPECT_EQ(98765u, gaiorpc::Percentile(h, 0.5));
  EXPECT_EQ(98765u, gaiorpc::Percentile(h, 0.99));
}

TEST(CliStatsText, EmptyHistogramGivesZero) {
  EXPECT_EQ(0u, gaiorpc::Percentile(Make({100}, {0, 0}, 0), 0.5));
  EXPECT_EQ(0u, gaiorpc::Percentile(gaio::admin::v1::Histogram(), 0.99));
}

TEST(CliStatsText, PrometheusLabelValuesAreEscaped) {
  gaio::admin::v1::ServerStats s;
  auto *l = s.add_listeners();
  l->set_address("unix:/tmp/a\"b\\c\nd");
  std::string out = gaiorpc::StatsPrometheus(s);
  EXPECT_NE(std::string::npos,
            out.find("gaio_rpc_listener_accepted_total{address=\"unix:/tmp/a\\\"b\\\\c\\nd\"} 0\n"))
      << out;
}

}  // namespace
