// EPOLLONESHOT: one report, then silence until EPOLL_CTL_MOD re-arms it.
// docs/concepts/epoll-oneshot.md cites these tests.
#include <sys/socket.h>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

class EpollOneShot : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollOneShot, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

std::uint32_t only_event(const std::vector<epoll_event>& events) {
  EXPECT_EQ(events.size(), 1u);
  return events.empty() ? 0 : events[0].events & (EPOLLIN | EPOLLOUT | EPOLLHUP | EPOLLERR);
}

TEST_P(EpollOneShot, ReportsNothingMoreUntilRearmed) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  // Level-triggered on purpose: ONESHOT silences even a level that stays up.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLONESHOT), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "1"));
  EXPECT_EQ(only_event(wait_reported(ep.get())), static_cast<std::uint32_t>(EPOLLIN));
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "data still queued, yet silent";
  ASSERT_TRUE(send_now(pair.a.get(), "2"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 2));
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty()) << "new data, still silent";

  // Re-arming looks at the fd as it is now: readable, so reported at once.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN | EPOLLONESHOT), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), static_cast<std::uint32_t>(EPOLLIN));
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
}

TEST_P(EpollOneShot, DisarmedFdStaysInTheInterestList) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLOUT | EPOLLONESHOT), 0);
  EXPECT_EQ(only_event(wait_events(ep.get(), 0ms)), static_cast<std::uint32_t>(EPOLLOUT));
  // Disarmed, not removed: re-arm with MOD, never with ADD.
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLOUT | EPOLLONESHOT), EEXIST);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), 0);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), ENOENT);
}

TEST_P(EpollOneShot, DisarmedFdReportsNotEvenHup) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLONESHOT), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  EXPECT_EQ(only_event(wait_reported(ep.get())), static_cast<std::uint32_t>(EPOLLIN));
  // HUP and ERR are normally reported unasked; a disarmed item reports nothing.
  ASSERT_EQ(::shutdown(pair.b.get(), SHUT_RDWR), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN | EPOLLONESHOT), 0);
  const std::uint32_t events = only_event(wait_events(ep.get(), 0ms));
  EXPECT_TRUE(events & EPOLLHUP) << event_names(events);
}

}  // namespace
}  // namespace muxlab::rules
