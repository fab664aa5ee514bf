// select(): what it does to its arguments and when it calls a socket readable,
// writable or exceptional. docs/concepts/select.md cites these tests.
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <thread>

#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

struct Ready {
  int count = -1;
  bool read = false;
  bool write = false;
  bool except = false;
};

// One select() on a single fd for the chosen conditions.
Ready select_one(int fd, bool read, bool write, bool except, timeval timeout) {
  fd_set r, w, e;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_ZERO(&e);
  if (read) FD_SET(fd, &r);
  if (write) FD_SET(fd, &w);
  if (except) FD_SET(fd, &e);
  Ready ready;
  ready.count = ::select(fd + 1, &r, &w, &e, &timeout);
  ready.read = FD_ISSET(fd, &r);
  ready.write = FD_ISSET(fd, &w);
  ready.except = FD_ISSET(fd, &e);
  return ready;
}

constexpr timeval kNow{0, 0};
constexpr timeval kLong{5, 0};

class Select : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, Select, ::testing::Values(Transport::kTcp, Transport::kUnix),
                         transport_name);

class SelectTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, SelectTcp, ::testing::Values(Transport::kTcp), transport_name);

TEST_P(Select, FdSetHoldsFdSetsizeBits) {
  // The set is a fixed bitmap: descriptors 0 .. FD_SETSIZE-1 and no more.
  EXPECT_EQ(FD_SETSIZE, 1024);
  EXPECT_EQ(sizeof(fd_set) * CHAR_BIT, static_cast<std::size_t>(FD_SETSIZE));
}

TEST_P(Select, OverwritesItsSetsWithTheResult) {
  Pair ready = connected_pair(GetParam());
  Pair idle = connected_pair(GetParam());
  ASSERT_TRUE(send_now(ready.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(ready.b.get(), 1));

  fd_set interest;
  FD_ZERO(&interest);
  FD_SET(ready.b.get(), &interest);
  FD_SET(idle.b.get(), &interest);
  const int nfds = std::max(ready.b.get(), idle.b.get()) + 1;
  timeval now = kNow;
  ASSERT_EQ(::select(nfds, &interest, nullptr, nullptr, &now), 1);
  EXPECT_TRUE(FD_ISSET(ready.b.get(), &interest));
  EXPECT_FALSE(FD_ISSET(idle.b.get(), &interest)) << "the kernel cleared the bit of the idle fd";

  // Reusing the returned set without rebuilding it forgets the idle fd for
  // good: it is not reported even once it becomes readable.
  ASSERT_TRUE(send_now(idle.a.get(), "y"));
  ASSERT_TRUE(wait_for_bytes(idle.b.get(), 1));
  now = kNow;
  ASSERT_EQ(::select(nfds, &interest, nullptr, nullptr, &now), 1);
  EXPECT_FALSE(FD_ISSET(idle.b.get(), &interest));
}

TEST_P(Select, TimeoutBecomesTheTimeLeftNotTheTimeWaited) {
  Pair pair = connected_pair(GetParam());
  fd_set r;
  // Nothing ready: select waits the whole timeout and leaves zero behind.
  FD_ZERO(&r);
  FD_SET(pair.b.get(), &r);
  timeval timeout{0, 20'000};
  ASSERT_EQ(::select(pair.b.get() + 1, &r, nullptr, nullptr, &timeout), 0);
  EXPECT_EQ(timeout.tv_sec, 0);
  EXPECT_EQ(timeout.tv_usec, 0);

  // Ready at once: nearly all of a 5 s timeout is left over. If the value
  // were the time waited (as the book chapter says), it would be close to zero.
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  FD_ZERO(&r);
  FD_SET(pair.b.get(), &r);
  timeout = kLong;
  ASSERT_EQ(::select(pair.b.get() + 1, &r, nullptr, nullptr, &timeout), 1);
  EXPECT_GE(timeout.tv_sec, 4);
}

TEST_P(Select, IgnoresDescriptorsAtOrAboveNfds) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "x"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 1));
  const int fd = pair.b.get();

  // nfds is a count, not the highest descriptor: passing the highest fd
  // itself (the mistake of a max-fd computed wrongly) leaves it unwatched.
  fd_set r;
  FD_ZERO(&r);
  FD_SET(fd, &r);
  timeval now = kNow;
  EXPECT_EQ(::select(fd, &r, nullptr, nullptr, &now), 0);
  EXPECT_FALSE(FD_ISSET(fd, &r));

  FD_ZERO(&r);
  FD_SET(fd, &r);
  now = kNow;
  EXPECT_EQ(::select(fd + 1, &r, nullptr, nullptr, &now), 1);
  EXPECT_TRUE(FD_ISSET(fd, &r));
}

TEST_P(Select, ReportsReadableAgainUntilTheDataIsRead) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "abc"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 3));
  EXPECT_TRUE(select_one(pair.b.get(), true, false, false, kNow).read);
  EXPECT_TRUE(select_one(pair.b.get(), true, false, false, kNow).read);
  EXPECT_EQ(read_now(pair.b.get(), 2), "ab");
  EXPECT_TRUE(select_one(pair.b.get(), true, false, false, kNow).read) << "one byte still queued";
  EXPECT_EQ(read_now(pair.b.get()), "c");
  EXPECT_EQ(select_one(pair.b.get(), true, false, false, kNow).count, 0);
}

TEST_P(Select, PeerCloseMakesTheSocketReadableAndReadReturnsZero) {
  Pair pair = connected_pair(GetParam());
  pair.a.reset();
  const Ready ready = select_one(pair.b.get(), true, false, false, kLong);
  EXPECT_TRUE(ready.read);
  char byte;
  EXPECT_EQ(::recv(pair.b.get(), &byte, 1, 0), 0);
}

TEST_P(Select, WritableOnlyWhileTheSendBufferHasRoom) {
  Pair pair = connected_pair(GetParam());
  EXPECT_TRUE(select_one(pair.b.get(), false, true, false, kNow).write);
  fill_send_buffer(pair.b.get());
  EXPECT_FALSE(select_one(pair.b.get(), false, true, false, kNow).write);
}

TEST_P(Select, FreeingAFewBytesDoesNotMakeAFullSocketWritable) {
  Pair pair = connected_pair(GetParam());
  const std::size_t queued = fill_send_buffer(pair.b.get());
  // The peer takes a little: "writable" means room for a useful write, so
  // the kernel waits until a good share of the buffer is free again.
  ASSERT_EQ(read_exactly(pair.a.get(), 4096).size(), 4096u);
  EXPECT_FALSE(select_one(pair.b.get(), false, true, false, timeval{0, 50'000}).write);
  ASSERT_EQ(read_exactly(pair.a.get(), queued - 4096).size(), queued - 4096);
  EXPECT_TRUE(select_one(pair.b.get(), false, true, false, kLong).write);
}

TEST_P(Select, WritableAfterOwnShutdownAndWritingRaisesSigpipe) {
  Pair pair = connected_pair(GetParam());
  ASSERT_EQ(::shutdown(pair.b.get(), SHUT_WR), 0);
  EXPECT_TRUE(select_one(pair.b.get(), false, true, false, kNow).write)
      << "a write would not block: it fails at once";

  // Block SIGPIPE in this thread so its delivery can be observed as pending
  // instead of ending the test binary.
  sigset_t pipe_only, previous;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &pipe_only, &previous), 0);
  errno = 0;
  EXPECT_EQ(::send(pair.b.get(), "x", 1, 0), -1);
  EXPECT_EQ(errno, EPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  ::sigpending(&pending);
  EXPECT_TRUE(sigismember(&pending, SIGPIPE));
  const timespec now{0, 0};
  ::sigtimedwait(&pipe_only, nullptr, &now);  // consume it before unblocking
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  // MSG_NOSIGNAL keeps the error and drops the signal.
  errno = 0;
  EXPECT_EQ(::send(pair.b.get(), "x", 1, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
}

TEST_P(Select, CloseByAnotherThreadDoesNotWakeItButItsLastLookReportsTheFd) {
  Pair pair = connected_pair(GetParam());
  const int watched = pair.b.get();
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  int result = -2;
  bool reported = false;
  timeval left{};
  std::thread sleeper([&] {
    tid.store(static_cast<pid_t>(::gettid()));
    fd_set r;
    FD_ZERO(&r);
    FD_SET(watched, &r);
    timeval timeout{0, 600'000};
    result = ::select(watched + 1, &r, nullptr, nullptr, &timeout);
    reported = FD_ISSET(watched, &r);
    left = timeout;
    done.store(true);
  });
  const auto deadline = Clock::now() + kDeadline;
  while (!(tid.load() != 0 && blocked_in_select_or_poll(tid.load())) && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(blocked_in_select_or_poll(tid.load()));  // not ASSERT: the thread must be joined
  pair.b.reset();  // close() from this thread while the other sleeps on it
  std::this_thread::sleep_for(4 * kQuiet);
  EXPECT_FALSE(done.load()) << "closing the fd did not end the wait";
  EXPECT_TRUE(blocked_in_select_or_poll(tid.load()));
  sleeper.join();
  // At the timeout select looks once more, finds no file behind the number
  // and reports it as readable: a loop that trusts this reads a closed (or,
  // worse, reused) descriptor.
  EXPECT_EQ(result, 1);
  EXPECT_TRUE(reported);
  EXPECT_EQ(left.tv_sec, 0);
  EXPECT_EQ(left.tv_usec, 0);
}

TEST_P(SelectTcp, ReadableOnlyOnceTheReceiveLowWaterMarkIsReached) {
  Pair pair = connected_pair(GetParam());
  const int mark = 10;
  ASSERT_EQ(::setsockopt(pair.b.get(), SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof mark), 0);
  ASSERT_TRUE(send_now(pair.a.get(), "12345"));
  ASSERT_TRUE(wait_for_bytes(pair.b.get(), 5));
  EXPECT_FALSE(select_one(pair.b.get(), true, false, false, timeval{0, 20'000}).read)
      << "5 bytes queued, mark is 10";
  ASSERT_TRUE(send_now(pair.a.get(), "67890"));
  EXPECT_TRUE(select_one(pair.b.get(), true, false, false, kLong).read);
}

TEST_P(SelectTcp, SendLowWaterMarkIsFixedAtOneOnLinux) {
  Pair pair = connected_pair(GetParam());
  int mark = 0;
  socklen_t length = sizeof mark;
  ASSERT_EQ(::getsockopt(pair.b.get(), SOL_SOCKET, SO_SNDLOWAT, &mark, &length), 0);
  EXPECT_EQ(mark, 1);
  mark = 4096;
  errno = 0;
  EXPECT_EQ(::setsockopt(pair.b.get(), SOL_SOCKET, SO_SNDLOWAT, &mark, sizeof mark), -1);
  EXPECT_EQ(errno, ENOPROTOOPT);
}

TEST_P(SelectTcp, ListenerIsReadableWhenAConnectionWaits) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  EXPECT_FALSE(select_one(listener.get(), true, false, false, kNow).read);
  int error = 0;
  Fd client = tcp_connect_nonblocking(port, &error);
  EXPECT_TRUE(select_one(listener.get(), true, false, false, kLong).read);
}

TEST_P(SelectTcp, NonBlockingConnectReportsWritableWhenItSucceeds) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  int error = 0;
  Fd client = tcp_connect_nonblocking(port, &error);
  ASSERT_TRUE(error == 0 || error == EINPROGRESS) << std::strerror(error);
  const Ready ready = select_one(client.get(), true, true, true, kLong);
  EXPECT_TRUE(ready.write);
  EXPECT_FALSE(ready.read) << "nothing to read and no error";
  int so_error = -1;
  socklen_t length = sizeof so_error;
  ASSERT_EQ(::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &so_error, &length), 0);
  EXPECT_EQ(so_error, 0);
}

TEST_P(SelectTcp, PendingErrorIsReadableAndWritableButNotAnException) {
  std::uint16_t port = 0;
  Fd closed_port = tcp_port_without_listener(&port);
  int error = 0;
  Fd client = tcp_connect_nonblocking(port, &error);
  ASSERT_EQ(error, EINPROGRESS) << "loopback refusals arrive after connect() returns";
  const Ready ready = select_one(client.get(), true, true, true, kLong);
  EXPECT_TRUE(ready.read);
  EXPECT_TRUE(ready.write);
  EXPECT_FALSE(ready.except) << "errors are not select() exceptions";
  int so_error = 0;
  socklen_t length = sizeof so_error;
  ASSERT_EQ(::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &so_error, &length), 0);
  EXPECT_EQ(so_error, ECONNREFUSED);
  // Reading SO_ERROR clears it.
  ASSERT_EQ(::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &so_error, &length), 0);
  EXPECT_EQ(so_error, 0);
}

TEST_P(SelectTcp, UrgentDataIsTheOnlyExceptionAndTakesTheLastByteSent) {
  Pair pair = connected_pair(GetParam());
  EXPECT_FALSE(select_one(pair.b.get(), false, false, true, kNow).except);
  ASSERT_TRUE(send_now(pair.a.get(), "ab"));
  // With MSG_OOB only the last byte of the call is urgent: 'd'.
  ASSERT_TRUE(send_now(pair.a.get(), "cd", MSG_OOB));
  const Ready ready = select_one(pair.b.get(), true, false, true, kLong);
  EXPECT_TRUE(ready.except);
  EXPECT_TRUE(ready.read);

  char urgent = 0;
  ASSERT_EQ(::recv(pair.b.get(), &urgent, 1, MSG_OOB), 1);
  EXPECT_EQ(urgent, 'd');
  EXPECT_FALSE(select_one(pair.b.get(), false, false, true, kNow).except)
      << "reading the urgent byte clears the exception";
  // The in-band stream carries the rest, without the urgent byte.
  EXPECT_EQ(read_exactly(pair.b.get(), 3), "abc");
  EXPECT_EQ(read_now(pair.b.get()), "");
}

TEST_P(SelectTcp, ALaterUrgentByteReplacesAnUnreadOne) {
  Pair pair = connected_pair(GetParam());
  ASSERT_TRUE(send_now(pair.a.get(), "a", MSG_OOB));
  ASSERT_TRUE(select_one(pair.b.get(), false, false, true, kLong).except);
  ASSERT_TRUE(send_now(pair.a.get(), "b", MSG_OOB));
  // Wait (peeking, so nothing is consumed) until the second mark has arrived.
  char urgent = 0;
  const auto deadline = Clock::now() + kDeadline;
  while (Clock::now() < deadline &&
         !(::recv(pair.b.get(), &urgent, 1, MSG_OOB | MSG_PEEK) == 1 && urgent == 'b')) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(urgent, 'b');
  // There is one urgent byte per connection. The unread 'a' is not handed
  // over in-band either: it sat at the read position and was dropped.
  ASSERT_EQ(::recv(pair.b.get(), &urgent, 1, MSG_OOB), 1);
  EXPECT_EQ(urgent, 'b');
  EXPECT_EQ(select_one(pair.b.get(), true, false, true, timeval{0, 50'000}).count, 0);
  errno = 0;
  EXPECT_EQ(::recv(pair.b.get(), &urgent, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
}

}  // namespace
}  // namespace muxlab::rules
