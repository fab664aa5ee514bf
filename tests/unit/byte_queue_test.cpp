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

// io_uring_server hands a finished send's queue on to the next send: the
// queue left behind must be empty and safe to fill again.
TEST(ByteQueue, AMovedFromQueueIsEmptyAndCanBeFilledAgain) {
  ByteQueue first;
  push(first, std::string(20000, 'a'));
  ByteQueue second(std::move(first));
  EXPECT_EQ(contents(second), std::string(20000, 'a'));
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(first.capacity(), 0u);
  push(first, "again");
  EXPECT_EQ(contents(first), "again");
  ByteQueue third;
  third = std::move(second);
  EXPECT_EQ(second.capacity(), 0u);
  push(second, "and again");
  EXPECT_EQ(contents(second), "and again");
  EXPECT_EQ(third.size(), 20000u);
}

}  // namespace
}  // namespace muxlab
