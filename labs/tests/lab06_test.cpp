// Lab 06 (benchmarking): the benchmark divides the server's counters by the
// load it sent, so the counters must add up. Known traffic in, exact numbers out.
#include <signal.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab06Benchmarking, CountersMatchTheTrafficSent) {
  const std::string stats = temp_path("lab06-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  constexpr int kClients = 8;
  constexpr int kMessages = 50;
  const std::string message(100, 'm');
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_to(server.port()));
  // All connected at once: the peak must see every one of them.
  for (int round = 0; round < kMessages; ++round) {
    for (auto& client : clients) ASSERT_EQ(round_trip(client.get(), message), message);
  }
  for (auto& client : clients) {
    ::shutdown(client.get(), SHUT_WR);
    ASSERT_EQ(wait_for_end(client.get(), Clock::now() + 5s), Ending::kEof);
  }
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  const std::uint64_t total = std::uint64_t{kClients} * kMessages * message.size();
  EXPECT_EQ(json.value("bytes_in", std::uint64_t{0}), total) << json.dump();
  EXPECT_EQ(json.value("bytes_out", std::uint64_t{0}), total) << json.dump();
  EXPECT_EQ(json.value("connections_total", 0), kClients) << json.dump();
  EXPECT_EQ(json.value("connections_peak", 0), kClients) << json.dump();
  EXPECT_GE(json.value("accepts", 0), kClients) << json.dump();
  // Each message is sent only after the previous echo came back, so each one
  // needs its own read, and its own readiness event to trigger that read.
  EXPECT_GE(json.value("reads", 0), kClients * kMessages) << json.dump();
  EXPECT_GE(json.value("events", 0), kClients * kMessages) << json.dump();
  EXPECT_GE(json.value("wakeups", 0), kMessages) << json.dump();
  EXPECT_GE(json.value("writes", 0), kClients * kMessages) << json.dump();
  ::unlink(stats.c_str());
}

TEST(Lab06Benchmarking, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  expect_cheap_when_quiet();
}

}  // namespace
}  // namespace muxlab::test
