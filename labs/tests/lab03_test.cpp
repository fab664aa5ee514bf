// Lab 03 (epoll, level-triggered): a write interest left armed makes every
// epoll_wait() return at once; the count of wakeups gives it away.
#include <signal.h>
#include <unistd.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab03EpollLt, WakeupsStayProportionalToTheTraffic) {
  const std::string stats = temp_path("lab03-stats");
  ServerProcess server(lab_launch({"--stats-json", stats}));
  std::vector<Fd> idle;
  for (int i = 0; i < 10; ++i) {
    idle.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(idle.back().get(), "hello"), "hello");
  }
  constexpr int kMessages = 200;
  Fd talker = connect_to(server.port());
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(round_trip(talker.get(), "message"), "message") << "message " << i;
  }
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  // A correct loop wakes about once per message (plus accepts and the stop).
  // One that always asks for EPOLLOUT is woken by every writable socket on
  // every pass and spins: thousands of wakeups for the same traffic.
  const int budget = 4 * (kMessages + 11) + 20;
  EXPECT_LE(json.value("wakeups", 0), budget) << json.dump();
  ::unlink(stats.c_str());
}

TEST(Lab03EpollLt, ClientsIdleForAWhileAreStillServed) {
  ServerProcess server(lab_launch());
  std::vector<Fd> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
  expect_all_echo(clients);
}

}  // namespace
}  // namespace muxlab::test
