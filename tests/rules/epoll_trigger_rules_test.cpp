// Level- and edge-triggered epoll: exactly when EPOLLIN and EPOLLOUT are
// reported. docs/concepts/epoll-triggering.md cites these tests.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <thread>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr std::uint32_t kInOut = EPOLLIN | EPOLLOUT;

// The interesting bits of the single event an epoll_wait returned.
std::uint32_t only_event(const std::vector<epoll_event>& events) {
  EXPECT_EQ(events.size(), 1u);
  return events.empty() ? 0 : events[0].events & (kInOut | EPOLLERR | EPOLLHUP | EPOLLRDHUP);
}

class EpollLt : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollLt, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class EpollEt : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollEt, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class EpollEtTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollEtTcp, ::testing::Values(Transport::kTcp), transport_name);

class EpollLtTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollLtTcp, ::testing::Values(Transport::kTcp), transport_name);

class EpollApi : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollApi, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

// ---- level-triggered ----------------------------------------------------

TEST_P(EpollLt, ReReportsInWhileDataRemains) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "abcd"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 4));
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLIN);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLIN) << "nothing read yet";
  EXPECT_EQ(read_now(pair.b.get(), 2), "ab");
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLIN) << "two bytes left";
  EXPECT_EQ(read_now(pair.b.get()), "cd");
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "drained";
}

TEST_P(EpollLt, ReportsOutOnEveryWaitWhileWritable) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLOUT), 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLOUT) << "wait " << i;
  }
  // Which is why an LT loop arms EPOLLOUT only while it has bytes to send.
  fill_send_buffer(pair.b.get());
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
}

TEST_P(EpollLt, MaxeventsRoundRobinsThroughReadyFds) {
  Pair pairs[3] = {connected_pair(GetParam()), connected_pair(GetParam()),
                   connected_pair(GetParam())};
  Fd ep = make_epoll();
  for (std::uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(send_now(pairs[i].a.get(), "x"));
    ASSERT_TRUE(wait_for_bytes(pairs[i].b.get(), 1));
    ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pairs[i].b.get(), EPOLLIN, i), 0);
  }
  // Room for one event per call, all three ready and never read: each call
  // reports a different fd, then the first comes round again. A ready fd
  // cannot starve the others behind a small maxevents.
  std::vector<std::uint64_t> order;
  for (int i = 0; i < 4; ++i) {
    const auto events = wait_events(ep.get(), 0ms, 1);
    ASSERT_EQ(events.size(), 1u);
    order.push_back(events[0].data.u64);
  }
  EXPECT_NE(order[0], order[1]);
  EXPECT_NE(order[1], order[2]);
  EXPECT_NE(order[0], order[2]);
  EXPECT_EQ(order[3], order[0]);
}

TEST_P(EpollLtTcp, ListenerReportsUntilEveryConnectionIsAccepted) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN), 0);
  int error = 0;
  Fd client = tcp_connect_nonblocking(port, &error);
  EXPECT_EQ(only_event(wait_reported(ep.get())), static_cast<std::uint32_t>(EPOLLIN));
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), static_cast<std::uint32_t>(EPOLLIN));
  Fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "backlog empty";
}

// ---- edge-triggered: EPOLLIN --------------------------------------------

TEST_P(EpollEt, AddOnReadableFdReportsOnce) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "early"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 5));
  Fd ep = make_epoll();
  // The data arrived before the fd was watched, so no edge was ever seen;
  // the registration itself reports the current state once.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "no second report without a new edge";
}

TEST_P(EpollEt, ModOnReadableFdReportsOnceMore) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLET), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  // A MOD, even with the same mask, re-checks the fd and reports it once.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
}

TEST_P(EpollEt, PartialReadIsNotReportedAgain) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLET), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "abcd"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 4));
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_EQ(read_now(pair.b.get(), 2), "ab");
  // Two bytes are still queued, but ET reports changes, not states: a loop
  // that stops reading here waits for the peer's next send, maybe forever.
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  EXPECT_EQ(bytes_queued(pair.b.get()), 2);
}

TEST_P(EpollEt, EachArrivalReportsAgainWithoutDraining) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLET), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "1"));
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  // Nothing was read, yet the next arrival is a new edge.
  ASSERT_TRUE(send_now(pair.a.get(), "2"));
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  EXPECT_EQ(read_exactly(pair.b.get(), 2), "12");
}

TEST_P(EpollEt, PeerCloseReportsInAndRdhup) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLRDHUP | EPOLLET), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  pair.a.reset();
  const std::uint32_t events = only_event(wait_reported(ep.get()));
  EXPECT_TRUE(events & EPOLLIN) << event_names(events);
  EXPECT_TRUE(events & EPOLLRDHUP) << event_names(events);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "end-of-file is one edge";
}

TEST_P(EpollEtTcp, ListenerReportsEachNewConnection) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN | EPOLLET), 0);
  int error = 0;
  Fd first = tcp_connect_nonblocking(port, &error);
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  // The first connection was never accepted; the second is a new edge anyway.
  Fd second = tcp_connect_nonblocking(port, &error);
  EXPECT_EQ(only_event(wait_reported(ep.get())), EPOLLIN);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
}

TEST_P(EpollEtTcp, ConnectionsArrivingBeforeTheWaitAreOneReport) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN | EPOLLET), 0);
  int error = 0;
  Fd first = tcp_connect_nonblocking(port, &error);
  Fd second = tcp_connect_nonblocking(port, &error);
  // For a listening socket TCP_INFO's "unacked" is the accept queue length.
  const auto deadline = Clock::now() + kDeadline;
  tcp_info info{};
  socklen_t length = sizeof info;
  while (Clock::now() < deadline) {
    ASSERT_EQ(::getsockopt(listener.get(), IPPROTO_TCP, TCP_INFO, &info, &length), 0);
    if (info.tcpi_unacked >= 2) break;
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(info.tcpi_unacked, 2u);
  // Two arrivals while nobody was waiting queue the item once: one report for
  // two connections. A loop that accepts once per report leaves the second
  // in the backlog until a third client happens to arrive.
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), static_cast<std::uint32_t>(EPOLLIN));
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  Fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "one still waits, unreported";
  Fd also(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(also);
}

// ---- edge-triggered: EPOLLOUT -------------------------------------------

TEST_P(EpollEt, AddOnWritableFdReportsOutOnce) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLOUT | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLOUT);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "still writable, but no new edge";
}

TEST_P(EpollEt, ArrivalAlsoReportsOutWhileTheSendBufferHasRoom) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), kInOut | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLOUT) << "the registration's report";
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  for (const char* data : {"1", "2", "3"}) {
    ASSERT_TRUE(send_now(pair.a.get(), data));
    // The wake-up was for input, but the fd is polled afresh and every ready
    // bit that was asked for is reported: OUT rides along with each IN.
    EXPECT_EQ(only_event(wait_reported(ep.get())), kInOut) << "after " << data;
    EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  }
}

TEST_P(EpollEt, ArrivalWithAFullSendBufferReportsInAlone) {
  Pair pair = connected_pair(GetParam());
  fill_send_buffer(pair.b.get());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), kInOut | EPOLLET), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "neither readable nor writable";
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  // So OUT is not reported on "every action" regardless of the buffers: it
  // comes with IN only when the socket really is writable at that moment.
  EXPECT_EQ(only_event(wait_reported(ep.get())), static_cast<std::uint32_t>(EPOLLIN));
}

TEST_P(EpollEt, OutIsReportedWhenAFullSendBufferDrains) {
  Pair pair = connected_pair(GetParam());
  const std::size_t queued = fill_send_buffer(pair.b.get());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), kInOut | EPOLLET), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  EXPECT_EQ(read_exactly(pair.a.get(), queued).size(), queued);
  EXPECT_EQ(only_event(wait_reported(ep.get())), static_cast<std::uint32_t>(EPOLLOUT));
}

TEST_P(EpollEt, OwnSendAloneReportsNothing) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), kInOut | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLOUT);
  ASSERT_TRUE(send_now(pair.b.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.a.get(), 1));
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
}

TEST_P(EpollEt, PeerConsumingOurBytesReportsOutOnlyOnUnix) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), kInOut | EPOLLET), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), EPOLLOUT);
  ASSERT_TRUE(send_now(pair.b.get(), "x"));
  EXPECT_EQ(read_exactly(pair.a.get(), 1), "x");
  const auto events = wait_events(ep.get(), kQuiet);
  if (GetParam() == Transport::kUnix) {
    // An AF_UNIX skb is charged to the sender until the receiver consumes
    // it; freeing it runs the sender's write-space callback, which is an
    // EPOLLOUT edge although the buffer was never full.
    EXPECT_EQ(only_event(events), static_cast<std::uint32_t>(EPOLLOUT));
  } else {
    // TCP signals write space only after a send found the buffer full.
    EXPECT_TRUE(events.empty()) << event_names(events.empty() ? 0 : events[0].events);
  }
}

// ---- the API's own rules ------------------------------------------------

TEST_P(EpollApi, CreateSizeMustBePositiveButLimitsNothing) {
  errno = 0;
  EXPECT_EQ(::epoll_create(0), -1);
  EXPECT_EQ(errno, EINVAL);
  Fd ep(::epoll_create(1));
  ASSERT_TRUE(ep);
  Pair pairs[3] = {connected_pair(GetParam()), connected_pair(GetParam()),
                   connected_pair(GetParam())};
  for (Pair& pair : pairs) EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLOUT), 0);
  EXPECT_EQ(wait_events(ep.get(), 0ms).size(), 3u) << "size 1 was only a hint";
}

TEST_P(EpollApi, MaxeventsMustBePositive) {
  Fd ep = make_epoll();
  epoll_event event{};
  errno = 0;
  EXPECT_EQ(::epoll_wait(ep.get(), &event, 0, 0), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_P(EpollApi, AddTwiceIsEexistAndUnknownFdIsEnoent) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN), ENOENT);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), ENOENT);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), EEXIST);
}

}  // namespace
}  // namespace muxlab::rules
