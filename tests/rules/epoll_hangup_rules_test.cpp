// EPOLLHUP, EPOLLRDHUP and EPOLLERR: when each appears, and that two of them
// need no asking. docs/concepts/epoll-hangup-and-errors.md cites these tests.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr std::uint32_t kVisible = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP | EPOLLPRI;

std::uint32_t only_event(const std::vector<epoll_event>& events) {
  EXPECT_EQ(events.size(), 1u);
  return events.empty() ? 0 : events[0].events & kVisible;
}

class EpollHup : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollHup, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class EpollHupTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollHupTcp, ::testing::Values(Transport::kTcp), transport_name);

TEST_P(EpollHup, UnconnectedSocketReportsHup) {
  Fd socket = unconnected_socket(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, socket.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP), 0);
  // Never connected counts as hung up; it also claims to be writable (a write
  // would not block: it fails at once with ENOTCONN or EPIPE).
  const std::uint32_t expected = EPOLLOUT | EPOLLHUP;
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), expected);
}

TEST_P(EpollHup, SocketShutDownBothWaysReportsHup) {
  Pair pair = connected_pair(GetParam());
  ASSERT_EQ(::shutdown(pair.b.get(), SHUT_RDWR), 0);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP), 0);
  const std::uint32_t events = only_event(wait_events(ep.get(), 0ms));
  EXPECT_TRUE(events & EPOLLHUP) << event_names(events);
  EXPECT_TRUE(events & EPOLLRDHUP) << event_names(events);
  EXPECT_TRUE(events & EPOLLIN) << "a read would not block: it returns 0";
}

TEST_P(EpollHup, ClosedDescriptorCannotBeAdded) {
  // Read literally, "a socket added after close() reports EPOLLHUP" cannot
  // happen: a closed number is no longer a descriptor at all.
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();  // first: it would otherwise get the freed number
  const int number = pair.b.release();
  ASSERT_EQ(::close(number), 0);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, number, EPOLLIN), EBADF);
}

TEST_P(EpollHup, HupIsReportedEvenWhenNotRequested) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), 0), 0);  // no events asked for
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  ASSERT_EQ(::shutdown(pair.b.get(), SHUT_RDWR), 0);
  const std::uint32_t expected = EPOLLHUP;
  EXPECT_EQ(only_event(wait_reported(ep.get())), expected);
}

TEST_P(EpollHup, PeerShutdownWriteReportsRdhupWithDataStillQueued) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "hello"));
  ASSERT_EQ(::shutdown(pair.a.get(), SHUT_WR), 0);
  ASSERT_EQ(wait_for_poll(pair.b.get(), POLLRDHUP) & POLLRDHUP, POLLRDHUP);
  const std::uint32_t expected = EPOLLIN | EPOLLRDHUP;
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), expected) << "half-closed: no HUP yet";
  // A loop that treats RDHUP as "close now" loses these five bytes.
  EXPECT_EQ(read_exactly(pair.b.get(), 5), "hello");
  char byte;
  EXPECT_EQ(::recv(pair.b.get(), &byte, 1, 0), 0);
  // This end can still send; once it shuts its own side too, it is HUP.
  ASSERT_TRUE(send_now(pair.b.get(), "bye"));
  ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);
  const std::uint32_t events = only_event(wait_events(ep.get(), 0ms));
  EXPECT_TRUE(events & EPOLLHUP) << event_names(events);
}

TEST_P(EpollHupTcp, ListeningSocketReportsNoHup) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "listening is not hung up";
}

TEST_P(EpollHupTcp, PeerResetReportsErrAndHupUnrequested) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP), 0);
  const linger hard{1, 0};  // close() sends RST
  ASSERT_EQ(::setsockopt(pair.a.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  pair.a.reset();
  const std::uint32_t events = only_event(wait_reported(ep.get()));
  for (const std::uint32_t bit : {EPOLLIN, EPOLLRDHUP, EPOLLERR, EPOLLHUP}) {
    EXPECT_TRUE(events & bit) << event_names(bit) << " missing from " << event_names(events);
  }
  int error = 0;
  socklen_t length = sizeof error;
  ASSERT_EQ(::getsockopt(pair.b.get(), SOL_SOCKET, SO_ERROR, &error, &length), 0);
  EXPECT_EQ(error, ECONNRESET);
}

TEST_P(EpollHupTcp, BytesThatArrivedBeforeAResetCanStillBeRead) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "hello"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 5));
  const linger hard{1, 0};
  ASSERT_EQ(::setsockopt(pair.a.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  pair.a.reset();
  ASSERT_EQ(wait_for_poll(pair.b.get(), POLLERR) & POLLERR, POLLERR);
  // The reset ends the connection, not the bytes already delivered: they
  // come first, and only then the error.
  EXPECT_EQ(read_now(pair.b.get()), "hello");
  char byte;
  errno = 0;
  EXPECT_EQ(::recv(pair.b.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
}

}  // namespace
}  // namespace muxlab::rules
