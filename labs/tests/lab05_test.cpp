// Lab 05 (EPOLLONESHOT pool): slow requests on different connections are
// served at the same time, a connect burst is accepted in full, and a
// connection is served again after every message (it was re-armed).
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab05OneshotPool, SlowRequestsOnTwoConnectionsOverlap) {
  // Every read costs 1 s of blocking sleep (--block-us). A single thread
  // would need at least 2 s for the two requests; two workers need about 1 s.
  ServerProcess server(
      lab_launch({"--block-us", "1000000", "--min-threads", "2", "--max-threads", "8"}));
  Fd a = connect_to(server.port());
  Fd b = connect_to(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(send_all(a.get(), "request a", start + 5s));
  ASSERT_TRUE(send_all(b.get(), "request b", start + 5s));
  EXPECT_EQ(receive(a.get(), 9, start + 10s), "request a");
  EXPECT_EQ(receive(b.get(), 9, start + 10s), "request b");
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_LT(elapsed.count(), 1900) << "the two slow requests were served one after the other";
}

TEST(Lab05OneshotPool, ConnectionsQueuedTogetherAreAllAccepted) {
  ServerProcess server(lab_launch({"--min-threads", "2", "--max-threads", "8"}));
  std::vector<Fd> clients = connect_burst_while_stopped(server, 20);
  expect_all_echo(clients);
}

TEST(Lab05OneshotPool, EveryMessageOnAConnectionIsServed) {
  ServerProcess server(lab_launch({"--min-threads", "2", "--max-threads", "8"}));
  Fd client = connect_to(server.port());
  for (int i = 0; i < 50; ++i) {
    const std::string message = "message " + std::to_string(i);
    ASSERT_EQ(round_trip(client.get(), message), message) << "the connection stalled";
  }
}

}  // namespace
}  // namespace muxlab::test
