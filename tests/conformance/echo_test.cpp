// Every byte comes back, in order, whatever the sizes and the timing.
#include <netinet/in.h>
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

TEST_P(EchoTest, HalfCloseWhileTheEchoIsStillQueued) {
  start({"--buffer-cap", std::to_string(64 << 20)});
  // The client reads nothing until its FIN is out and its receive buffer is
  // tiny; the cap is raised so the server keeps reading. When its read()
  // returns 0 it holds at least 16 MiB minus its socket send buffer (4 MiB at
  // most by default) of unsent echo. Closing at that moment would lose it.
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int tiny = 4096;
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server().port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  set_nonblocking(client.get());
  const std::string payload = pattern(16 << 20, 13);
  ASSERT_TRUE(send_all(client.get(), payload, Clock::now() + 20s));
  ::shutdown(client.get(), SHUT_WR);
  std::string echoed;
  EXPECT_EQ(wait_for_end(client.get(), Clock::now() + 20s, &echoed), Ending::kEof);
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
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
