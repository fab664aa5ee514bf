// Helpers shared by the labs' own tests. Each lab's tests run against the
// executable named by MUXLAB_LAB_SERVER (set by labs/check, i.e. the
// student's program) or, when it is unset, against the lab's reference server.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"

namespace muxlab::test {

inline std::string lab_server() {
  if (const char* path = std::getenv("MUXLAB_LAB_SERVER"); path != nullptr && *path != '\0') {
    return path;
  }
  return MUXLAB_LAB_REFERENCE;
}

inline ServerProcess::Launch lab_launch(std::vector<std::string> args = {}) {
  return ServerProcess::Launch{lab_server(), std::move(args), std::nullopt};
}

// Opens `count` connections while the server is stopped (SIGSTOP), so they
// all wait in the listen backlog when it resumes: one readiness report covers
// all of them. A server that accepts once per report under edge triggering
// leaves the rest there forever; this makes that happen every time.
inline std::vector<Fd> connect_burst_while_stopped(ServerProcess& server, int count) {
  std::vector<Fd> clients;
  ::kill(server.pid(), SIGSTOP);
  for (int i = 0; i < count; ++i) clients.push_back(connect_to(server.port()));
  // Non-blocking connects to loopback complete in the kernel, without the
  // server running: wait until each one is writable (established).
  for (auto& client : clients) {
    pollfd p{client.get(), POLLOUT, 0};
    ::poll(&p, 1, 5000);
  }
  ::kill(server.pid(), SIGCONT);
  return clients;
}

// Every client gets its own message back. All messages go out first and
// share one deadline, so a server that ignores some clients fails in
// `timeout`, not in `timeout` per client.
inline void expect_all_echo(std::vector<Fd>& clients, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string> messages;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    messages.push_back("client " + std::to_string(i));
    ASSERT_TRUE(send_all(clients[i].get(), messages.back(), deadline)) << "client " << i;
  }
  std::size_t unserved = 0;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (receive(clients[i].get(), messages[i].size(), deadline) != messages[i]) ++unserved;
  }
  EXPECT_EQ(unserved, 0u) << unserved << " of " << clients.size() << " clients were never served";
}

// Waits for one urgent (MSG_OOB) byte to come back; -1 when none came in time.
inline int receive_urgent_byte(int fd, std::chrono::milliseconds timeout = 5s) {
  for (const auto deadline = Clock::now() + timeout; Clock::now() < deadline;) {
    pollfd p{fd, POLLPRI, 0};
    ::poll(&p, 1, 100);
    char byte = 0;
    if (::recv(fd, &byte, 1, MSG_OOB) == 1) return static_cast<unsigned char>(byte);
  }
  return -1;
}

// Connects `total` clients (each served once), then closes every `step`-th one
// at the same moment, so that one pass of the server sees several FINs in the
// middle of whatever it walks; the clients that stayed must still be served.
inline void expect_survivors_served(ServerProcess& server, int total, int step) {
  std::vector<Fd> clients;
  for (int i = 0; i < total; ++i) {
    clients.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(clients.back().get(), "hi"), "hi");
  }
  for (std::size_t i = 0; i < clients.size(); i += static_cast<std::size_t>(step)) {
    clients[i].reset();
  }
  std::vector<Fd> stayed;
  for (auto& client : clients) {
    if (client) stayed.push_back(std::move(client));
  }
  expect_all_echo(stayed);
  EXPECT_TRUE(server.running()) << "the server died when clients left";
}

// ---------------------------------------------------------------------------
// Cost checks: a server can echo every byte and still be wrong because of what
// it costs. These helpers measure the server from outside (/proc and its
// --stats-json file) and state, on failure, what was measured in one line.

// A correct loop asleep in its wait call burns nothing; 0.1 s of CPU in a
// quiet second is ten scheduler ticks, far above a sleeping server and far
// below a spinning one even when it shares two cores with a busy machine.
inline constexpr double kQuietCpuBudget = 0.1;

// What the server does during a quiet window, from /proc: the CPU it burns, the
// share of samples in which one of its threads was runnable (a spinning loop
// is runnable all the time even when a busy machine gives it little CPU), and
// its context switches (a loop that sleeps but wakes every millisecond).
struct QuietCost {
  double cpu = 0;
  double runnable_share = 0;
  long switches = 0;
};

inline QuietCost measure_quiet(ServerProcess& server, std::chrono::milliseconds window) {
  const double cpu_before = server.cpu_seconds();
  const long switches_before = context_switches(server.pid());
  int samples = 0;
  int runnable = 0;
  for (const auto until = Clock::now() + window; Clock::now() < until;) {
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, 20);
    ++samples;
    runnable += any_thread_runnable(server.pid());
    // A server that has burned this much is spinning: no need to wait longer.
    if (server.cpu_seconds() - cpu_before >= 0.3) break;
  }
  QuietCost cost;
  cost.cpu = server.cpu_seconds() - cpu_before;
  cost.runnable_share = samples > 0 ? static_cast<double>(runnable) / samples : 0;
  cost.switches = context_switches(server.pid()) - switches_before;
  return cost;
}

// CPU seconds the server (all its threads) burns during `window`.
inline double cpu_burned_during(ServerProcess& server, std::chrono::milliseconds window) {
  return measure_quiet(server, window).cpu;
}

// A quiet second's budget: a correct loop sleeps in its wait call, burns
// nothing, is almost never runnable and wakes a few times at most (a timeout
// tick). A spinning loop is runnable all the time and burns whatever CPU the
// machine gives it; a loop with a tiny timeout switches hundreds of times.
inline constexpr double kQuietRunnableShare = 0.3;
inline constexpr long kQuietSwitches = 60;

// Fails (non-fatally) when the server is not asleep over a quiet second `when`.
inline void expect_sleeps(ServerProcess& server, const std::string& when) {
  const QuietCost cost = measure_quiet(server, 1s);
  std::ostringstream measured;
  measured << std::fixed << std::setprecision(2) << cost.cpu << " s of CPU, runnable in "
           << static_cast<int>(cost.runnable_share * 100) << "% of samples, " << cost.switches
           << " context switches in a quiet second (a sleeping loop: under " << kQuietCpuBudget
           << " s, " << static_cast<int>(kQuietRunnableShare * 100) << "%, " << kQuietSwitches
           << ")";
  EXPECT_TRUE(cost.cpu < kQuietCpuBudget && cost.runnable_share < kQuietRunnableShare &&
              cost.switches < kQuietSwitches)
      << "the server does not sleep " << when << ": " << measured.str();
}

// A connection whose receive buffer is as small as the kernel allows, so that
// the server's echo backs up after a few KiB.
inline Fd connect_tiny_reader(std::uint16_t port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int tiny = 4096;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
  }
  set_nonblocking(fd.get());
  return fd;
}

// Sends without reading until the server stops taking bytes: nothing more fits
// for `still` in a row (its buffer is full and every socket buffer too).
// Returns what was sent; at most `limit` bytes.
inline std::string send_until_stuck(int fd, std::chrono::milliseconds still = 300ms,
                                    std::size_t limit = 64u << 20) {
  const std::string block = pattern(64 * 1024, 21);
  std::string sent;
  while (sent.size() < limit) {
    const ssize_t n = ::send(fd, block.data(), block.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent.append(block, 0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(still.count())) == 0) break;
  }
  return sent;
}

// The idle-cost session every multiplexing lab runs (started with
// --stats-json `stats`): traffic, then a quiet second in each state a wrong
// interest list spins in. Returns the number of messages sent (for budgets).
//  1. after 20 round trips;                 (a select timeval set only once)
//  2. a client that sent until the server stopped reading and reads nothing,
//     beside one whose FIN came after data the server could not echo yet;
//                                           (read interest kept while full or after FIN)
//  3. both read their whole echo, the first stays connected;
//                                           (write interest never dropped)
//  4. every client gone.                   (anything left armed on a closed socket)
inline int run_quiet_phases(ServerProcess& server) {
  constexpr int kMessages = 20;
  {
    Fd talker = connect_to(server.port());
    for (int i = 0; i < kMessages; ++i) {
      const std::string message = "message " + std::to_string(i);
      EXPECT_EQ(round_trip(talker.get(), message), message) << "message " << i << " was not echoed";
      if (::testing::Test::HasFailure()) return kMessages;
    }
    expect_sleeps(server, "after traffic, with one idle client connected");
    if (::testing::Test::HasFailure()) return kMessages;
  }
  Fd stuffer = connect_to(server.port());
  const std::string stuffed = send_until_stuck(stuffer.get());
  Fd finisher = connect_tiny_reader(server.port());
  const std::string last_words = pattern(128 * 1024, 22);
  EXPECT_TRUE(send_all(finisher.get(), last_words, Clock::now() + 10s))
      << "the server did not take 128 KiB (under its buffer cap) from a client that reads nothing";
  ::shutdown(finisher.get(), SHUT_WR);
  expect_sleeps(server,
                "while a client that does not read is connected (its echo is backed up, the "
                "server's buffer is full) and another one sent its FIN behind a queued echo");
  if (::testing::Test::HasFailure()) return kMessages;
  const std::string back = receive(stuffer.get(), stuffed.size(), Clock::now() + 20s);
  EXPECT_TRUE(back == stuffed) << "a client that read late got " << back.size() << " of "
                               << stuffed.size() << " bytes of its echo";
  std::string tail;
  const Ending ending = wait_for_end(finisher.get(), Clock::now() + 20s, &tail);
  EXPECT_TRUE(tail == last_words && ending == Ending::kEof)
      << "a client whose FIN came behind a queued echo got " << tail.size() << " of "
      << last_words.size() << " bytes and " << (ending == Ending::kEof ? "a FIN" : "no FIN");
  if (::testing::Test::HasFailure()) return kMessages;
  expect_sleeps(server, "after a client that did not read caught up (it is still connected)");
  if (::testing::Test::HasFailure()) return kMessages;
  stuffer.reset();
  finisher.reset();
  expect_sleeps(server, "after the clients that did not read left");
  return kMessages;
}

// The budget of wakeups for run_quiet_phases(): a correct loop wakes a few
// times per message and about once per read chunk of the bulk echo; one that
// spins wakes hundreds of thousands of times per second. Timeouts (select's
// tick, a pool's idle timer) add a handful.
inline long quiet_phases_wakeup_budget(int messages, std::uint64_t bytes_in) {
  return 200 + 8L * messages + static_cast<long>(bytes_in / 1024);
}

// The whole idle-cost check: the quiet phases, then the stats file's wakeups
// against the budget. Returns the stats (empty when the test already failed).
inline nlohmann::json expect_cheap_when_quiet(std::vector<std::string> args = {}) {
  const std::string stats = temp_path("lab-stats");
  args.insert(args.end(), {"--stats-json", stats});
  ServerProcess server(lab_launch(args));
  const int messages = run_quiet_phases(server);
  const ExitStatus status = server.stop(SIGTERM);
  if (::testing::Test::HasFailure()) {
    ::unlink(stats.c_str());
    return {};
  }
  EXPECT_TRUE(status.exited && status.code == 0)
      << "the server did not exit 0 after SIGTERM (exit " << status.code << ", signal "
      << status.signal << ")";
  nlohmann::json json;
  try {
    json = read_json(stats);
  } catch (const std::exception& error) {
    ADD_FAILURE() << "no readable --stats-json file: " << error.what();
  }
  ::unlink(stats.c_str());
  const long wakeups = json.value("wakeups", 0L);
  const long budget =
      quiet_phases_wakeup_budget(messages, json.value("bytes_in", std::uint64_t{0}));
  EXPECT_LE(wakeups, budget) << "the server woke " << wakeups
                             << " times for traffic that needs at most " << budget
                             << " wakeups (a wait that returns at once, again and again)";
  return json;
}

// Starts the server with `args` and --stats-json, sends `messages` round trips
// on each of `clients` connections (read promptly), stops it with SIGTERM and
// checks `ctl_calls` in the stats file against `budget`; `what` says what the
// technique needs, for the failure line.
inline void expect_ctl_calls_within(std::vector<std::string> args, int clients, int messages,
                                    long budget, const std::string& what) {
  const std::string stats = temp_path("lab-stats");
  args.insert(args.end(), {"--stats-json", stats});
  ServerProcess server(lab_launch(args));
  {
    std::vector<Fd> connections;
    for (int i = 0; i < clients; ++i) connections.push_back(connect_to(server.port()));
    for (int i = 0; i < messages; ++i) {
      for (auto& client : connections) {
        ASSERT_EQ(round_trip(client.get(), "message"), "message") << "message " << i;
      }
    }
  }
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  ::unlink(stats.c_str());
  const long ctl = json.value("ctl_calls", 0L);
  EXPECT_LE(ctl, budget) << "epoll_ctl was called " << ctl << " times for " << clients
                         << " connections and " << clients * messages << " messages (" << what
                         << "; budget " << budget << ")";
}

// Holds `count` connections to the server at once (it needs the caller's
// descriptor limit raised: raise_fd_limit()). Connections the server refuses
// may already be closed; each is checked by the caller.
inline std::vector<Fd> connect_many(ServerProcess& server, int count) {
  std::vector<Fd> clients;
  clients.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    try {
      clients.push_back(connect_to(server.port()));
    } catch (const std::exception& error) {
      ADD_FAILURE() << "connection " << i << " of " << count << " failed: " << error.what();
      break;
    }
  }
  return clients;
}

// select's limit: a client holds more connections than an fd_set can name
// (1024). The server must refuse the excess cleanly (close them) and serve the
// rest. Writing FD_SET past the set's end corrupts memory or aborts.
inline void expect_fd_setsize_respected(int total = 1100) {
  raise_fd_limit();
  ServerProcess server(ServerProcess::Launch{lab_server(), {}, rlim_t{4096}});
  std::vector<Fd> clients = connect_many(server, total);
  ASSERT_EQ(clients.size(), static_cast<std::size_t>(total));
  // Everybody says one thing at once; the served ones echo it, the refused
  // ones end (FIN or reset), nobody is left hanging.
  const auto deadline = Clock::now() + 20s;
  const std::string message = "x";
  for (auto& client : clients) ::send(client.get(), message.data(), 1, MSG_NOSIGNAL);
  int served = 0;
  int ended = 0;
  int hanging = 0;
  for (auto& client : clients) {
    char byte = 0;
    pollfd p{client.get(), POLLIN, 0};
    const int left = static_cast<int>(std::max<long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
    if (::poll(&p, 1, left) <= 0) {
      ++hanging;
      continue;
    }
    const ssize_t n = ::recv(client.get(), &byte, 1, 0);
    if (n == 1) {
      ++served;
    } else {
      ++ended;
    }
  }
  EXPECT_TRUE(server.running()) << "the server died holding " << total
                                << " connections (a descriptor >= FD_SETSIZE put in an fd_set?)";
  EXPECT_GE(served, 1000) << "only " << served << " of " << total << " connections were served ("
                          << ended << " refused, " << hanging << " never answered)";
  EXPECT_EQ(hanging, 0) << hanging << " connections beyond what select can watch were neither "
                        << "served nor closed (" << served << " served, " << ended << " refused)";
  clients.clear();
  // Once the server has seen those clients leave, a new one gets a low
  // descriptor again and must be served.
  for (const auto until = Clock::now() + 10s;
       server.running() && server.open_fd_count() > 100 && Clock::now() < until;) {
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, 20);
  }
  if (server.running()) {
    Fd late = connect_to(server.port());
    EXPECT_EQ(round_trip(late.get(), "still here"), "still here")
        << "the server stopped serving after refusing the excess";
  }
}

// The median of a quiet client's round-trip times while another client floods
// the server (sends 64 KiB blocks as fast as it is allowed and reads its echo).
// A loop that gives every connection a bounded turn answers the quiet client
// within a turn or two; one that drains the flood to EAGAIN first makes it
// wait for everything the flood managed to send meanwhile. A ping that gets
// no answer within 3 s ends the measurement and counts as 3 s.
inline std::chrono::microseconds quiet_latency_beside_a_flood(ServerProcess& server, int pings) {
  Fd flood = connect_to(server.port());
  Fd quiet = connect_to(server.port());
  EXPECT_EQ(round_trip(quiet.get(), "ready"), "ready");
  std::atomic<bool> stop{false};
  std::thread flooder([&] {
    const std::string block = pattern(64 * 1024, 3);
    char sink[64 * 1024];
    const auto until = Clock::now() + 30s;  // bounded even if the pings hang
    while (!stop.load() && Clock::now() < until) {
      pollfd p{flood.get(), POLLIN | POLLOUT, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (p.revents & POLLOUT) ::send(flood.get(), block.data(), block.size(), MSG_DONTWAIT);
      while (::recv(flood.get(), sink, sizeof sink, MSG_DONTWAIT) > 0) {
      }
    }
  });
  std::vector<std::chrono::microseconds> times;
  for (int i = 0; i < pings; ++i) {
    const std::string message = "ping " + std::to_string(i);
    const auto start = Clock::now();
    if (round_trip(quiet.get(), message, 3s) != message) {
      times.assign(static_cast<std::size_t>(pings), std::chrono::microseconds(3'000'000));
      break;
    }
    times.push_back(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start));
  }
  stop = true;
  flooder.join();
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace muxlab::test
