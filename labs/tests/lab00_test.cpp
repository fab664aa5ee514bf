// Lab 00: the lifecycle half of the contract. The server sleeps until SIGTERM
// or SIGINT, then writes its stats and exits 0.
#include <signal.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab00Setup, SleepsUntilSignalledThenExitsZero) {
  ServerProcess server(lab_launch({"--trace"}));
  // A loop that waits properly goes to sleep in the kernel and stays there;
  // one that returns at once is gone, one that spins is always running.
  bool asleep = false;
  for (const auto deadline = Clock::now() + 5s; Clock::now() < deadline && !asleep;) {
    asleep = main_thread_state(server.pid()).state == 'S';
    if (!asleep) {
      pollfd none{-1, 0, 0};
      ::poll(&none, 1, 10);
    }
  }
  EXPECT_TRUE(asleep) << "the server never went to sleep waiting for its signal";
  ASSERT_TRUE(server.running()) << "the server exited before it was asked to";
  EXPECT_LT(server.cpu_seconds(), 0.5) << "the server burns CPU while it waits";
  const ExitStatus status = server.stop(SIGTERM);
  ASSERT_TRUE(status.exited) << "still running 10 s after SIGTERM";
  EXPECT_EQ(status.code, 0) << server.stderr_text();
}

TEST(Lab00Setup, StatsFileHasEveryCounterOfTheContract) {
  const std::string stats = temp_path("lab00-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  ASSERT_EQ(server.stop(SIGINT).code, 0) << server.stderr_text();
  const auto json = read_json(stats);
  for (const char* key : {"server", "wakeups", "events", "accepts", "reads", "writes", "ctl_calls",
                          "bytes_in", "bytes_out", "connections_total", "connections_peak"}) {
    EXPECT_TRUE(json.contains(key)) << "stats file lacks " << key;
  }
  ::unlink(stats.c_str());
}

}  // namespace
}  // namespace muxlab::test
