// Lab 02 (poll): POLLRDHUP must not cost the bytes that came with the FIN, and
// slots of closed connections are reused instead of growing the array.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab02Poll, DataArrivingTogetherWithTheFinIsEchoedInFull) {
  ServerProcess server(lab_launch());
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "hi"), "hi");
  // TCP_CORK holds the data back; shutdown() then sends it with the FIN flag
  // set on the same segment, so the server's next poll() reports POLLIN and
  // POLLRDHUP together, every time.
  const int one = 1;
  ASSERT_EQ(::setsockopt(client.get(), IPPROTO_TCP, TCP_CORK, &one, sizeof one), 0);
  const std::string last_words = pattern(3000, 4);
  ASSERT_EQ(::send(client.get(), last_words.data(), last_words.size(), 0),
            static_cast<ssize_t>(last_words.size()));
  ::shutdown(client.get(), SHUT_WR);
  std::string echoed;
  const Ending ending = wait_for_end(client.get(), Clock::now() + 5s, &echoed);
  EXPECT_TRUE(echoed == last_words) << "got " << echoed.size() << " of " << last_words.size();
  EXPECT_EQ(ending, Ending::kEof) << "the server should close after echoing, with a FIN";
}

TEST(Lab02Poll, ClosedSlotsAreReused) {
  ServerProcess server(lab_launch());
  const int baseline = server.open_fd_count();
  for (int i = 0; i < 300; ++i) {
    Fd client = connect_to(server.port());
    ASSERT_EQ(round_trip(client.get(), "x"), "x") << "connection " << i;
    ::shutdown(client.get(), SHUT_WR);
    ASSERT_EQ(wait_for_end(client.get(), Clock::now() + 5s), Ending::kEof) << "connection " << i;
  }
  EXPECT_LE(server.open_fd_count(), baseline + 1) << "descriptors leak";
  Fd last = connect_to(server.port());
  EXPECT_EQ(round_trip(last.get(), "still here"), "still here");
}

TEST(Lab02Poll, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  // POLLIN asked for while the buffer is full, or after the FIN, is reported
  // on every call: poll returns at once, forever.
  expect_cheap_when_quiet();
}

}  // namespace
}  // namespace muxlab::test
