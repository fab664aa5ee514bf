// The pool's own promises, beyond the contract every server keeps: it grows
// when every worker is busy and shrinks when idle, no worker ever waits for a
// slow client, keepalive reaches the accepted sockets, and a stop wakes every
// worker.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "pool_support.hpp"

namespace muxlab::test {
namespace {

TEST_F(PoolTest, GrowsWhenEveryWorkerIsBusyAndShrinksWhenIdle) {
  start({"--min-threads", "1", "--max-threads", "4", "--idle-timeout-ms", "200", "--block-us",
         "1000000", "--trace"});
  std::vector<Fd> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(connect_to(server().port()));
  // Each request holds a worker for a second (--block-us widens the window on
  // purpose), so the four sent back to back overlap and need four workers.
  const auto deadline = Clock::now() + 20s;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(send_all(clients[i].get(), "request " + std::to_string(i), deadline));
  }
  char byte = 0;
  ASSERT_LT(::recv(clients[0].get(), &byte, 1, MSG_DONTWAIT | MSG_PEEK), 0)
      << "the first request was served before the fourth was sent: the test thread was "
         "starved for a second";
  for (int i = 0; i < 4; ++i) {
    const std::string expected = "request " + std::to_string(i);
    ASSERT_EQ(receive(clients[i].get(), expected.size(), deadline), expected);
  }
  // With no more events, every worker above the minimum retires after 200 ms.
  const auto back_to_minimum = [&] {
    const std::string trace = server().stderr_text();
    return count_of(trace, "retiring") == count_of(trace, "starting one more");
  };
  ASSERT_TRUE(wait_until(back_to_minimum, deadline)) << server().stderr_text();

  const auto stats = stop();
  EXPECT_EQ(stats.value("threads_peak", 0), 4);
  EXPECT_GE(stats.value("pool_grows", 0), 3);
  EXPECT_EQ(stats.value("pool_shrinks", 0), stats.value("pool_grows", 0));
  EXPECT_EQ(stats.value("threads_now", 0), 1);
  EXPECT_EQ(stats.value("max_workers_per_connection", 0), 1);
  EXPECT_EQ(stats.value("max_workers_in_accept", 0), 1);
}

// Sends without reading until the server stops taking bytes for `quiet` (its
// outbox for this client and every socket buffer on the way are full).
std::size_t send_until_stuck(int fd, std::size_t limit, std::chrono::milliseconds quiet) {
  const std::string block = pattern(64 * 1024, 9);
  std::size_t sent = 0;
  while (sent < limit) {
    const ssize_t n = ::send(fd, block.data(), block.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(quiet.count())) == 0) break;
    } else if (n < 0 && errno != EINTR) {
      break;
    }
  }
  return sent;
}

TEST_F(PoolTest, SlowReaderNeverHoldsTheOnlyWorker) {
  // One worker, no growth: if it ever waited for the hog to drain (a blocking
  // send that parks the worker until the socket takes more), nobody else would
  // be served.
  start({"--min-threads", "1", "--max-threads", "1", "--buffer-cap", "65536"});
  Fd hog = connect_to(server().port());
  Fd other = connect_to(server().port());
  const std::size_t swallowed = send_until_stuck(hog.get(), 64u << 20, 300ms);
  EXPECT_LT(swallowed, 16u << 20) << "the server kept reading from a client that never reads";
  EXPECT_EQ(round_trip(other.get(), "am I served?", 5s), "am I served?");
  const auto stats = stop();
  EXPECT_EQ(stats.value("threads_peak", 0), 1);
  EXPECT_LE(stats.value("max_pending_bytes", 0), 65536);
}

// The server-side row of a loopback connection in /proc/net/tcp.
struct TcpRow {
  int timer = -1;  // "tr": 0 none, 1 retransmit, 2 keepalive, 4 zero-window probe
  long ticks = 0;  // "tm->when": clock ticks until the timer fires
};

std::optional<TcpRow> server_row(std::uint16_t server_port, std::uint16_t client_port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer;
    fields >> slot >> local >> remote >> state >> queues >> timer;
    const auto port_of = [](const std::string& address) {
      return static_cast<std::uint16_t>(
          std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
    };
    if (port_of(local) != server_port || port_of(remote) != client_port) continue;
    TcpRow row;
    row.timer = std::stoi(timer.substr(0, timer.find(':')), nullptr, 16);
    row.ticks = std::stol(timer.substr(timer.find(':') + 1), nullptr, 16);
    return row;
  }
  return std::nullopt;
}

std::uint16_t local_port(int fd) {
  const std::string address = local_address(fd);
  return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

TEST_F(PoolTest, KeepaliveReachesAcceptedSockets) {
  start({"--keepalive", "600,7,3"});
  Fd with = connect_to(server().port());
  ASSERT_EQ(round_trip(with.get(), "probe me"), "probe me");
  // The kernel shows an armed keepalive timer as "2" in /proc/net/tcp.
  const auto row = server_row(server().port(), local_port(with.get()));
  ASSERT_TRUE(row.has_value()) << "the server's socket is not in /proc/net/tcp";
  EXPECT_EQ(row->timer, 2);
  const double seconds =
      static_cast<double>(row->ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  EXPECT_GT(seconds, 500);  // TCP_KEEPIDLE 600 s, minus the seconds this test took
  EXPECT_LE(seconds, 601);
  stop();

  start({});
  Fd without = connect_to(server().port());
  ASSERT_EQ(round_trip(without.get(), "leave me"), "leave me");
  const auto plain = server_row(server().port(), local_port(without.get()));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->timer, 0) << "a timer is armed without --keepalive";
  stop();
}

TEST_F(PoolTest, StopWakesEveryWorker) {
  // Workers whose idle timeout is an hour: one that missed the wake-up would
  // sleep in epoll_wait() and keep the process from exiting.
  start({"--min-threads", "12", "--max-threads", "16", "--idle-timeout-ms", "3600000"});
  Fd client = connect_to(server().port());
  ASSERT_EQ(round_trip(client.get(), "all here?"), "all here?");
  const auto all_started = [&] { return thread_count(server().pid()) >= 13; };
  ASSERT_TRUE(wait_until(all_started, Clock::now() + 10s));
  const auto stats = stop();
  EXPECT_GE(stats.value("threads_now", 0), 12);
}

TEST(PoolFlags, AreCheckedAndDocumented) {
  const auto help = run_command(EPOLL_ONESHOT_POOL_PATH, {"--help"});
  EXPECT_EQ(help.status.code, 0);
  for (const char* flag : {"--min-threads", "--max-threads", "--idle-timeout-ms", "--keepalive",
                           "no-oneshot", "no-rearm", "listen-accept-once"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--min-threads", "0"},
                                             {"--min-threads", "4", "--max-threads", "2"},
                                             {"--idle-timeout-ms", "0"},
                                             {"--keepalive", "60,5"},
                                             {"--keepalive", "60,5,3,1"},
                                             {"--keepalive", "0,5,3"},
                                             {"--keepalive", "60,5,200"},
                                             {"--keepalive", "sixty,5,3"},
                                             {"--pitfall", "no-such-mistake"}}) {
    const auto result = run_command(EPOLL_ONESHOT_POOL_PATH, args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(result.status.code, 2) << joined;
    EXPECT_FALSE(result.err.empty()) << joined;
  }
}

}  // namespace
}  // namespace muxlab::test
