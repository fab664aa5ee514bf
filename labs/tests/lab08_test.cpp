// Lab 08 (io_uring, completion-based): multishot requests must be submitted
// again when they end, the buffer ring must be refilled, sends must not
// overtake each other, and the loop must cost one io_uring_enter() per batch
// of completions, not one per operation, and nothing at all while idle.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "kernel_view.hpp"
#include "lab_support.hpp"

namespace muxlab::test {
namespace {

#define SKIP_WITHOUT_IO_URING()                                                            \
  do {                                                                                     \
    if (const std::string why = io_uring_unavailable(); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

TEST(Lab08IoUring, ConnectionsQueuedTogetherAreAllAccepted) {
  SKIP_WITHOUT_IO_URING();
  ServerProcess server(lab_launch());
  std::vector<Fd> clients = connect_burst_while_stopped(server, 20);
  expect_all_echo(clients);
}

// Two provided buffers for 64 KiB that arrive at once: the multishot receive
// fills both and ends with -ENOBUFS (no IORING_CQE_F_MORE). Only a server that
// gives the buffers back and submits the receive again echoes all of it.
TEST(Lab08IoUring, AReceiveThatEndsIsSubmittedAgain) {
  SKIP_WITHOUT_IO_URING();
  ServerProcess server(lab_launch({"--ring-buffers", "2"}));
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "wake"), "wake");
  const std::string burst = pattern(64 * 1024, 7);
  ASSERT_TRUE(arrive_at_once(server, client.get(), burst, Clock::now() + 5s));
  const std::string echoed = receive(client.get(), burst.size(), Clock::now() + 5s);
  EXPECT_TRUE(echoed == burst) << "got " << echoed.size() << " of " << burst.size()
                               << " bytes: is a receive without F_MORE submitted again?";
}

// The server reads 8 MiB while the client reads nothing, so its socket fills
// and sends complete short. Two sends in flight on one socket reorder bytes.
TEST(Lab08IoUring, EchoStaysInOrderWhenSendsCompleteShort) {
  SKIP_WITHOUT_IO_URING();
  ServerProcess server(lab_launch({"--buffer-cap", std::to_string(64 << 20)}));
  Fd client = connect_to(server.port());
  const std::string payload = pattern(8 << 20, 21);
  ASSERT_TRUE(send_all(client.get(), payload, Clock::now() + 20s));
  const std::string echoed = receive(client.get(), payload.size(), Clock::now() + 20s);
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload) << "the echo is reordered: one send in flight per connection";
}

// Idle, the server must sleep inside io_uring_enter() waiting for a
// completion: a loop that peeks at the completion queue without waiting
// spins, and burns the CPU it was meant to save.
TEST(Lab08IoUring, IdleServerSleepsInTheRing) {
  SKIP_WITHOUT_IO_URING();
  ServerProcess server(lab_launch());
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(clients.back().get(), "hello"), "hello");
  }
  EXPECT_TRUE(wait_until_ring_idle(server.pid(), Clock::now() + 5s))
      << "wchan: " << main_thread_state(server.pid()).wchan;
  const double before = server.cpu_seconds();
  std::this_thread::sleep_for(500ms);  // a fixed window on purpose: CPU spent in it
  const double used = server.cpu_seconds() - before;
  EXPECT_LT(used, 0.1) << "the server used " << used << " s of CPU in 0.5 s with nothing to do";
}

// 20 clients, 30 rounds. In each round the server is stopped (SIGSTOP) while
// every client sends one message, so when it resumes all 20 receives complete
// together, on any machine however fast. A loop that submits everything it
// prepared and waits in the same io_uring_enter() reaps the 20 receives in one
// enter, submits the 20 sends in the next (they complete inline) and sleeps
// in the one after: about 0.2 enters per message. One that calls
// io_uring_submit() after every SQE pays an enter per send: over 1 per message.
TEST(Lab08IoUring, EntersPerMessageUnderLoad) {
  SKIP_WITHOUT_IO_URING();
  const std::string stats = temp_path("lab08-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  constexpr int kClients = 20;
  constexpr int kRounds = 30;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(clients.back().get(), "hello"), "hello");
  }
  const auto deadline = Clock::now() + 60s;
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_TRUE(freeze(server.pid(), deadline));
    for (auto& client : clients) ASSERT_TRUE(send_all(client.get(), "message!", deadline));
    const bool queued = wait_until(
        [&] {
          for (auto& client : clients) {
            if (unread_by_server(server.port(), client.get()) != 8u) return false;
          }
          return true;
        },
        deadline);
    thaw(server.pid());
    ASSERT_TRUE(queued);
    for (auto& client : clients) ASSERT_EQ(receive(client.get(), 8, deadline), "message!");
  }
  clients.clear();
  ASSERT_EQ(server.stop(SIGTERM).code, 0) << server.stderr_text();
  const auto json = read_json(stats);
  ASSERT_TRUE(json.contains("enters")) << "the stats file has no 'enters' counter";
  const double messages = kClients * (kRounds + 1);
  EXPECT_LE(json.value("enters", 0) / messages, 0.5) << json.dump();
  EXPECT_GE(json.value("completions", 0), 2 * kClients * kRounds) << json.dump();
  ::unlink(stats.c_str());
}

TEST(Lab08IoUring, StatsCountTheRing) {
  SKIP_WITHOUT_IO_URING();
  const std::string stats = temp_path("lab08-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  Fd client = connect_to(server.port());
  for (int i = 0; i < 10; ++i) ASSERT_EQ(round_trip(client.get(), "count me"), "count me");
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  for (const char* key : {"enters", "submissions", "completions", "buffers_recycled", "enobufs"}) {
    EXPECT_TRUE(json.contains(key)) << "stats file lacks " << key;
  }
  // Each receive's buffer went back to the ring once its bytes were copied.
  EXPECT_GE(json.value("buffers_recycled", 0), 10) << json.dump();
  EXPECT_EQ(json.value("reads", 0), json.value("buffers_recycled", -1)) << json.dump();
  ::unlink(stats.c_str());
}

}  // namespace
}  // namespace muxlab::test
