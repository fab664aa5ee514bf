// Threads and epoll: registrations made during a wait, and how many blocked
// threads one event wakes (the thundering herd) under LT, ET, ONESHOT and
// EPOLLEXCLUSIVE. docs/concepts/epoll-threads.md cites these tests.
//
// Every count here is made deterministic the same way: all waiters are proven
// asleep inside epoll_wait before the single event is triggered (see
// WaiterGroup::block_all), nobody reads the data, and the count is taken at
// the end of a bounded window (WaiterGroup::settle): it waits for the number
// of returns the rule predicts, then watches 200 ms more for extra ones. Too
// few returns fail after the deadline, too many within the window.
#include <sys/socket.h>

#include <thread>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr int kThreads = 4;

class EpollThreads : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollThreads, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class EpollExclusive : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollExclusive,
                         ::testing::Values(Transport::kTcp, Transport::kUnix), transport_name);

TEST_P(EpollThreads, FdAddedDuringAWaitIsWatchedAtOnce) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();  // empty: the waiter sleeps with nothing to watch
  WaiterGroup waiter({ep.get()});
  ASSERT_TRUE(waiter.block_all());
  // Registered by this thread while the other is already asleep...
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN, 7), 0);
  // ...and the data comes only afterwards: the sleeping wait sees it.
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  EXPECT_EQ(waiter.settle(1), 1);
  ASSERT_TRUE(waiter.woke(0));
  EXPECT_EQ(waiter.event(0).data.u64, 7u);
}

TEST_P(EpollThreads, ReadyFdAddedDuringAWaitWakesTheWaiter) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  Fd ep = make_epoll();
  WaiterGroup waiter({ep.get()});
  ASSERT_TRUE(waiter.block_all());
  // No data arrives after this point: the ADD itself finds the fd ready and
  // wakes the sleeper.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN, 8), 0);
  EXPECT_EQ(waiter.settle(1), 1);
  ASSERT_TRUE(waiter.woke(0));
  EXPECT_EQ(waiter.event(0).data.u64, 8u);
}

TEST_P(EpollThreads, DelDuringAWaitTakesEffectAtOnce) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  WaiterGroup waiter({ep.get()});
  ASSERT_TRUE(waiter.block_all());
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  EXPECT_TRUE(waiter.all_still_asleep_after(4 * kQuiet));
}

// kThreads threads share one epoll fd watching one socket; one byte arrives.
int wakeups_for_one_event(Transport transport, std::uint32_t mode, int expected) {
  Pair pair = connected_pair(transport);
  Fd ep = make_epoll();
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | mode), 0);
  WaiterGroup waiters(std::vector<int>(kThreads, ep.get()));
  EXPECT_TRUE(waiters.block_all());
  EXPECT_TRUE(send_now(pair.a.get(), "x"));
  return waiters.settle(expected);
}

TEST_P(EpollThreads, LtWakesEveryWaiterForOneEvent) {
  // The kernel wakes one waiter; that waiter, finding the fd still ready
  // (level-triggered), puts it back on the ready list and wakes the next, and
  // so on down the queue. Nobody reads, so every thread gets the same event.
  EXPECT_EQ(wakeups_for_one_event(GetParam(), 0, kThreads), kThreads);
}

TEST_P(EpollThreads, EtWakesOneWaiter) {
  EXPECT_EQ(wakeups_for_one_event(GetParam(), EPOLLET, 1), 1);
}

TEST_P(EpollThreads, OneShotWakesOneWaiterEvenUnderLt) {
  EXPECT_EQ(wakeups_for_one_event(GetParam(), EPOLLONESHOT, 1), 1);
}

// One socket registered in kThreads separate epoll instances, one thread
// asleep in each; one byte arrives.
int instances_woken(Transport transport, std::uint32_t mode, int expected) {
  Pair pair = connected_pair(transport);
  std::vector<Fd> instances;
  std::vector<int> fds;
  for (int i = 0; i < kThreads; ++i) {
    instances.push_back(make_epoll());
    fds.push_back(instances.back().get());
    EXPECT_EQ(ctl(fds.back(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | mode), 0);
  }
  WaiterGroup waiters(fds);
  EXPECT_TRUE(waiters.block_all());
  EXPECT_TRUE(send_now(pair.a.get(), "x"));
  return waiters.settle(expected);
}

TEST_P(EpollExclusive, WithoutItEveryInstanceWakes) {
  EXPECT_EQ(instances_woken(GetParam(), 0, kThreads), kThreads);
}

TEST_P(EpollExclusive, WithItOneInstanceWakes) {
  // The manual promises "one or more"; with every instance holding a sleeper,
  // this kernel stops at the first.
  EXPECT_EQ(instances_woken(GetParam(), EPOLLEXCLUSIVE, 1), 1);
}

TEST_P(EpollExclusive, CannotBeModifiedOrCombinedWithOneShot) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT),
            EINVAL);
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN | EPOLLEXCLUSIVE), 0);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN | EPOLLEXCLUSIVE), EINVAL);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, pair.b.get(), EPOLLIN), EINVAL);
}

}  // namespace
}  // namespace muxlab::rules
