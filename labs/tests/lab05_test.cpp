// Lab 05 (EPOLLONESHOT pool): slow requests on different connections are
// served at the same time, a connect burst is accepted in full, and a
// connection is served again after every message (it was re-armed).
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kernel_view.hpp"
#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab05OneshotPool, ConnectionsQueuedTogetherAreAllAccepted) {
  ServerProcess server(lab_launch({"--min-threads", "2", "--max-threads", "8"}));
  std::vector<Fd> clients = connect_burst_while_stopped(server, 20);
  expect_all_echo(clients);
}

TEST(Lab05OneshotPool, EveryMessageOnAConnectionIsServed) {
  ServerProcess server(lab_launch({"--min-threads", "2", "--max-threads", "8"}));
  Fd client = connect_to(server.port());
  for (int i = 0; i < 50; ++i) {
    const std::string message = "message " + std::to_string(i);
    ASSERT_EQ(round_trip(client.get(), message), message) << "the connection stalled";
  }
}

TEST(Lab05OneshotPool, OneRearmPerMessage) {
  // The ONESHOT hand-off costs one EPOLL_CTL_MOD per served event; more than
  // that is interest changed for nothing.
  expect_ctl_calls_within({"--min-threads", "2", "--max-threads", "8"}, 1, 100, 2L * 100 + 20,
                          "one re-arm per message");
}

TEST(Lab05OneshotPool, SlowRequestsOverlapBecauseThePoolGrows) {
  // Every read blocks 600 ms (--block-us) and the pool starts with ONE worker.
  // Four requests at once: a pool that grows while every worker is busy
  // answers all four in about one request's time; one that never grows needs
  // four times that.
  ServerProcess server(
      lab_launch({"--block-us", "600000", "--min-threads", "1", "--max-threads", "8"}));
  constexpr int kRequests = 4;
  std::vector<Fd> clients;
  for (int i = 0; i < kRequests; ++i) clients.push_back(connect_to(server.port()));
  ASSERT_EQ(round_trip(clients[0].get(), "warm"), "warm");  // accepted and served once
  const auto start = Clock::now();
  for (auto& client : clients) ASSERT_TRUE(send_all(client.get(), "request", start + 5s));
  int answered = 0;
  for (auto& client : clients) answered += receive(client.get(), 7, start + 10s) == "request";
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_EQ(answered, kRequests) << "only " << answered << " of " << kRequests
                                 << " slow requests were answered within 10 s";
  EXPECT_LT(elapsed.count(), 1500)
      << kRequests << " requests that each block 600 ms took " << elapsed.count()
      << " ms with --min-threads 1 (a pool that grows needs about 600 ms, one that does not 2400)";
}

TEST(Lab05OneshotPool, WorkersAreJoinedBeforeTheProcessExits) {
  // A worker is inside a 1.5 s request when SIGTERM comes. A pool that joins
  // its workers exits after the request; one that detached them exits at once
  // and the threads die with the process, in the middle of their work.
  // The request is made one the stop cannot cut short (the cost model gives
  // way to SIGTERM otherwise, and both kinds of pool would exit at once).
  ::setenv("MUXLAB_UNINTERRUPTIBLE_COST", "1", 1);
  ServerProcess server(
      lab_launch({"--block-us", "1500000", "--min-threads", "2", "--max-threads", "8"}));
  ::unsetenv("MUXLAB_UNINTERRUPTIBLE_COST");
  Fd client = connect_to(server.port());
  ASSERT_TRUE(send_all(client.get(), "slow", Clock::now() + 5s));
  ASSERT_TRUE(wait_until(
      [&] {
        const auto unread = unread_by_server(server.port(), client.get());
        return unread && *unread == 0;
      },
      Clock::now() + 5s))
      << "the server never read the request";
  const auto start = Clock::now();
  const ExitStatus status = server.stop(SIGTERM, 15s);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_TRUE(status.exited && status.code == 0)
      << "exit " << status.code << ", signal " << status.signal;
  EXPECT_GE(elapsed.count(), 700) << "the process exited " << elapsed.count()
                                  << " ms after SIGTERM although a worker was 1500 ms into a "
                                     "request: its workers were not joined";
}

TEST(Lab05OneshotPool, ASlowReaderGetsEveryByteOfALargeEcho) {
  // The client's receive buffer is tiny, so nearly every flush stops at
  // EAGAIN with output still queued. Re-armed without EPOLLOUT, such a
  // connection is woken only by new input: once the client has sent
  // everything, the rest of its echo is never written.
  ServerProcess server(lab_launch({"--min-threads", "2", "--max-threads", "8"}));
  Fd client = connect_tiny_reader(server.port());
  const std::string payload = pattern(8u << 20, 9);
  const PumpResult result = pump(client.get(), payload, payload.size(), Clock::now() + 8s);
  EXPECT_TRUE(result.received == payload)
      << "a slow reader got " << result.received.size() << " of " << payload.size()
      << " bytes of its echo (sent " << result.sent << ") within 8 s";
}

TEST(Lab05OneshotPool, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  expect_cheap_when_quiet({"--min-threads", "2", "--max-threads", "8"});
}

}  // namespace
}  // namespace muxlab::test
