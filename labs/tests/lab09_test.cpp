// Lab 09 (many cores): with --threads 4 a new connection wakes one loop, not
// all of them; idle loops sleep; every loop serves; SIGTERM joins them all.
#include <signal.h>

#include "kernel_view.hpp"
#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab09ManyCores, EveryLoopIsAThreadOfItsOwn) {
  ServerProcess server(lab_launch({"--threads", "4"}));
  // The main thread may be one of the loops, or only wait for them.
  EXPECT_GE(tasks_of(server.pid()).size(), 4u) << "--threads 4 did not start 4 threads";
}

TEST(Lab09ManyCores, ANewConnectionWakesOneLoopNotAll) {
  // Counted by the kernel: the threads whose voluntary context switches moved
  // while one connection was accepted, everyone asleep before and after.
  ServerProcess server(lab_launch({"--threads", "4"}));
  std::vector<Fd> clients(5);
  for (auto& client : clients) {
    const int woken = threads_woken_by_a_connection(server, &client, Clock::now() + 10s);
    ASSERT_GT(woken, 0) << "the connection was never accepted";
    EXPECT_EQ(woken, 1) << woken << " threads woke for one connection: the thundering herd";
  }
  expect_all_echo(clients);
}

TEST(Lab09ManyCores, IdleLoopsSleep) {
  ServerProcess server(lab_launch({"--threads", "4"}));
  std::vector<Fd> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
  // A fixed window on purpose: a loop that polls or spins burns most of it.
  const double before = server.cpu_seconds();
  std::this_thread::sleep_for(500ms);
  const double used = server.cpu_seconds() - before;
  EXPECT_LT(used, 0.1) << "the server used " << used << " s of CPU in 0.5 s with idle clients";
}

TEST(Lab09ManyCores, ManyClientsAreAllServed) {
  ServerProcess server(lab_launch({"--threads", "4"}));
  std::vector<Fd> clients;
  for (int i = 0; i < 64; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
}

TEST(Lab09ManyCores, SigtermJoinsEveryLoopAndClosesEveryClient) {
  ServerProcess server(lab_launch({"--threads", "4"}));
  std::vector<Fd> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
  const ExitStatus status = server.stop(SIGTERM, 3s);
  ASSERT_TRUE(status.exited) << "still running 3 s after SIGTERM: a loop was never stopped";
  EXPECT_EQ(status.signal, 0) << "ended by signal " << status.signal
                              << " (a std::thread destroyed unjoined calls abort)";
  EXPECT_EQ(status.code, 0) << server.stderr_text();
  for (auto& client : clients) {
    EXPECT_NE(wait_for_end(client.get(), Clock::now() + 5s), Ending::kOpen);
  }
}

}  // namespace
}  // namespace muxlab::test
