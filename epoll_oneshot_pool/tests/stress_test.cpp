// Many clients against a pool that grows and shrinks, then a stop in the middle
// of the load. Meant for the ThreadSanitizer and AddressSanitizer builds: the
// server must exit 0 with no report, and every echo must be exact.
#include <sys/socket.h>

#include <atomic>
#include <mutex>

#include "pool_support.hpp"

namespace muxlab::test {
namespace {

// Client threads doing blocking round trips, each checking its echo. Every few
// rounds a client leaves (every other time with a reset) and reconnects, so
// accepts and closes run alongside the echo traffic.
class Load {
 public:
  Load(std::uint16_t port, int clients, int rounds) {
    for (int i = 0; i < clients; ++i) {
      threads_.emplace_back([this, port, i, rounds] { client(port, i, rounds); });
    }
  }
  ~Load() { join(); }

  void join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // From now on a connection that ends is expected, not a failure.
  void server_stopping() { stopping_ = true; }
  int round_trips() const { return round_trips_.load(); }
  std::string failures() {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  static constexpr int kRoundsPerConnection = 7;

  void client(std::uint16_t port, int id, int rounds) {
    try {
      Fd fd = connect_to(port);
      for (int round = 0; round < rounds; ++round) {
        if (round > 0 && round % kRoundsPerConnection == 0) {
          if (round % (2 * kRoundsPerConnection) == 0) {
            linger hard{1, 0};  // close() now sends a reset
            ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
          }
          fd = connect_to(port);
        }
        const auto salt = static_cast<std::uint32_t>(id * 100003 + round);
        const std::string message = pattern(1 + (salt * 7919u) % 6000, salt);
        const std::string echo = round_trip(fd.get(), message, 20s);
        if (echo != message) {
          // A stop may cut an echo short, but never change or reorder a byte.
          if (!stopping_ || message.compare(0, echo.size(), echo) != 0) {
            fail("client " + std::to_string(id) + " round " + std::to_string(round) + ": got " +
                 std::to_string(echo.size()) + " of " + std::to_string(message.size()) + " bytes" +
                 (stopping_ ? ", not a prefix" : ""));
          }
          return;
        }
        ++round_trips_;
      }
    } catch (const std::exception& e) {
      // connect() is refused once the server is gone.
      if (!stopping_) fail(e.what());
    }
  }

  void fail(const std::string& what) {
    std::lock_guard lock(mutex_);
    failures_ += what + "\n";
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> round_trips_{0};
  std::mutex mutex_;
  std::string failures_;
};

class StressPool : public PoolTest {};

TEST_F(StressPool, ManyClientsGrowShrinkAndStopMidLoad) {
  // 2 ms of blocking per request makes 24 clients need many workers; 100 ms
  // without an event retires them again.
  start({"--min-threads", "1", "--max-threads", "8", "--idle-timeout-ms", "100", "--block-us",
         "2000", "--work-us", "50", "--trace"});
  constexpr int kClients = 24;
  const auto grows = [&] { return count_of(server().stderr_text(), "starting one more"); };
  const auto shrinks = [&] { return count_of(server().stderr_text(), "retiring"); };

  // Phase 1: a bounded load; the pool grows.
  {
    Load load(server().port(), kClients, 30);
    load.join();
    ASSERT_EQ(load.failures(), "");
    EXPECT_EQ(load.round_trips(), kClients * 30);
  }
  EXPECT_GE(grows(), 3u) << "the pool never grew";

  // Phase 2: idle; every worker above the minimum retires.
  ASSERT_TRUE(wait_until([&] { return shrinks() == grows(); }, Clock::now() + 30s))
      << "grew " << grows() << " times, shrank " << shrinks() << " times";
  const std::size_t grown_before = grows();

  // Phase 3: load again, and SIGTERM while it runs.
  Load load(server().port(), kClients, 400);
  ASSERT_TRUE(wait_until([&] { return load.round_trips() >= 300; }, Clock::now() + 60s))
      << load.failures();
  EXPECT_GT(grows(), grown_before) << "the pool did not grow again";
  load.server_stopping();
  const auto stats = stop();
  load.join();
  EXPECT_EQ(load.failures(), "");

  EXPECT_EQ(stats.value("max_workers_per_connection", 0), 1);
  EXPECT_EQ(stats.value("max_workers_in_accept", 0), 1);
  EXPECT_LE(stats.value("threads_peak", 99), 8);
  EXPECT_GE(stats.value("pool_shrinks", 0), 3);
  EXPECT_LE(stats.value("bytes_out", 1), stats.value("bytes_in", 0));
}

}  // namespace
}  // namespace muxlab::test
