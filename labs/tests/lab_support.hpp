// Helpers shared by the labs' own tests. Each lab's tests run against the
// executable named by MUXLAB_LAB_SERVER (set by labs/check, i.e. the
// student's program) or, when it is unset, against the lab's reference server.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "client.hpp"
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

}  // namespace muxlab::test
