// poll(): the pollfd contract, POLLRDHUP and the bits reported unasked.
// docs/concepts/poll.md cites these tests.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

class Poll : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, Poll, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class PollTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, PollTcp, ::testing::Values(Transport::kTcp), transport_name);

TEST_P(Poll, FillsReventsAndLeavesEventsAlone) {
  Pair ready = connected_pair(GetParam());
  Pair idle = connected_pair(GetParam());
  ASSERT_TRUE(send_now(ready.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(ready.b.get(), 1));
  pollfd fds[2] = {{ready.b.get(), POLLIN, -1}, {idle.b.get(), POLLIN, -1}};
  ASSERT_EQ(::poll(fds, 2, 0), 1);
  EXPECT_EQ(fds[0].events, POLLIN) << "the request is input only; it survives the call";
  EXPECT_EQ(fds[0].revents, POLLIN);
  EXPECT_EQ(fds[1].events, POLLIN);
  EXPECT_EQ(fds[1].revents, 0) << "revents is always rewritten, here to zero";
  // So the same array can be passed again without rebuilding it.
  ASSERT_TRUE(send_now(idle.a.get(), "y"));
  ASSERT_TRUE(wait_for_bytes(idle.b.get(), 1));
  ASSERT_EQ(::poll(fds, 2, 0), 2);
  EXPECT_EQ(fds[1].revents, POLLIN);
}

TEST_P(Poll, NegativeFdIsSkipped) {
  Pair pair = connected_pair(GetParam());
  pollfd fds[2] = {{-1, POLLIN | POLLOUT, static_cast<short>(0x7fff)}, {pair.b.get(), POLLOUT, 0}};
  ASSERT_EQ(::poll(fds, 2, 0), 1);
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLOUT);
}

TEST_P(Poll, ClosedDescriptorReportsPollnvalUnasked) {
  Pair pair = connected_pair(GetParam());
  const int number = pair.b.release();
  ASSERT_EQ(::close(number), 0);
  pollfd fd{number, 0, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 1);
  EXPECT_EQ(fd.revents, POLLNVAL);
}

TEST_P(Poll, RdhupComesWithPollinWhileDataIsStillQueued) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "hello"));
  ASSERT_EQ(::shutdown(pair.a.get(), SHUT_WR), 0);
  const short revents = wait_for_poll(pair.b.get(), POLLIN | POLLRDHUP);
  EXPECT_EQ(revents, POLLIN | POLLRDHUP) << "no POLLHUP: only the peer's direction is closed";
  // RDHUP is not "the data is gone": everything sent before the FIN is there.
  EXPECT_EQ(read_exactly(pair.b.get(), 5), "hello");
  char byte;
  EXPECT_EQ(::recv(pair.b.get(), &byte, 1, 0), 0);
  // End-of-file stays readable (level) for as long as one asks.
  pollfd again{pair.b.get(), POLLIN | POLLRDHUP, 0};
  ASSERT_EQ(::poll(&again, 1, 0), 1);
  EXPECT_EQ(again.revents, POLLIN | POLLRDHUP);
}

TEST_P(Poll, PeerCloseIsHangupOnUnixButOnlyRdhupOnTcp) {
  Pair pair = connected_pair(GetParam());
  pair.a.reset();
  const short revents = wait_for_poll(pair.b.get(), POLLIN | POLLRDHUP);
  if (GetParam() == Transport::kUnix) {
    // An AF_UNIX stream's peer closing shuts both directions of this end.
    EXPECT_EQ(revents, POLLIN | POLLRDHUP | POLLHUP);
  } else {
    // TCP: the FIN closes only the peer's direction; this end may still send.
    EXPECT_EQ(revents, POLLIN | POLLRDHUP);
  }
}

TEST_P(Poll, CloseByAnotherThreadDoesNotWakeItButItsLastLookSaysPollnval) {
  Pair pair = connected_pair(GetParam());
  pollfd watched{pair.b.get(), POLLIN, 0};
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  int result = -2;
  std::thread sleeper([&] {
    tid.store(static_cast<pid_t>(::gettid()));
    result = ::poll(&watched, 1, 600);
    done.store(true);
  });
  const auto deadline = Clock::now() + kDeadline;
  while (!(tid.load() != 0 && blocked_in_select_or_poll(tid.load())) && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(blocked_in_select_or_poll(tid.load()));  // not ASSERT: the thread must be joined
  pair.b.reset();
  std::this_thread::sleep_for(4 * kQuiet);
  EXPECT_FALSE(done.load()) << "closing the fd did not end the wait";
  sleeper.join();
  EXPECT_EQ(result, 1);
  EXPECT_EQ(watched.revents, POLLNVAL);
}

TEST_P(PollTcp, ResetReportsErrAndHupEvenWhenNothingWasAsked) {
  Pair pair = connected_pair(GetParam());
  const linger hard{1, 0};  // close() now sends RST instead of FIN
  ASSERT_EQ(::setsockopt(pair.a.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  pair.a.reset();
  // Nothing requested: poll() still wakes up for an error or a hangup.
  pollfd fd{pair.b.get(), 0, 0};
  ASSERT_EQ(::poll(&fd, 1, static_cast<int>(kDeadline / 1ms)), 1);
  EXPECT_EQ(fd.revents, POLLERR | POLLHUP);
  char byte;
  errno = 0;
  EXPECT_EQ(::recv(pair.b.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, ECONNRESET);
}

TEST_P(PollTcp, UrgentDataReportsPollpri) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "!", MSG_OOB));
  const short revents = wait_for_poll(pair.b.get(), POLLPRI);
  EXPECT_TRUE(revents & POLLPRI);
  char urgent = 0;
  ASSERT_EQ(::recv(pair.b.get(), &urgent, 1, MSG_OOB), 1);
  EXPECT_EQ(urgent, '!');
  pollfd fd{pair.b.get(), POLLPRI, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
}

}  // namespace
}  // namespace muxlab::rules
