// epoll_loop_per_thread: flags checked at start-up, every listener mode echoes
// on every loop, the herd counted in woken threads, per-loop stats, the trace
// naming its loop, and every loop joined promptly on SIGTERM. (The echo
// contract itself is the conformance suite's, which runs against this server.)
#include <signal.h>

#include <gtest/gtest.h>

#include <regex>
#include <thread>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"

namespace muxlab::test {
namespace {

constexpr const char* kServer = EPOLL_LOOP_PER_THREAD_PATH;

ServerProcess start(std::vector<std::string> args) {
  return ServerProcess(ServerProcess::Launch{kServer, std::move(args), std::nullopt});
}

TEST(LoopPerThreadFlags, BadThreadCountsAndListenersExitTwoNamingTheValue) {
  for (const char* bad : {"0", "-1", "-4", "100000", "many", ""}) {
    const auto result = run_command(kServer, {"--port", "0", "--threads", bad});
    EXPECT_EQ(result.status.code, 2) << "--threads '" << bad << "'";
    EXPECT_NE(result.err.find("--threads"), std::string::npos) << result.err;
    EXPECT_EQ(result.out.find("listening on"), std::string::npos) << result.out;
  }
  const auto result = run_command(kServer, {"--port", "0", "--listener", "roundrobin"});
  EXPECT_EQ(result.status.code, 2);
  EXPECT_NE(result.err.find("roundrobin"), std::string::npos) << result.err;
}

TEST(LoopPerThreadFlags, DefaultsToOneLoopPerCpuWithReuseport) {
  const std::string stats = temp_path("stats");
  ServerProcess server = start({"--stats-json", stats});
  const auto loops = tasks_of(server.pid(), "loop");
  EXPECT_EQ(loops.size(), std::max(1u, std::thread::hardware_concurrency()));
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  EXPECT_EQ(json.value("threads", 0u), loops.size());
  ::unlink(stats.c_str());
}

// Every mode serves many clients at once; the per-loop stats add up.
class ListenerModes : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(LoopPerThread, ListenerModes,
                         ::testing::Values("reuseport", "exclusive", "shared"));

TEST_P(ListenerModes, FourLoopsServeEveryClientAndTheStatsAddUp) {
  const std::string stats = temp_path("stats");
  ServerProcess server = start({"--threads", "4", "--listener", GetParam(), "--stats-json", stats});
  std::vector<Fd> clients;
  for (int i = 0; i < 64; ++i) clients.push_back(connect_to(server.port()));
  const auto deadline = Clock::now() + 10s;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const std::string message = "client " + std::to_string(i);
    ASSERT_TRUE(send_all(clients[i].get(), message, deadline));
    EXPECT_EQ(receive(clients[i].get(), message.size(), deadline), message) << i;
  }
  clients.clear();
  ASSERT_EQ(server.stop(SIGTERM).code, 0) << server.stderr_text();
  const auto json = read_json(stats);
  std::uint64_t accepts = 0;
  std::uint64_t wakeups = 0;
  std::uint64_t eagain = 0;
  for (int t = 0; t < 4; ++t) {
    const std::string prefix = "thread" + std::to_string(t) + "_";
    for (const char* key : {"wakeups", "accepts", "accept_eagain", "connections"}) {
      EXPECT_TRUE(json.contains(prefix + key)) << prefix + key;
    }
    accepts += json.value(prefix + "accepts", 0u);
    wakeups += json.value(prefix + "wakeups", 0u);
    eagain += json.value(prefix + "accept_eagain", 0u);
  }
  EXPECT_EQ(accepts, json.value("accepts", 0u));
  EXPECT_EQ(accepts, 64u);
  EXPECT_EQ(wakeups, json.value("wakeups", 0u));
  EXPECT_EQ(eagain, json.value("accept_eagain", 1u));
  ::unlink(stats.c_str());
}

TEST(LoopPerThread, ReuseportGivesEveryLoopSomeConnections) {
  // The kernel picks a socket of the group by a hash of each connection's
  // addresses; 64 connections all missing one of 4 loops would happen about
  // once in 10^8 runs.
  const std::string stats = temp_path("stats");
  ServerProcess server = start({"--threads", "4", "--stats-json", stats});
  for (int i = 0; i < 64; ++i) {
    Fd client = connect_to(server.port());
    ASSERT_EQ(round_trip(client.get(), "spread"), "spread");
  }
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  for (int t = 0; t < 4; ++t) {
    EXPECT_GT(json.value("thread" + std::to_string(t) + "_accepts", 0u), 0u) << "loop " << t;
  }
  EXPECT_EQ(json.value("accept_eagain", 1u), 0u) << "reuseport never wakes a loop for nothing";
  ::unlink(stats.c_str());
}

// How many of 4 loops one new connection wakes: the herd, counted by the
// kernel's own bookkeeping (voluntary context switches per thread).
int most_threads_woken(const std::string& listener, int connections = 5) {
  ServerProcess server = start({"--threads", "4", "--listener", listener});
  std::vector<Fd> clients(static_cast<std::size_t>(connections));
  int most = 0;
  for (auto& client : clients) {
    const int woken = threads_woken_by_a_connection(server, &client, Clock::now() + 10s);
    EXPECT_GT(woken, 0) << "the connection never settled";
    most = std::max(most, woken);
  }
  return most;
}

TEST(LoopPerThreadHerd, SharedListenerWakesEveryLoopPerConnection) {
  ServerProcess server = start({"--threads", "4", "--listener", "shared"});
  for (int i = 0; i < 5; ++i) {
    Fd client;
    EXPECT_EQ(threads_woken_by_a_connection(server, &client, Clock::now() + 10s), 4);
  }
}

TEST(LoopPerThreadHerd, ExclusiveWakesOneLoopPerConnection) {
  EXPECT_EQ(most_threads_woken("exclusive"), 1);
}

TEST(LoopPerThreadHerd, ReuseportWakesOneLoopPerConnection) {
  EXPECT_EQ(most_threads_woken("reuseport"), 1);
}

TEST(LoopPerThread, TraceNamesTheLoop) {
  ServerProcess server = start({"--threads", "2", "--trace"});
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "who?"), "who?");
  client.reset();
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const std::string trace = server.stderr_text();
  // Every line says which loop wrote it; one of the two accepted the client.
  EXPECT_TRUE(std::regex_search(trace, std::regex(R"(\[epoll_loop_per_thread t[01]\] wakeup)")))
      << trace;
  EXPECT_TRUE(std::regex_search(
      trace, std::regex(R"(\[epoll_loop_per_thread t[01]\] accept: new connection fd \d+)")))
      << trace;
}

TEST_P(ListenerModes, SigtermJoinsEveryLoopWithinThreeSeconds) {
  ServerProcess server = start({"--threads", "8", "--listener", GetParam()});
  ASSERT_EQ(tasks_of(server.pid(), "loop").size(), 8u);
  std::vector<Fd> clients;
  for (int i = 0; i < 16; ++i) {
    clients.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(clients.back().get(), "hold"), "hold");
  }
  const auto start_time = Clock::now();
  const ExitStatus status = server.stop(SIGTERM, 3s);
  EXPECT_TRUE(status.exited) << "still running 3 s after SIGTERM";
  EXPECT_EQ(status.code, 0) << server.stderr_text();
  EXPECT_LT(Clock::now() - start_time, 3s);
  for (auto& client : clients) {
    EXPECT_NE(wait_for_end(client.get(), Clock::now() + 5s), Ending::kOpen);
  }
}

}  // namespace
}  // namespace muxlab::test
