// Payload: the bytes the generator sends, chosen so that every echoed byte can
// be checked without remembering what was sent.
//
// Byte i of a stream is kPattern[(phase + i) mod kPeriod], where each stream
// (connection, or churn operation) has its own phase. The period is a prime
// just above 1 MiB, so a lost, doubled or reordered chunk compares equal only
// if its length is an exact multiple of it. The buffer holds one period plus
// one extra window, so any window of up to kMaxWindow bytes is contiguous and
// can be handed to send() or memcmp() as it is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace muxlab::bench {

class Payload {
 public:
  static constexpr std::size_t kPeriod = 1'048'573;  // prime
  static constexpr std::size_t kMaxWindow = 256 * 1024;

  static const Payload& instance();
  static std::uint64_t phase_for(std::uint64_t stream_id);

  // The stream's bytes [offset, offset + length), length <= kMaxWindow.
  std::span<const char> window(std::uint64_t phase, std::uint64_t offset, std::size_t length) const;
  bool matches(std::uint64_t phase, std::uint64_t offset, std::span<const char> received) const;

 private:
  Payload();
  std::unique_ptr<char[]> bytes_;
};

}  // namespace muxlab::bench
