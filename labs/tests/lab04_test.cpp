// Lab 04 (epoll, edge-triggered): what is not drained is never reported again,
// so a burst of connections and a burst of bytes must each be taken in full;
// and one fast client must not keep the loop to itself.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

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
  Fd flood = connect_to(server.port());
  Fd quiet = connect_to(server.port());
  ASSERT_EQ(round_trip(quiet.get(), "ready"), "ready");
  // The flood keeps the server's reads busy; the quiet client's small
  // messages must still come back promptly, every one of them.
  const std::string block = pattern(64 * 1024, 3);
  std::size_t flooded = 0;
  for (int i = 0; i < 50; ++i) {
    for (int j = 0; j < 4; ++j) {
      const ssize_t n = ::send(flood.get(), block.data(), block.size(), MSG_DONTWAIT);
      if (n > 0) flooded += static_cast<std::size_t>(n);
      // Read back whatever came, so the flood is bounded by the server alone.
      char sink[64 * 1024];
      while (::recv(flood.get(), sink, sizeof sink, MSG_DONTWAIT) > 0) {
      }
    }
    ASSERT_EQ(round_trip(quiet.get(), "ping " + std::to_string(i), 2s), "ping " + std::to_string(i))
        << "after " << flooded << " flooded bytes";
  }
}

}  // namespace
}  // namespace muxlab::test
