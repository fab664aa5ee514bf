// Each pitfall: the same scenario run with the mistake switched on (the
// symptom must show) and in the default mode (it must not).
#include <sys/socket.h>

#include "pool_support.hpp"

namespace muxlab::test {
namespace {

std::vector<std::string> with_pitfall(std::vector<std::string> args, const char* pitfall) {
  if (pitfall != nullptr) args.insert(args.end(), {"--pitfall", pitfall});
  return args;
}

// ---- no-oneshot: two workers inside one connection ------------------------

class PitfallNoOneshot : public PoolTest {
 protected:
  // Returns the most workers ever inside one connection's handler.
  int overlap(const char* pitfall) {
    // Each read chunk holds its worker for a second: the window in which a
    // second event for the same connection can reach an idle worker, widened on
    // purpose.
    start(with_pitfall({"--min-threads", "2", "--max-threads", "4", "--block-us", "1000000"},
                       pitfall));
    const std::uint16_t port = server().port();
    const auto deadline = Clock::now() + 60s;
    bool in_window = false;
    // A test thread starved for a whole second misses the window; then the
    // scenario is tried again on a new connection, at most three times.
    for (int attempt = 0; attempt < 3 && !in_window; ++attempt) {
      Fd client = connect_to(port);
      EXPECT_TRUE(send_all(client.get(), "a", deadline));
      // A worker has read "a" and another is idle in epoll_wait(). While the
      // echo of "a" has not come back, the first worker is still in the handler
      // and "b" arrives during it. With ONESHOT the connection is disabled and
      // "b" makes no event; without it, "b" makes one that the idle worker takes.
      EXPECT_TRUE(wait_until([&] { return unread_by_server(port, client.get()) == 0u; }, deadline));
      EXPECT_TRUE(wait_until([&] { return threads_in_epoll_wait(server().pid()) >= 1; }, deadline));
      char byte = 0;
      in_window = ::recv(client.get(), &byte, 1, MSG_DONTWAIT | MSG_PEEK) < 0;
      EXPECT_TRUE(send_all(client.get(), "b", deadline));
      EXPECT_EQ(receive(client.get(), 2, deadline), "ab");
    }
    EXPECT_TRUE(in_window) << "the echo of \"a\" came back before \"b\" was sent, three times";
    return stop().value("max_workers_per_connection", -1);
  }
};

TEST_F(PitfallNoOneshot, SecondWorkerEntersABusyConnection) {
  EXPECT_GE(overlap("no-oneshot"), 2);
}

TEST_F(PitfallNoOneshot, OneshotKeepsOneWorkerPerConnection) {
  EXPECT_EQ(overlap(nullptr), 1);
}

// ---- no-rearm: the connection stalls after its first message --------------

class PitfallNoRearm : public PoolTest {
 protected:
  // How many of three messages, each sent once the handler for the one before
  // has returned, are echoed.
  int answered(const char* pitfall) {
    start(with_pitfall({"--min-threads", "2", "--trace"}, pitfall));
    Fd client = connect_to(server().port());
    const auto deadline = Clock::now() + 20s;
    const std::string handler_done = "fd " + std::to_string(first_accepted_fd(deadline)) +
                                     (pitfall ? ": NOT re-armed" : ": re-armed");
    int count = 0;
    for (int i = 0; i < 3; ++i) {
      // Waiting for the handler's last trace line keeps a message from slipping
      // into a handler that is still reading. Without the re-arm nothing can
      // report the connection again, so the stall is permanent and the short
      // wait below cannot make this flaky.
      EXPECT_TRUE(wait_for_trace(handler_done, static_cast<std::size_t>(i), deadline));
      const std::string message = "message " + std::to_string(i);
      if (round_trip(client.get(), message, pitfall ? 500ms : 10s) != message) break;
      ++count;
    }
    // The server itself is fine: a new connection is served.
    Fd probe = connect_to(server().port());
    EXPECT_EQ(round_trip(probe.get(), "probe"), "probe");
    stop();
    return count;
  }
};

TEST_F(PitfallNoRearm, ConnectionStallsAfterItsFirstMessage) {
  EXPECT_EQ(answered("no-rearm"), 1);
}

TEST_F(PitfallNoRearm, RearmedConnectionKeepsTalking) {
  EXPECT_EQ(answered(nullptr), 3);
}

// ---- listen-accept-once: a connect burst is left in the backlog -----------

class PitfallListenAcceptOnce : public PoolTest {
 protected:
  static constexpr std::size_t kBurst = 8;

  // How many of a burst of kBurst connections are left in the listener's
  // backlog once the server has handled the listener's event.
  std::size_t left_in_backlog(const char* pitfall) {
    start(with_pitfall({"--min-threads", "1", "--max-threads", "1"}, pitfall));
    const auto deadline = Clock::now() + 20s;
    const std::uint16_t port = server().port();
    Fd first = connect_to(port);
    EXPECT_EQ(round_trip(first.get(), "a"), "a");
    // The only worker is back in epoll_wait(): done with "a", nothing half-handled.
    EXPECT_TRUE(wait_until([&] { return threads_in_epoll_wait(server().pid()) == 1; }, deadline));
    // While the server is stopped the whole burst completes its handshakes into
    // the backlog, and the listener goes onto epoll's ready list once.
    EXPECT_TRUE(freeze(server().pid(), deadline));
    EXPECT_TRUE(wait_until([&] { return every_thread_stopped(server().pid()); }, deadline));
    std::vector<Fd> burst;
    for (std::size_t i = 0; i < kBurst; ++i) burst.push_back(connect_to(port));
    EXPECT_TRUE(wait_until([&] { return listener_backlog(port) == kBurst; }, deadline));
    thaw(server().pid());
    // The ready list is first in, first out and there is one worker: the
    // listener's event is handled before the one for "b", so once "b" is back
    // every accept the server was going to make has been made.
    EXPECT_EQ(round_trip(first.get(), "b"), "b");
    const std::size_t left = listener_backlog(port).value_or(kBurst);
    const auto stats = stop();
    EXPECT_EQ(stats.value("accepts", std::size_t{0}), 1 + kBurst - left);
    return left;
  }
};

TEST_F(PitfallListenAcceptOnce, BurstIsLeftInTheBacklog) {
  // One accept for the one edge the whole burst made.
  EXPECT_EQ(left_in_backlog("listen-accept-once"), kBurst - 1);
}

TEST_F(PitfallListenAcceptOnce, DrainingTheListenerAcceptsTheWholeBurst) {
  EXPECT_EQ(left_in_backlog(nullptr), 0u);
}

}  // namespace
}  // namespace muxlab::test
