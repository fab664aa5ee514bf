// io_uring's rules as docs/concepts/io-uring.md states them, checked against the
// running kernel with liburing: one enter submits and waits, multishot requests
// post many CQEs with IORING_CQE_F_MORE and end with one without it, provided
// buffers come back named in the flags and run out with -ENOBUFS, DEFER_TASKRUN
// defers the work until the ring is entered, a send with room completes inline,
// and close() does not end a request that still refers to the socket.
#include <liburing.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../io_uring_server/buffer_ring.hpp"
#include "kernel_view.hpp"
#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr unsigned kBufferSize = 4096;

class IoUringRules : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::io_uring_unavailable(); !why.empty()) GTEST_SKIP() << why;
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    ASSERT_EQ(io_uring_queue_init_params(64, &ring_, &params), 0)
        << "SINGLE_ISSUER|DEFER_TASKRUN need Linux 6.1";
    ready_ = true;
  }
  void TearDown() override {
    if (ready_) io_uring_queue_exit(&ring_);
    buffers_.reset();
  }

  io_uring_sqe* sqe(std::uint64_t user_data) {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    entry->user_data = user_data;
    return entry;
  }

  // Waits (entering the ring) until `count` CQEs are there, or the deadline.
  std::vector<io_uring_cqe> reap(unsigned count) {
    std::vector<io_uring_cqe> cqes;
    for (const auto deadline = Clock::now() + kDeadline;
         cqes.size() < count && Clock::now() < deadline;) {
      __kernel_timespec wait{0, 20'000'000};
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe_timeout(&ring_, &cqe, &wait) == 0 && cqe != nullptr) {
        cqes.push_back(*cqe);
        io_uring_cqe_seen(&ring_, cqe);
      }
    }
    return cqes;
  }

  void provide_buffers(unsigned entries) {
    buffers_ = std::make_unique<BufferRing>(ring_, entries, kBufferSize, 0);
  }

  void arm_multishot_recv(int fd, std::uint64_t user_data) {
    io_uring_sqe* entry = sqe(user_data);
    io_uring_prep_recv_multishot(entry, fd, nullptr, 0, 0);
    entry->flags |= IOSQE_BUFFER_SELECT;
    entry->buf_group = 0;
  }

  io_uring ring_{};
  bool ready_ = false;
  std::unique_ptr<BufferRing> buffers_;
};

bool more(const io_uring_cqe& cqe) {
  return (cqe.flags & IORING_CQE_F_MORE) != 0;
}

int unread(int fd) {
  int n = -1;
  ::ioctl(fd, FIONREAD, &n);
  return n;
}

TEST_F(IoUringRules, OneEnterSubmitsAndWaitsAndUserDataComesBack) {
  io_uring_prep_nop(sqe(0xfeedULL << 40));
  io_uring_prep_nop(sqe(7));
  // io_uring_submit_and_wait: one io_uring_enter() that submits both and
  // returns once at least one CQE is there.
  ASSERT_EQ(io_uring_submit_and_wait(&ring_, 2), 2);
  const auto cqes = reap(2);
  ASSERT_EQ(cqes.size(), 2u);
  EXPECT_EQ(cqes[0].user_data, 0xfeedULL << 40);
  EXPECT_EQ(cqes[1].user_data, 7u);
  EXPECT_EQ(cqes[0].res, 0);
}

TEST_F(IoUringRules, MultishotAcceptPostsOneCqePerConnectionWithMore) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  io_uring_prep_multishot_accept(sqe(1), listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_EQ(io_uring_submit(&ring_), 1);
  std::vector<Fd> clients;
  int error = 0;
  for (int i = 0; i < 3; ++i) clients.push_back(tcp_connect_nonblocking(port, &error));
  const auto cqes = reap(3);
  ASSERT_EQ(cqes.size(), 3u);
  for (const auto& cqe : cqes) {
    EXPECT_GE(cqe.res, 0);  // a new descriptor
    EXPECT_TRUE(more(cqe)) << "the one SQE stays armed";
    if (cqe.res >= 0) ::close(cqe.res);
  }
}

TEST_F(IoUringRules, ProvidedBufferIsNamedInTheFlagsAndAnEmptyRingEndsTheReceive) {
  provide_buffers(1);
  Pair pair = connected_pair(Transport::kTcp);
  arm_multishot_recv(pair.b.get(), 2);
  ASSERT_EQ(io_uring_submit(&ring_), 1);
  ASSERT_EQ(::send(pair.a.get(), "first", 5, 0), 5);
  const auto first = reap(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].res, 5);
  ASSERT_TRUE(first[0].flags & IORING_CQE_F_BUFFER);
  EXPECT_EQ(first[0].flags >> IORING_CQE_BUFFER_SHIFT, 0u) << "buffer id 0, the only one";
  EXPECT_EQ(std::string(buffers_->buffer(0), 5), "first");
  EXPECT_TRUE(more(first[0]));
  // The buffer was not given back: the next bytes find the ring empty. The
  // receive ends (no F_MORE) and the bytes stay in the socket.
  ASSERT_EQ(::send(pair.a.get(), "second", 6, 0), 6);
  const auto second = reap(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].res, -ENOBUFS);
  EXPECT_FALSE(more(second[0]));
  EXPECT_EQ(unread(pair.b.get()), 6);
}

TEST_F(IoUringRules, MultishotReceiveEndsWithoutMoreAtEof) {
  provide_buffers(4);
  Pair pair = connected_pair(Transport::kTcp);
  arm_multishot_recv(pair.b.get(), 3);
  ASSERT_EQ(io_uring_submit(&ring_), 1);
  ASSERT_EQ(::send(pair.a.get(), "bye", 3, 0), 3);
  ::shutdown(pair.a.get(), SHUT_WR);
  const auto cqes = reap(2);
  ASSERT_EQ(cqes.size(), 2u);
  EXPECT_EQ(cqes[0].res, 3);
  EXPECT_TRUE(more(cqes[0]));
  EXPECT_EQ(cqes[1].res, 0);
  EXPECT_FALSE(more(cqes[1]));
}

TEST_F(IoUringRules, CancelEndsAMultishotReceiveWithEcanceled) {
  provide_buffers(4);
  Pair pair = connected_pair(Transport::kTcp);
  arm_multishot_recv(pair.b.get(), 4);
  io_uring_prep_cancel64(sqe(5), 4, 0);
  ASSERT_EQ(io_uring_submit(&ring_), 2);
  const auto cqes = reap(2);
  ASSERT_EQ(cqes.size(), 2u);
  for (const auto& cqe : cqes) {
    if (cqe.user_data == 4) {
      EXPECT_EQ(cqe.res, -ECANCELED);
      EXPECT_FALSE(more(cqe));
    } else {
      EXPECT_EQ(cqe.res, 0) << "the cancel found its request";
    }
  }
}

// With DEFER_TASKRUN the kernel does a request's deferred work (here: copying
// the bytes that arrived into a buffer and posting the CQE) only when the
// ring's owner enters the kernel to wait for completions.
TEST_F(IoUringRules, DeferTaskrunCompletesOnlyWhenTheRingIsEntered) {
  provide_buffers(4);
  Pair pair = connected_pair(Transport::kTcp);
  arm_multishot_recv(pair.b.get(), 6);
  ASSERT_EQ(io_uring_submit(&ring_), 1);  // nothing to read yet: it waits
  ASSERT_EQ(::send(pair.a.get(), "data", 4, 0), 4);
  ASSERT_TRUE(
      test::wait_until([&] { return unread(pair.b.get()) == 4; }, Clock::now() + kDeadline));
  std::this_thread::sleep_for(kQuiet);
  EXPECT_EQ(io_uring_cq_ready(&ring_), 0u) << "a CQE appeared without entering the ring";
  EXPECT_EQ(unread(pair.b.get()), 4) << "the bytes were taken without entering the ring";
  ASSERT_GE(io_uring_get_events(&ring_), 0);  // io_uring_enter(GETEVENTS), no wait
  EXPECT_EQ(io_uring_cq_ready(&ring_), 1u);
  EXPECT_EQ(unread(pair.b.get()), 0);
}

// A send into a socket with room is done during the submission itself: the
// bytes are at the peer and the CQE is posted before io_uring_submit returns.
TEST_F(IoUringRules, SendWithRoomCompletesInlineDuringSubmit) {
  Pair pair = connected_pair(Transport::kTcp);
  io_uring_prep_send(sqe(8), pair.b.get(), "inline", 6, MSG_NOSIGNAL);
  ASSERT_EQ(io_uring_submit(&ring_), 1);
  EXPECT_EQ(io_uring_cq_ready(&ring_), 1u);
  ASSERT_TRUE(
      test::wait_until([&] { return unread(pair.a.get()) == 6; }, Clock::now() + kDeadline));
}

// close() drops the program's descriptor, not the request's reference to the
// socket: the receive goes on and completes. This is why a server cancels
// and waits for the last CQE before it closes (and before the number can be
// reused by accept).
TEST_F(IoUringRules, CloseDoesNotEndARequestOnTheDescriptor) {
  provide_buffers(4);
  Pair pair = connected_pair(Transport::kTcp);
  arm_multishot_recv(pair.b.get(), 9);
  ASSERT_EQ(io_uring_submit(&ring_), 1);
  pair.b.reset();  // close()
  ASSERT_EQ(::send(pair.a.get(), "still here", 10, MSG_NOSIGNAL), 10);
  const auto cqes = reap(1);
  ASSERT_EQ(cqes.size(), 1u);
  EXPECT_EQ(cqes[0].res, 10);
  EXPECT_TRUE(more(cqes[0])) << "the request is still armed";
}

}  // namespace
}  // namespace muxlab::rules
