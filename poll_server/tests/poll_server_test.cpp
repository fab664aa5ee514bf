// poll_server's own behaviour: data and POLLRDHUP reported together, and the
// rdhup-before-in pitfall that loses the data.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include "client.hpp"
#include "process.hpp"

namespace muxlab::test {
namespace {

struct LastWords {
  std::string echoed;
  Ending ending;
};

// Sends `payload` and the FIN in the same TCP segment, so the server's next
// poll() sees POLLIN and POLLRDHUP in one revents, every time. With TCP_CORK
// the data waits in the send queue and shutdown() sets FIN on that last
// segment instead of sending a separate one.
LastWords send_with_fin(ServerProcess& server, const std::string& payload) {
  Fd client = connect_to(server.port());
  // The connection is accepted and watched before the segment leaves.
  EXPECT_EQ(round_trip(client.get(), "hi"), "hi");
  const int one = 1;
  ::setsockopt(client.get(), IPPROTO_TCP, TCP_CORK, &one, sizeof one);
  EXPECT_EQ(::send(client.get(), payload.data(), payload.size(), 0),
            static_cast<ssize_t>(payload.size()));
  ::shutdown(client.get(), SHUT_WR);
  LastWords result;
  result.ending = wait_for_end(client.get(), Clock::now() + 5s, &result.echoed);
  return result;
}

TEST(PollServer, DataArrivingWithTheFinIsEchoedInFull) {
  ServerProcess server({POLL_SERVER_PATH, {"--trace"}, std::nullopt});
  const std::string payload = pattern(1000, 9);
  const LastWords result = send_with_fin(server, payload);
  EXPECT_EQ(result.ending, Ending::kEof);
  EXPECT_TRUE(result.echoed == payload) << "got " << result.echoed.size() << " of 1000 bytes";
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  EXPECT_NE(server.stderr_text().find("POLLIN|POLLRDHUP"), std::string::npos)
      << "data and FIN were not reported together:\n"
      << server.stderr_text();
}

TEST(PitfallRdhupBeforeIn, BytesSentBeforeTheFinAreLost) {
  ServerProcess server({POLL_SERVER_PATH, {"--pitfall", "rdhup-before-in"}, std::nullopt});
  const std::string payload = pattern(1000, 9);
  const LastWords result = send_with_fin(server, payload);
  EXPECT_LT(result.echoed.size(), payload.size()) << "the pitfall echoed everything";
  EXPECT_NE(result.ending, Ending::kOpen);
}

TEST(PitfallRdhupBeforeIn, DefaultModeLosesNothing) {
  ServerProcess server({POLL_SERVER_PATH, {}, std::nullopt});
  const std::string payload = pattern(1000, 9);
  const LastWords result = send_with_fin(server, payload);
  EXPECT_TRUE(result.echoed == payload);
  EXPECT_EQ(result.ending, Ending::kEof);
}

}  // namespace
}  // namespace muxlab::test
