// Removing fds from epoll: what EPOLL_CTL_DEL and close() do to pending and
// already-returned events. docs/concepts/close-during-batch.md cites these.
//
// The race the epoll notes (docs/sources.md) describe (thread 1's epoll_wait
// has copied an event, thread 2 deletes the fd and frees its data, thread 1
// returns and follows data.ptr into freed memory) has its dangerous window inside the kernel,
// between the copy and the return to user space. That window cannot be held
// open from user space: the copy runs under the same epoll mutex that
// EPOLL_CTL_DEL takes, and nothing a test can do parks a thread after the
// mutex is released but before the system call returns. What can be shown
// deterministically is what the program sees either way: an event that has
// left the kernel is never recalled, whether the DEL lands a microsecond
// before the return or a second after it (the tests below), and a close()
// does not even remove the registration while a duplicate of the fd lives.
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

class EpollRemoval : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, EpollRemoval, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

TEST_P(EpollRemoval, DelDropsAnEventStillInTheKernel) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  Fd ep = make_epoll();
  // Readable at ADD time, so the item sits on the ready list right away...
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  // ...and DEL takes it off the ready list as well as out of the tree.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), 0);
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  // The fd is still readable; it is only unwatched.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  EXPECT_EQ(wait_events(ep.get(), 0ms).size(), 1u);
}

TEST_P(EpollRemoval, DelDuringABatchDoesNotRecallTheBatch) {
  Pair first = connected_pair(GetParam());
  Pair second = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, first.b.get(), EPOLLIN, 1), 0);
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, second.b.get(), EPOLLIN, 2), 0);
  ASSERT_TRUE(send_now(first.a.get(), "x"));
  ASSERT_TRUE(send_now(second.a.get(), "y"));
  ASSERT_TRUE(wait_for_bytes(first.b.get(), 1));
  ASSERT_TRUE(wait_for_bytes(second.b.get(), 1));
  const auto batch = wait_events(ep.get(), 0ms, 8);
  ASSERT_EQ(batch.size(), 2u);

  // Handling the first event closes the other connection (a protocol error,
  // a timeout, a shutdown): DEL succeeds and says nothing about the event
  // that is already in the batch.
  const std::uint64_t other = batch[0].data.u64 == 1 ? 2 : 1;
  Fd& victim = other == 1 ? first.b : second.b;
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, victim.get(), 0), 0);
  victim.reset();
  // The loop's next step still reads the victim's entry, tag and all. With
  // data.ptr that tag would be a pointer to whatever was just freed.
  EXPECT_EQ(batch[1].data.u64, other);
  EXPECT_TRUE(batch[1].events & EPOLLIN);
  // The next wait no longer mentions it.
  const auto next = wait_events(ep.get(), 0ms, 8);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_NE(next[0].data.u64, other);
}

TEST_P(EpollRemoval, DelByAnotherThreadDoesNotRecallAReturnedEvent) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN, 0xfeed), 0);
  // Step 1: thread 1 sleeps in epoll_wait; the socket fires.
  WaiterGroup loop({ep.get()});
  ASSERT_TRUE(loop.block_all());
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_EQ(loop.settle(1), 1);
  // Step 2: this thread deletes and closes the socket.
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, pair.b.get(), 0), 0);
  pair.b.reset();
  // Step 3: thread 1 still holds the event and the tag of a deleted fd.
  EXPECT_EQ(loop.event(0).data.u64, 0xfeedu);
  EXPECT_TRUE(loop.event(0).events & EPOLLIN);
}

TEST_P(EpollRemoval, AClosedNumberIsGivenToTheNextDescriptor) {
  // Why data.fd alone cannot tell a stale event from a fresh one: the next
  // descriptor this process opens gets the lowest free number, which is
  // usually the one just closed.
  Pair pair = connected_pair(GetParam());
  const int number = pair.b.get();
  pair.b.reset();
  // New descriptors fill free numbers from the lowest up; lower holes (say,
  // a listener closed earlier) are taken first, but none above `number` is
  // handed out before `number` itself.
  std::vector<Fd> opened;
  while (opened.size() < 1024) {
    opened.push_back(unconnected_socket(GetParam()));
    if (opened.back().get() >= number) break;
  }
  EXPECT_EQ(opened.back().get(), number);
}

TEST_P(EpollRemoval, ClosingOneDuplicateKeepsTheRegistration) {
  Pair pair = connected_pair(GetParam());
  Fd ep = make_epoll();
  const int original = pair.b.get();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, original, EPOLLIN, static_cast<std::uint64_t>(original)),
            0);
  Fd duplicate(::dup(original));
  ASSERT_TRUE(duplicate);
  pair.b.reset();  // close(original): the open socket lives on through the duplicate

  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  const auto events = wait_reported(ep.get());
  ASSERT_EQ(events.size(), 1u) << "still watched after close()";
  EXPECT_EQ(events[0].data.u64, static_cast<std::uint64_t>(original));

  // The registration is keyed by (open file, fd number). Neither number can
  // name it any more: the old one is closed, the new one is another key.
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, original, 0), EBADF);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_DEL, duplicate.get(), 0), ENOENT);
  // Adding the duplicate makes a second registration of the same socket.
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, duplicate.get(), EPOLLIN,
                static_cast<std::uint64_t>(duplicate.get())),
            0);
  EXPECT_EQ(wait_events(ep.get(), 0ms).size(), 2u);
}

TEST_P(EpollRemoval, ClosingTheLastDescriptorRemovesEveryRegistration) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  Fd ep = make_epoll();
  Fd other_ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  ASSERT_EQ(ctl(other_ep.get(), EPOLL_CTL_ADD, pair.b.get(), EPOLLIN), 0);
  EXPECT_EQ(wait_events(ep.get(), 0ms).size(), 1u);
  EXPECT_EQ(wait_events(other_ep.get(), 0ms).size(), 1u);
  pair.b.reset();  // the only descriptor of that socket
  EXPECT_TRUE(wait_events(ep.get(), kQuiet).empty());
  EXPECT_TRUE(wait_events(other_ep.get(), kQuiet).empty());
}

}  // namespace
}  // namespace muxlab::rules
