#include "histogram.hpp"

#include <algorithm>
#include <bit>

namespace muxlab::bench {

namespace {

// The counters' layout, derived as HdrHistogram derives it. Counting in whole
// nanoseconds (unit 1 ns) keeps three significant digits already at 1 µs,
// where loopback round trips live.
constexpr int kUnitMagnitude = 0;
// 2 * 10^digits values must have single-unit resolution: 2000 -> 2^11.
constexpr int kSubBucketCountMagnitude = 11;
static_assert((1 << kSubBucketCountMagnitude) >= 2 * 1000, "three significant digits");
constexpr int kSubBucketHalfCountMagnitude = kSubBucketCountMagnitude - 1;
constexpr std::int64_t kSubBucketCount = std::int64_t{1} << kSubBucketCountMagnitude;
constexpr std::int64_t kSubBucketHalfCount = kSubBucketCount / 2;
constexpr std::uint64_t kSubBucketMask = static_cast<std::uint64_t>(kSubBucketCount - 1)
                                         << kUnitMagnitude;

constexpr int bucket_count() {
  std::int64_t smallest_untrackable = kSubBucketCount << kUnitMagnitude;
  int buckets = 1;
  while (smallest_untrackable <= LatencyHistogram::kHighestNs) {
    smallest_untrackable <<= 1;
    ++buckets;
  }
  return buckets;
}

constexpr std::size_t kCountsLength = static_cast<std::size_t>(bucket_count() + 1)
                                      << kSubBucketHalfCountMagnitude;

int bucket_of(std::int64_t ns) {
  const int pow2_ceiling = 64 - std::countl_zero(static_cast<std::uint64_t>(ns) | kSubBucketMask);
  return pow2_ceiling - kUnitMagnitude - (kSubBucketHalfCountMagnitude + 1);
}

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kCountsLength, 0) {}

std::size_t LatencyHistogram::index_of(std::int64_t ns) const {
  const int bucket = bucket_of(ns);
  const std::int64_t sub_bucket = ns >> (bucket + kUnitMagnitude);
  const std::int64_t base = static_cast<std::int64_t>(bucket + 1) << kSubBucketHalfCountMagnitude;
  return static_cast<std::size_t>(base + (sub_bucket - kSubBucketHalfCount));
}

std::int64_t LatencyHistogram::value_at_index(std::size_t index) {
  int bucket = static_cast<int>(index >> kSubBucketHalfCountMagnitude) - 1;
  std::int64_t sub_bucket =
      static_cast<std::int64_t>(index & static_cast<std::size_t>(kSubBucketHalfCount - 1)) +
      kSubBucketHalfCount;
  if (bucket < 0) {
    sub_bucket -= kSubBucketHalfCount;
    bucket = 0;
  }
  return sub_bucket << (bucket + kUnitMagnitude);
}

void LatencyHistogram::record(std::int64_t ns) {
  ns = std::max<std::int64_t>(ns, 0);
  if (ns > kHighestNs) {
    ns = kHighestNs;
    ++clamped_;
  }
  ++counts_[index_of(ns)];
  min_ = total_ == 0 ? ns : std::min(min_, ns);
  max_ = std::max(max_, ns);
  sum_ += static_cast<long double>(ns);
  ++total_;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  if (other.total_ == 0) return;
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = total_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
  total_ += other.total_;
  clamped_ += other.clamped_;
}

void LatencyHistogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = clamped_ = 0;
  min_ = max_ = 0;
  sum_ = 0;
}

double LatencyHistogram::mean() const {
  return total_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(total_));
}

std::int64_t LatencyHistogram::lowest_equivalent(std::int64_t ns) const {
  return value_at_index(index_of(std::clamp<std::int64_t>(ns, 0, kHighestNs)));
}

std::int64_t LatencyHistogram::highest_equivalent(std::int64_t ns) const {
  const std::int64_t low = lowest_equivalent(ns);
  const int bucket = bucket_of(low);
  return low + (std::int64_t{1} << (bucket + kUnitMagnitude)) - 1;
}

std::int64_t LatencyHistogram::value_at_percentile(double percentile) const {
  if (total_ == 0) return 0;
  const double wanted = std::clamp(percentile, 0.0, 100.0) / 100.0 * static_cast<double>(total_);
  const std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted + 0.5));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(highest_equivalent(value_at_index(i)), max_);
  }
  return max_;
}

std::vector<std::pair<std::int64_t, std::uint64_t>> LatencyHistogram::nonzero_buckets() const {
  std::vector<std::pair<std::int64_t, std::uint64_t>> out;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] != 0) out.emplace_back(value_at_index(i), counts_[i]);
  }
  return out;
}

}  // namespace muxlab::bench
