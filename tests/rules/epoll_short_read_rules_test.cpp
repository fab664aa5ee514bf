// Edge-triggered epoll and the short read: when a read() of a stream socket
// returns fewer bytes than asked, the receive queue was empty at that moment,
// so the extra read() that would only hear EAGAIN can be skipped: the next
// bytes raise a new edge. The exception is a hang-up reported with the data:
// the FIN already sits behind the bytes just read and will raise no edge of
// its own; and TCP urgent data, at whose mark a read stops short.
// epoll_et_server's default turn is built on these rules
// (labs/04-epoll-et/the-diff.md walks through them).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kernel_view.hpp"
#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr std::size_t kAsked = 4096;  // what each read() asks for

class EpollEtShortRead : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollEtShortRead,
                         ::testing::Values(Transport::kTcp, Transport::kUnix), transport_name);

// The one event of a batch, or 0 when there was none or more than one.
std::uint32_t single_event(const std::vector<epoll_event>& events) {
  return events.size() == 1 ? events[0].events : 0;
}

TEST_P(EpollEtShortRead, AShortReadLeavesNothingBehind) {
  Pair pair = connected_pair(GetParam());
  // Three separate sends: a short read is not "one segment", it is everything.
  for (const char* part : {"ab", "cd", "ef"}) ASSERT_TRUE(send_now(pair.a.get(), part));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 6));
  const std::string got = read_now(pair.b.get(), kAsked);
  EXPECT_EQ(got, "abcdef");
  ASSERT_LT(got.size(), kAsked) << "not a short read";
  EXPECT_EQ(bytes_queued(pair.b.get()), 0);
}

TEST_P(EpollEtShortRead, DataSentAfterAShortReadMakesANewEdge) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP | EPOLLET), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "ping"));
  EXPECT_EQ(single_event(wait_reported(ep.get())), std::uint32_t{EPOLLIN});
  // Short read, and no read() after it to hear EAGAIN...
  EXPECT_EQ(read_now(pair.b.get(), kAsked), "ping");
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "the edge was used up";
  // ...yet the next message is reported: the queue was empty, so its bytes
  // are a change of state, the edge ET reports.
  ASSERT_TRUE(send_now(pair.a.get(), "pong"));
  EXPECT_EQ(single_event(wait_reported(ep.get())), std::uint32_t{EPOLLIN});
  EXPECT_EQ(read_now(pair.b.get(), kAsked), "pong");
  // And the FIN that comes after a short read has its own edge too.
  ASSERT_EQ(::shutdown(pair.a.get(), SHUT_WR), 0);
  EXPECT_EQ(single_event(wait_reported(ep.get())), std::uint32_t{EPOLLIN | EPOLLRDHUP});
}

TEST_P(EpollEtShortRead, AFinReportedWithTheDataMakesNoNewEdge) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP | EPOLLET), 0);
  // The bytes and the FIN both arrive before anyone looks: one event for both.
  ASSERT_TRUE(send_now(pair.a.get(), "last words"));
  ASSERT_EQ(::shutdown(pair.a.get(), SHUT_WR), 0);
  wait_for_poll(pair.b.get(), POLLIN | POLLRDHUP);
  EXPECT_EQ(single_event(wait_reported(ep.get())), std::uint32_t{EPOLLIN | EPOLLRDHUP});
  EXPECT_EQ(read_now(pair.b.get(), kAsked), "last words");
  // The read was short, but the end of the stream is still unread, and no
  // edge will announce it: a server that stops at the short read here never
  // closes this connection. Only reading on finds it.
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "the FIN raised an edge of its own";
  char byte = 0;
  EXPECT_EQ(::read(pair.b.get(), &byte, 1), 0) << "end of stream";
}

// The one other way a stream read stops short with bytes still queued: TCP
// urgent data. read() stops at the urgent mark; the event that reported the
// data also says EPOLLPRI (when asked for), which is how a server knows not
// to trust that short read.
TEST(EpollEtShortReadTcp, AnUrgentMarkCutsAReadShortAndIsReportedAsPri) {
  Pair pair = connected_pair(Transport::kTcp);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLPRI | EPOLLET), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "abc"));
  ASSERT_TRUE(send_now(pair.a.get(), "!", MSG_OOB));
  ASSERT_TRUE(send_now(pair.a.get(), "def"));
  // FIONREAD stops counting at the mark too; /proc/net/tcp counts all 7 bytes.
  sockaddr_in local{};
  socklen_t length = sizeof local;
  ASSERT_EQ(::getsockname(pair.b.get(), reinterpret_cast<sockaddr*>(&local), &length), 0);
  ASSERT_TRUE(test::wait_until(
      [&] { return test::unread_by_server(ntohs(local.sin_port), pair.a.get()) == 7u; },
      Clock::now() + kDeadline));
  EXPECT_EQ(single_event(wait_reported(ep.get())), std::uint32_t{EPOLLIN | EPOLLPRI});
  EXPECT_EQ(read_now(pair.b.get(), kAsked), "abc") << "the read stops at the mark";
  // Short, yet not empty: the urgent byte and "def" are still queued (even
  // FIONREAD says 0 here: it too stops counting at the mark).
  EXPECT_EQ(test::unread_by_server(ntohs(local.sin_port), pair.a.get()), 4u);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "and no new edge for the rest";
  // Reading on skips the urgent byte (not SO_OOBINLINE) and gets the rest.
  EXPECT_EQ(read_now(pair.b.get(), kAsked), "def");
}

}  // namespace
}  // namespace muxlab::rules
