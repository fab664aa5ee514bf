// The latency histogram keeps three significant digits from 1 µs to 10 s,
// merges exactly, and never reports a percentile below the truth.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "histogram.hpp"

namespace muxlab::bench {
namespace {

TEST(LatencyHistogram, EmptyReportsZeros) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.value_at_percentile(99), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(LatencyHistogram, ThreeSignificantDigitsAcrossTheRange) {
  LatencyHistogram h;
  for (std::int64_t v = LatencyHistogram::kLowestNs; v <= LatencyHistogram::kHighestNs;
       v = v * 7 / 5 + 13) {
    const std::int64_t low = h.lowest_equivalent(v);
    const std::int64_t high = h.highest_equivalent(v);
    ASSERT_LE(low, v);
    ASSERT_GE(high, v);
    // The bucket's width is at most a thousandth of the value it holds.
    ASSERT_LE(static_cast<double>(high - low + 1), static_cast<double>(v) / 1000.0 + 1.0) << v;
  }
}

TEST(LatencyHistogram, PercentilesOfAUniformSpread) {
  LatencyHistogram h;
  for (std::int64_t us = 1; us <= 10'000; ++us) h.record(us * 1000);
  EXPECT_EQ(h.count(), 10'000u);
  EXPECT_NEAR(static_cast<double>(h.value_at_percentile(50)), 5'000'000.0, 5'000.0);
  EXPECT_NEAR(static_cast<double>(h.value_at_percentile(99)), 9'900'000.0, 9'900.0);
  EXPECT_NEAR(static_cast<double>(h.value_at_percentile(99.9)), 9'990'000.0, 9'990.0);
  EXPECT_EQ(h.value_at_percentile(100), 10'000'000);
  EXPECT_EQ(h.max(), 10'000'000);
  EXPECT_EQ(h.min(), 1'000);
  EXPECT_NEAR(h.mean(), 5'000'500.0, 1.0);
}

TEST(LatencyHistogram, APercentileIsNeverBelowTheValueItStandsFor) {
  LatencyHistogram h;
  h.record(123'456);
  EXPECT_GE(h.value_at_percentile(50), 123'456);
  EXPECT_LE(h.value_at_percentile(50), 123'456 + 123);
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 random(7);
  std::lognormal_distribution<double> latency(10.0, 1.5);  // around 20 µs, long tail
  LatencyHistogram a, b, all;
  for (int i = 0; i < 100'000; ++i) {
    const auto v = static_cast<std::int64_t>(latency(random));
    (i % 3 == 0 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99}) {
    EXPECT_EQ(a.value_at_percentile(p), all.value_at_percentile(p)) << p;
  }
  EXPECT_EQ(a.nonzero_buckets(), all.nonzero_buckets());
}

TEST(LatencyHistogram, ClampsWhatIsOutOfRange) {
  LatencyHistogram h;
  h.record(-5);
  h.record(LatencyHistogram::kHighestNs * 3);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.clamped(), 1u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), LatencyHistogram::kHighestNs);
}

}  // namespace
}  // namespace muxlab::bench
