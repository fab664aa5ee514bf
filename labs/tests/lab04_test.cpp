// Lab 04 (epoll, edge-triggered): what is not drained is never reported again,
// so a burst of connections and a burst of bytes must each be taken in full;
// and one fast client must not keep the loop to itself.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

// Calibrated on a loaded two-core machine (see docs/instructor/mistakes.md).
constexpr long kFairMedianUs = 5000;

TEST(Lab04EpollEt, ConnectionsQueuedTogetherAreAllAccepted) {
  ServerProcess server(lab_launch());
  std::vector<Fd> clients = connect_burst_while_stopped(server, 20);
  expect_all_echo(clients);
}

TEST(Lab04EpollEt, BytesQueuedWhileTheServerSleptAreAllEchoed) {
  ServerProcess server(lab_launch());
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "wake"), "wake");
  // Several read chunks' worth arrive while the server is stopped: it will
  // get a single edge for all of them.
  const std::string burst = pattern(100 * 1024, 7);
  ::kill(server.pid(), SIGSTOP);
  const bool sent = send_all(client.get(), burst, Clock::now() + 5s);
  ::kill(server.pid(), SIGCONT);
  ASSERT_TRUE(sent);
  const std::string echoed = receive(client.get(), burst.size(), Clock::now() + 5s);
  EXPECT_TRUE(echoed == burst) << "got " << echoed.size() << " of " << burst.size() << " bytes";
}

TEST(Lab04EpollEt, AFloodingClientDoesNotStarveAQuietOne) {
  ServerProcess server(lab_launch());
  // The median over 40 pings: a budgeted loop answers within a turn of the
  // flood (well under a millisecond on an idle machine); one that drains the
  // flood to EAGAIN first makes the quiet client wait tens of milliseconds.
  const auto median = quiet_latency_beside_a_flood(server, 40);
  EXPECT_LT(median.count(), kFairMedianUs)
      << "a quiet client's median round trip beside a flooding one was "
      << static_cast<double>(median.count()) / 1000.0
      << " ms (a loop that limits each connection's turn answers in under " << kFairMedianUs / 1000
      << " ms)";
}

TEST(Lab04EpollEt, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  expect_cheap_when_quiet();
}

TEST(Lab04EpollEt, OneRegistrationPerConnection) {
  // Edge-triggered: EPOLLIN | EPOLLOUT | EPOLLET once, never changed. An
  // epoll_ctl per event is a system call per message for nothing.
  const std::string stats = temp_path("lab04-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  constexpr int kClients = 5;
  constexpr int kMessages = 100;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_to(server.port()));
  for (int i = 0; i < kMessages; ++i) {
    for (auto& client : clients) ASSERT_EQ(round_trip(client.get(), "message"), "message");
  }
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  ::unlink(stats.c_str());
  const long ctl = json.value("ctl_calls", 0L);
  const long budget = 2L * kClients + 5;
  EXPECT_LE(ctl, budget) << "epoll_ctl was called " << ctl << " times for " << kClients
                         << " connections and " << kClients * kMessages
                         << " messages (edge-triggered needs one per connection; budget " << budget
                         << ")";
}

}  // namespace
}  // namespace muxlab::test
