#include "byte_queue.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace muxlab {
namespace {

void push(ByteQueue& q, const std::string& text) {
  auto space = q.reserve(text.size());
  ASSERT_GE(space.size(), text.size());
  std::memcpy(space.data(), text.data(), text.size());
  q.commit(text.size());
}

std::string contents(const ByteQueue& q) {
  return {q.readable().data(), q.readable().size()};
}

TEST(ByteQueue, KeepsOrderAcrossGrowthAndCompaction) {
  ByteQueue q;
  std::string expected;
  for (int i = 0; i < 2000; ++i) {
    const std::string piece = std::to_string(i) + ",";
    push(q, piece);
    expected += piece;
    if (i % 3 == 0) {
      q.consume(2);
      expected.erase(0, 2);
    }
  }
  EXPECT_EQ(contents(q), expected);
}

TEST(ByteQueue, ReleasesLargeBuffersWhenEmptied) {
  ByteQueue q;
  push(q, std::string(1 << 20, 'x'));
  EXPECT_GE(q.capacity(), 1u << 20);
  q.consume(1 << 20);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.capacity(), 0u);
}

TEST(ByteQueue, ConsumeMoreThanHeldEmptiesIt) {
  ByteQueue q;
  push(q, "abc");
  q.consume(10);
  EXPECT_TRUE(q.empty());
  push(q, "de");
  EXPECT_EQ(contents(q), "de");
}

}  // namespace
}  // namespace muxlab
