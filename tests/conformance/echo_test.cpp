// Every byte comes back, in order, whatever the sizes and the timing.
#include <sys/socket.h>

#include "fixture.hpp"

namespace muxlab::test {
namespace {

class EchoTest : public ServerTest {};

TEST_P(EchoTest, SmallMessage) {
  start();
  Fd client = connect_to(server().port());
  EXPECT_EQ(round_trip(client.get(), "hello, muxlab\n"), "hello, muxlab\n");
}

TEST_P(EchoTest, OneByteAtATime) {
  start();
  Fd client = connect_to(server().port());
  const std::string text = pattern(300, 7);
  for (char byte : text) {
    ASSERT_EQ(round_trip(client.get(), std::string(1, byte)), std::string(1, byte));
  }
}

TEST_P(EchoTest, SixteenMebibytesFullDuplex) {
  start();
  Fd client = connect_to(server().port());
  const std::string payload = pattern(16 << 20, 3);
  const auto result = pump(client.get(), payload, payload.size(), Clock::now() + 60s);
  ASSERT_EQ(result.received.size(), payload.size());
  EXPECT_TRUE(result.received == payload) << "the echo differs from what was sent";
}

TEST_P(EchoTest, FiveThousandPipelinedMessages) {
  start();
  Fd client = connect_to(server().port());
  std::string stream;
  for (int i = 0; i < 5000; ++i) {
    stream +=
        "message " + std::to_string(i) + " " + pattern(static_cast<std::size_t>(i % 97), i) + "\n";
  }
  // Small sends: the server sees many messages per read and partial ones at the edges.
  const auto result = pump(client.get(), stream, stream.size(), Clock::now() + 30s, 1500);
  ASSERT_EQ(result.received.size(), stream.size());
  EXPECT_TRUE(result.received == stream);
}

TEST_P(EchoTest, ManyConcurrentClients) {
  start();
  const int count = std::min(GetParam().max_clients, 1000);
  std::vector<Fd> clients;
  for (int i = 0; i < count; ++i) clients.push_back(connect_to(server().port()));
  // Every client sends before any reads, so the server holds them all at once.
  const auto deadline = Clock::now() + 30s;
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(send_all(clients[i].get(), "client " + std::to_string(i) + ";", deadline));
  }
  for (int i = 0; i < count; ++i) {
    const std::string expected = "client " + std::to_string(i) + ";";
    ASSERT_EQ(receive(clients[i].get(), expected.size(), deadline), expected) << "client " << i;
  }
}

TEST_P(EchoTest, HalfCloseStillEchoesEverythingThenCloses) {
  start();
  Fd client = connect_to(server().port());
  const std::string payload = pattern(1 << 20, 11);
  // FIN right behind the data: the server must echo all of it, then close.
  const auto result = pump(client.get(), payload, payload.size(), Clock::now() + 30s, 64 * 1024,
                           /*shutdown_after_send=*/true);
  EXPECT_EQ(result.received.size(), payload.size());
  EXPECT_TRUE(result.received == payload);
  EXPECT_EQ(result.ending, Ending::kEof);
}

TEST_P(EchoTest, FinWithoutDataIsClosedCleanly) {
  start();
  Fd client = connect_to(server().port());
  ::shutdown(client.get(), SHUT_WR);
  std::string tail;
  EXPECT_EQ(wait_for_end(client.get(), Clock::now() + 5s, &tail), Ending::kEof);
  EXPECT_TRUE(tail.empty());
}

MUXLAB_INSTANTIATE(Conformance, EchoTest);

}  // namespace
}  // namespace muxlab::test
