// --max-connections' policy beside the table: the oldest connection still open
// makes room, whatever closed before it and in whatever order.
#include "eviction.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "connection_table.hpp"

namespace muxlab {
namespace {

struct Nothing {};  // the table only stores it; descriptor numbers are made up
using Table = ConnectionTable<Nothing>;

struct Fixture {
  explicit Fixture(std::size_t limit) : eviction(table, limit) {}
  std::uint64_t admit(int fd) {
    eviction.make_room();
    const std::uint64_t tag = table.insert(fd, std::make_unique<Nothing>());
    eviction.admitted(tag);
    return tag;
  }
  std::uint64_t evictions() const {
    std::map<std::string, std::uint64_t> stats;
    eviction.add_stats(stats);
    return stats["evictions"];
  }
  Tracer tracer{"test", false};
  Table table{tracer};
  OldestFirstEviction<Table> eviction;
};

TEST(OldestFirstEviction, SkipsConnectionsThatClosedOnTheirOwn) {
  Fixture f(3);
  const auto a = f.admit(5);
  const auto b = f.admit(6);
  const auto c = f.admit(7);
  f.table.close(5, "peer");  // the oldest leaves by itself: no eviction needed
  const auto d = f.admit(8);
  EXPECT_EQ(f.evictions(), 0u);
  const auto e = f.admit(5);  // full: 6 is now the oldest
  EXPECT_EQ(f.evictions(), 1u);
  EXPECT_EQ(f.table.find(a), nullptr);
  EXPECT_EQ(f.table.find(b), nullptr);
  EXPECT_NE(f.table.find(c), nullptr);
  EXPECT_NE(f.table.find(d), nullptr);
  EXPECT_NE(f.table.find(e), nullptr);
  EXPECT_EQ(f.table.size(), 3u);
}

TEST(OldestFirstEviction, ChurnBehindALongLivedConnectionDoesNotLoseItsPlace) {
  Fixture f(2);
  const auto old = f.admit(3);
  for (int i = 0; i < 1000; ++i) {  // enough to sweep the queue many times
    f.admit(4);
    f.table.close(4, "peer");
  }
  const auto second = f.admit(4);
  EXPECT_EQ(f.evictions(), 0u);
  f.admit(5);  // full: the long-lived one goes, not the newer one
  EXPECT_EQ(f.evictions(), 1u);
  EXPECT_EQ(f.table.find(old), nullptr);
  EXPECT_NE(f.table.find(second), nullptr);
}

TEST(OldestFirstEviction, NoLimitNeverEvicts) {
  Fixture f(0);
  for (int fd = 3; fd < 100; ++fd) f.admit(fd);
  EXPECT_EQ(f.evictions(), 0u);
  EXPECT_EQ(f.table.size(), 97u);
}

}  // namespace
}  // namespace muxlab
