// EchoConnection against a socketpair: the peer is the test.
#include "echo_connection.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <csignal>

#include <string>

#include "net.hpp"
#include "shutdown_signal.hpp"

namespace muxlab {
namespace {

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server.reset(fds[0]);
    peer.reset(fds[1]);
  }
  Fd server;
  Fd peer;
};

std::string drain(int fd) {
  std::string got;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) got.append(buffer, static_cast<size_t>(n));
  return got;
}

TEST(EchoConnection, EchoesWhatItReads) {
  Pair pair;
  ServerOptions options;
  Counters counters;
  EchoConnection echo(std::move(pair.server), options, counters);
  ASSERT_EQ(::write(pair.peer.get(), "abc", 3), 3);
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kProgress);
  EXPECT_TRUE(echo.wants_write());
  EXPECT_EQ(echo.flush(), EchoConnection::Io::kProgress);
  EXPECT_EQ(drain(pair.peer.get()), "abc");
  EXPECT_EQ(counters.bytes_in.get(), 3u);
  EXPECT_EQ(counters.bytes_out.get(), 3u);
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kWouldBlock);
}

TEST(EchoConnection, StopsReadingAtTheCap) {
  Pair pair;
  ServerOptions options;
  options.buffer_cap = 1024;
  Counters counters;
  EchoConnection echo(std::move(pair.server), options, counters);
  const std::string big(4096, 'z');
  ASSERT_EQ(::write(pair.peer.get(), big.data(), big.size()), 4096);
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kProgress);
  EXPECT_EQ(echo.pending(), 1024u);
  EXPECT_FALSE(echo.can_read());
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kWouldBlock);
  echo.flush();
  EXPECT_TRUE(echo.can_read());
  EXPECT_EQ(counters.max_pending_bytes.get(), 1024u);
}

TEST(EchoConnection, HalfCloseFinishesOnlyAfterEverythingIsWritten) {
  Pair pair;
  ServerOptions options;
  Counters counters;
  EchoConnection echo(std::move(pair.server), options, counters);
  ASSERT_EQ(::write(pair.peer.get(), "last words", 10), 10);
  ::shutdown(pair.peer.get(), SHUT_WR);
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kProgress);
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kPeerClosed);
  EXPECT_FALSE(echo.finished());
  echo.flush();
  EXPECT_TRUE(echo.finished());
  EXPECT_EQ(drain(pair.peer.get()), "last words");
}

TEST(EchoConnection, PeerGoneFailsTheWriteInsteadOfRaisingSigpipe) {
  Pair pair;
  ServerOptions options;
  Counters counters;
  EchoConnection echo(std::move(pair.server), options, counters);
  ASSERT_EQ(::write(pair.peer.get(), "x", 1), 1);
  echo.read_once();
  pair.peer.reset();
  EXPECT_EQ(echo.flush(), EchoConnection::Io::kFailed);
  EXPECT_TRUE(echo.finished());
  EXPECT_EQ(counters.resets.get(), 1u);
}

TEST(ShutdownSignal, IgnoresSigpipeAndTurnsSigtermIntoAReadableFd) {
  ShutdownSignal shutdown;
  struct sigaction current {};
  ::sigaction(SIGPIPE, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_IGN);
  EXPECT_FALSE(shutdown.requested());
  ::raise(SIGTERM);
  EXPECT_TRUE(shutdown.requested());
  pollfd p{shutdown.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
}

TEST(EchoConnection, CountsOpenConnections) {
  Counters counters;
  ServerOptions options;
  {
    Pair a, b;
    EchoConnection first(std::move(a.server), options, counters);
    EchoConnection second(std::move(b.server), options, counters);
    EXPECT_EQ(counters.connections_now.get(), 2u);
  }
  EXPECT_EQ(counters.connections_now.get(), 0u);
  EXPECT_EQ(counters.connections_peak.get(), 2u);
  EXPECT_EQ(counters.connections_total.get(), 2u);
}

// One dead peer is one reset, however many calls meet it: read() reports
// ECONNRESET, and a flush() of the echo still queued would then say EPIPE.
TEST(EchoConnection, ResetIsCountedOnceAcrossReadAndFlush) {
  Pair pair;
  ServerOptions options;
  Counters counters;
  EchoConnection echo(std::move(pair.server), options, counters);
  ASSERT_EQ(::write(pair.peer.get(), "abc", 3), 3);
  ASSERT_EQ(echo.read_once(), EchoConnection::Io::kProgress);
  ASSERT_EQ(echo.flush(), EchoConnection::Io::kProgress);  // "abc" now unread by the peer
  ASSERT_EQ(::write(pair.peer.get(), "def", 3), 3);
  ASSERT_EQ(echo.read_once(), EchoConnection::Io::kProgress);  // "def" queued for echo
  // Closing with unread data makes the kernel report a reset to the other side.
  pair.peer.reset();
  EXPECT_EQ(echo.read_once(), EchoConnection::Io::kFailed);
  EXPECT_EQ(echo.flush(), EchoConnection::Io::kFailed);
  EXPECT_TRUE(echo.finished());
  EXPECT_EQ(counters.resets.get(), 1u);
}

}  // namespace
}  // namespace muxlab
