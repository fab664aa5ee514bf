// The pitfalls of epoll_loop_per_thread, each shown happening, deterministically,
// and shown absent without the pitfall.
#include <signal.h>
#include <sys/syscall.h>

#include <gtest/gtest.h>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"

namespace muxlab::test {
namespace {

constexpr const char* kServer = EPOLL_LOOP_PER_THREAD_PATH;

ServerProcess start(std::vector<std::string> args) {
  return ServerProcess(ServerProcess::Launch{kServer, std::move(args), std::nullopt});
}

bool a_loop_sleeps_in_accept(pid_t pid) {
  for (const TaskView& task : tasks_of(pid, "loop")) {
    if (task.state.state == 'S' && (task.syscall == SYS_accept4 || task.syscall == SYS_accept)) {
      return true;
    }
  }
  return false;
}

// A loop that accepts until accept() fails, on a blocking listener: after
// taking the client it sleeps inside accept() and never reads that client.
TEST(PitfallBlockingAccept, TheLoopSleepsInAcceptWhileItsOwnClientWaits) {
  ServerProcess server = start({"--threads", "1", "--pitfall", "blocking-accept"});
  Fd client = connect_to(server.port());
  ASSERT_TRUE(send_all(client.get(), "anyone?", Clock::now() + 5s));
  // Both conditions are states, waited for with a deadline: the only loop is
  // asleep in accept(), and the client's 7 bytes sit unread in its socket.
  EXPECT_TRUE(wait_until(
      [&] {
        return a_loop_sleeps_in_accept(server.pid()) &&
               unread_by_server(server.port(), client.get()).value_or(0) == 7;
      },
      Clock::now() + 10s))
      << "the loop went back to epoll_wait: the pitfall did not show";
  // (SIGTERM cannot end it either: the loop never looks at the shutdown pipe
  // again. The fixture kills it.)
}

TEST(PitfallBlockingAccept, WithoutThePitfallNoLoopEverSleepsInAccept) {
  ServerProcess server = start({"--threads", "1"});
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "anyone?"), "anyone?");
  EXPECT_TRUE(wait_until(
      [&] {
        const auto loops = tasks_of(server.pid(), "loop");
        return loops.size() == 1 && loops[0].state.asleep_in_epoll_wait();
      },
      Clock::now() + 5s));
  EXPECT_FALSE(a_loop_sleeps_in_accept(server.pid()));
}

// EPOLLEXCLUSIVE asked for through EPOLL_CTL_MOD is refused; ignored, the
// registration stays plain, and every loop wakes for every connection.
TEST(PitfallExclusiveByMod, EveryLoopWakesAsWithoutTheFlag) {
  ServerProcess server =
      start({"--threads", "4", "--listener", "exclusive", "--pitfall", "exclusive-by-mod"});
  for (int i = 0; i < 3; ++i) {
    Fd client;
    EXPECT_EQ(threads_woken_by_a_connection(server, &client, Clock::now() + 10s), 4);
  }
}

TEST(PitfallExclusiveByMod, TheTraceShowsTheRefusedMod) {
  ServerProcess server = start(
      {"--threads", "2", "--listener", "exclusive", "--trace", "--pitfall", "exclusive-by-mod"});
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  EXPECT_NE(server.stderr_text().find("EPOLLEXCLUSIVE) = -1 (Invalid argument), ignored"),
            std::string::npos)
      << server.stderr_text();
}

TEST(PitfallExclusiveByMod, WithoutThePitfallOneLoopWakes) {
  ServerProcess server = start({"--threads", "4", "--listener", "exclusive"});
  for (int i = 0; i < 3; ++i) {
    Fd client;
    EXPECT_EQ(threads_woken_by_a_connection(server, &client, Clock::now() + 10s), 1);
  }
}

}  // namespace
}  // namespace muxlab::test
