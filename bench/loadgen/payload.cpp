#include "payload.hpp"

#include <algorithm>
#include <cstring>

namespace muxlab::bench {

Payload::Payload() : bytes_(new char[kPeriod + kMaxWindow]) {
  // xorshift64*: cheap, and neighbouring bytes differ, so a one-byte shift shows.
  std::uint64_t state = 0x9E3779B97F4A7C15ULL;
  for (std::size_t i = 0; i < kPeriod; ++i) {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    bytes_[i] = static_cast<char>((state * 0x2545F4914F6CDD1DULL) >> 56);
  }
  std::copy_n(bytes_.get(), kMaxWindow, bytes_.get() + kPeriod);
}

const Payload& Payload::instance() {
  static const Payload payload;
  return payload;
}

std::uint64_t Payload::phase_for(std::uint64_t stream_id) {
  // A large odd step scatters consecutive streams across the period.
  return (stream_id * 40'503ULL) % kPeriod;
}

std::span<const char> Payload::window(std::uint64_t phase, std::uint64_t offset,
                                      std::size_t length) const {
  const std::size_t start = static_cast<std::size_t>((phase + offset) % kPeriod);
  return {bytes_.get() + start, std::min(length, kMaxWindow)};
}

bool Payload::matches(std::uint64_t phase, std::uint64_t offset,
                      std::span<const char> received) const {
  while (!received.empty()) {
    const auto expected = window(phase, offset, received.size());
    if (std::memcmp(expected.data(), received.data(), expected.size()) != 0) return false;
    offset += expected.size();
    received = received.subspan(expected.size());
  }
  return true;
}

}  // namespace muxlab::bench
