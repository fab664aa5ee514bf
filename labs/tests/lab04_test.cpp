// Lab 04 (epoll, edge-triggered): what is not drained is never reported again,
// so a burst of connections and a burst of bytes must each be taken in full;
// and one fast client must not keep the loop to itself.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

// A budgeted loop needs a few reads of 1 ms per turn of the flood; an
// unbudgeted one needs seconds (see docs/instructor/mistakes.md).
constexpr long kFairMedianUs = 250'000;

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
  // Every read costs 1 ms of CPU (--work-us), so the flooding client always
  // sends faster than the server reads, and the buffer cap is out of the way:
  // a drain loop without a budget never finds EAGAIN on the flood and never
  // gets to the quiet client. With a budget of a few reads per turn, the
  // quiet client waits a few milliseconds.
  ServerProcess server(lab_launch({"--work-us", "1000", "--buffer-cap", "67108864"}));
  const auto median = quiet_latency_beside_a_flood(server, 10);
  EXPECT_LT(median.count(), kFairMedianUs)
      << "a quiet client's median round trip beside a flooding one was " << median.count() / 1000
      << " ms with reads that cost 1 ms (a loop that limits each connection's turn answers in "
         "under "
      << kFairMedianUs / 1000 << " ms)";
}

TEST(Lab04EpollEt, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  expect_cheap_when_quiet();
}

TEST(Lab04EpollEt, OneRegistrationPerConnection) {
  // Edge-triggered: EPOLLIN | EPOLLOUT | EPOLLET once, never changed. An
  // epoll_ctl per event is a system call per message for nothing.
  expect_ctl_calls_within({}, 5, 100, 2L * 5 + 5, "edge-triggered needs one per connection");
}

}  // namespace
}  // namespace muxlab::test
