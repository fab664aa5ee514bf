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
  // Interest changes only when the state does: with clients that read their
  // echo at once, no connection ever needs EPOLLOUT, so epoll_ctl is called
  // about once per connection (ADD; closing removes it). MOD on every event
  // costs a system call per message.
  const int ctl_budget = 3 * 11 + 5 + kMessages / 10;
  EXPECT_LE(json.value("ctl_calls", 0), ctl_budget)
      << "epoll_ctl was called " << json.value("ctl_calls", 0) << " times for 11 connections and "
      << kMessages << " messages read promptly (budget " << ctl_budget << ")";
  ::unlink(stats.c_str());
}

TEST(Lab03EpollLt, ClientsIdleForAWhileAreStillServed) {
  ServerProcess server(lab_launch());
  std::vector<Fd> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
  expect_all_echo(clients);
}

TEST(Lab03EpollLt, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  // EPOLLIN kept while the buffer is full or after the FIN, EPOLLOUT kept once
  // the echo is out: level-triggered epoll reports them on every call.
  expect_cheap_when_quiet();
}

}  // namespace
}  // namespace muxlab::test
