// The payload pattern lets the generator check echoes without keeping copies:
// the right bytes match, shifted or altered ones do not.
#include <gtest/gtest.h>

#include <string>

#include "payload.hpp"

namespace muxlab::bench {
namespace {

TEST(Payload, WindowsAreContiguousAcrossThePeriod) {
  const Payload& p = Payload::instance();
  const std::uint64_t phase = Payload::phase_for(3);
  const std::uint64_t near_end = Payload::kPeriod - phase - 10;
  const auto window = p.window(phase, near_end, 100);
  ASSERT_EQ(window.size(), 100u);
  // The bytes after the wrap are the period's first bytes again.
  EXPECT_EQ(window[10], p.window(0, 0, 1)[0]);
  EXPECT_EQ(p.window(phase, 0, Payload::kMaxWindow * 2).size(), Payload::kMaxWindow);
}

TEST(Payload, TheEchoOfWhatWasSentMatches) {
  const Payload& p = Payload::instance();
  const std::uint64_t phase = Payload::phase_for(42);
  std::string sent;
  for (std::uint64_t offset = 0; offset < 3 * Payload::kMaxWindow; offset += 1000) {
    const auto w = p.window(phase, offset, 1000);
    sent.append(w.data(), w.size());
  }
  EXPECT_TRUE(p.matches(phase, 0, {sent.data(), sent.size()}));
  EXPECT_TRUE(p.matches(phase, 5000, {sent.data() + 5000, 777}));
}

TEST(Payload, ShiftedDroppedOrAlteredBytesDoNotMatch) {
  const Payload& p = Payload::instance();
  const std::uint64_t phase = Payload::phase_for(1);
  const auto w = p.window(phase, 0, 4096);
  std::string sent(w.data(), w.size());
  EXPECT_FALSE(p.matches(phase, 1, {sent.data(), 64}));                  // one byte late
  EXPECT_FALSE(p.matches(phase, 0, {sent.data() + 1, 64}));              // one byte lost
  EXPECT_FALSE(p.matches(Payload::phase_for(2), 0, {sent.data(), 64}));  // another stream
  sent[100] ^= 1;
  EXPECT_FALSE(p.matches(phase, 0, {sent.data(), sent.size()}));
}

}  // namespace
}  // namespace muxlab::bench
