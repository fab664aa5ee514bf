// select_server's own behaviour: urgent data through exceptfds, FD_SETSIZE,
// and the no-fdset-reset pitfall.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "client.hpp"
#include "process.hpp"

namespace muxlab::test {
namespace {

ServerProcess start_select(std::vector<std::string> args = {},
                           std::optional<rlim_t> max_open_files = std::nullopt) {
  return ServerProcess({SELECT_SERVER_PATH, std::move(args), max_open_files});
}

// Waits until `fd` has urgent data pending (select's exception set), then reads it.
std::optional<char> receive_urgent(int fd, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    fd_set except;
    FD_ZERO(&except);
    FD_SET(fd, &except);
    timeval tick{0, 10'000};
    if (::select(fd + 1, nullptr, nullptr, &except, &tick) > 0) {
      char byte = 0;
      if (::recv(fd, &byte, 1, MSG_OOB) == 1) return byte;
    }
  }
  return std::nullopt;
}

TEST(SelectServer, UrgentByteComesBackAsUrgentAndTheStreamStaysInOrder) {
  const std::string stats = temp_path("stats");
  ServerProcess server = start_select({"--stats-json", stats, "--trace"});
  Fd client = connect_to(server.port());
  const auto deadline = Clock::now() + 5s;
  ASSERT_TRUE(send_all(client.get(), "abc", deadline));
  ASSERT_EQ(::send(client.get(), "!", 1, MSG_OOB), 1);
  ASSERT_TRUE(send_all(client.get(), "def", deadline));

  // The urgent byte is not part of the normal stream on either side.
  EXPECT_EQ(receive_urgent(client.get(), deadline), std::optional<char>('!'));
  EXPECT_EQ(receive(client.get(), 6, deadline), "abcdef");

  client.reset();
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
  const auto json = read_json(stats);
  EXPECT_EQ(json.value("oob_in", 0), 1);
  EXPECT_EQ(json.value("oob_out", 0), 1);
  EXPECT_EQ(json.value("bytes_out", 0), 6);
  EXPECT_NE(server.stderr_text().find("exception(urgent data)"), std::string::npos);
  ::unlink(stats.c_str());
}

TEST(SelectServer, ConnectionsBeyondFdSetSizeAreClosedAndOthersStillServed) {
  raise_fd_limit();
  // The server may open more descriptors than an fd_set can hold.
  ServerProcess server = start_select({}, FD_SETSIZE + 64);
  std::vector<Fd> clients;
  int served = 0;
  int refused = 0;
  for (int i = 0; i < FD_SETSIZE + 16; ++i) {
    clients.push_back(connect_to(server.port()));
    if (round_trip(clients.back().get(), "n", 2s) == "n") {
      ++served;
    } else {
      ++refused;
    }
  }
  EXPECT_GE(served, FD_SETSIZE - 16);
  EXPECT_GE(refused, 16);
  EXPECT_NE(server.stderr_text().find("does not fit in an fd_set"), std::string::npos);
  // Earlier clients are untouched.
  EXPECT_EQ(round_trip(clients.front().get(), "still here"), "still here");
  ASSERT_TRUE(server.running());
  EXPECT_EQ(server.stop(SIGTERM).code, 0);
}

// no-fdset-reset: select() returns the *ready* descriptors in the sets it was
// given. Reusing them for the next call drops everything that was not ready,
// including the listening socket.
void connect_two_clients(ServerProcess& server, std::string* first, std::string* second) {
  Fd a = connect_to(server.port());
  *first = round_trip(a.get(), "first", 2s);
  // By now the last select() answer held only A, so only A is still watched.
  Fd b = connect_to(server.port());
  *second = round_trip(b.get(), "second", 1s);
}

TEST(PitfallNoFdsetReset, SecondClientIsSilentlyIgnored) {
  ServerProcess server = start_select({"--pitfall", "no-fdset-reset"});
  std::string first, second;
  connect_two_clients(server, &first, &second);
  EXPECT_EQ(first, "first");
  EXPECT_EQ(second, "") << "the pitfall did not drop the listener from the set";
}

TEST(PitfallNoFdsetReset, DefaultModeServesBoth) {
  ServerProcess server = start_select();
  std::string first, second;
  connect_two_clients(server, &first, &second);
  EXPECT_EQ(first, "first");
  EXPECT_EQ(second, "second");
}

}  // namespace
}  // namespace muxlab::test
