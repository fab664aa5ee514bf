// LatencyHistogram: the HdrHistogram layout, written out small enough to read.
//
// Values are nanoseconds. The range is split into power-of-two buckets, and
// each bucket into the same number of linear sub-buckets, so the relative error
// is the same everywhere: with 2048 sub-buckets it is below 1/1000, i.e. three
// significant digits, for every value from 1 µs to 10 s, in 200 KiB of
// counters. Recording is one bit scan and one increment; the histograms of
// several threads merge by adding their counters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace muxlab::bench {

class LatencyHistogram {
 public:
  static constexpr std::int64_t kLowestNs = 1'000;              // 1 µs
  static constexpr std::int64_t kHighestNs = 10'000'000'000LL;  // 10 s
  static constexpr int kSignificantDigits = 3;

  LatencyHistogram();

  // Values above kHighestNs are recorded as kHighestNs and counted in clamped().
  void record(std::int64_t ns);
  void merge(const LatencyHistogram& other);
  void reset();

  std::uint64_t count() const { return total_; }
  std::uint64_t clamped() const { return clamped_; }
  std::int64_t min() const { return total_ == 0 ? 0 : min_; }
  std::int64_t max() const { return max_; }
  double mean() const;

  // The value below which `percentile` % of the recordings fall, reported as
  // the top of its sub-bucket (never above the exact maximum), as
  // HdrHistogram does: a percentile is never flattered by the bucketing.
  std::int64_t value_at_percentile(double percentile) const;

  // Every value in [lowest_equivalent(v), highest_equivalent(v)] shares v's counter.
  std::int64_t lowest_equivalent(std::int64_t ns) const;
  std::int64_t highest_equivalent(std::int64_t ns) const;

  // (lowest value of the sub-bucket, count) for every counter that is not zero.
  std::vector<std::pair<std::int64_t, std::uint64_t>> nonzero_buckets() const;

 private:
  std::size_t index_of(std::int64_t ns) const;
  static std::int64_t value_at_index(std::size_t index);

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t clamped_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace muxlab::bench
