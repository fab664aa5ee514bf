// Lab 07, part A: the repaired select() server. These are the symptoms of the
// bugs planted in buggy_select.cpp; labs/check 07 runs the conformance suite
// as well, which finds the rest (partial writes, a client that never reads).
#include <sys/socket.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab07FindTheBugs, EveryClientIsServedWhateverItsDescriptorNumber) {
  ServerProcess server(lab_launch());
  std::vector<Fd> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(connect_to(server.port()));
  expect_all_echo(clients);
}

TEST(Lab07FindTheBugs, ClientsLeavingTogetherDoNotDisturbTheOthers) {
  ServerProcess server(lab_launch());
  expect_survivors_served(server, 12, 3);
}

TEST(Lab07FindTheBugs, UrgentByteAloneWakesTheServer) {
  ServerProcess server(lab_launch());
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "hello"), "hello");
  // Only an urgent byte, no normal data: unless the server asks select() for
  // exceptions, nothing wakes it up.
  const char bang = '!';
  ASSERT_EQ(::send(client.get(), &bang, 1, MSG_OOB), 1);
  EXPECT_EQ(receive_urgent_byte(client.get()), '!') << "the urgent byte was not echoed within 5 s";
}

TEST(Lab07FindTheBugs, IdleServerSleeps) {
  // select() writes the time it did not sleep back into the timeval on Linux.
  // Reusing it makes every later call a zero-timeout poll: a busy loop.
  ServerProcess server(lab_launch());
  // The buggy timeout is 5 s: watch the idle server for 8 s (less if it has
  // already burned a whole second of CPU) and measure what it burned.
  const double cpu_before = server.cpu_seconds();
  const auto until = Clock::now() + 8s;
  while (Clock::now() < until && server.cpu_seconds() - cpu_before < 1.0) {
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, 100);  // a deadline, not a guess: the CPU budget decides
  }
  const double burned = server.cpu_seconds() - cpu_before;
  EXPECT_LT(burned, 0.5) << "the idle server burned " << static_cast<int>(burned * 1000)
                         << " ms of CPU in at most 8 s (a sleeping loop: under 500 ms)";
  ASSERT_EQ(server.stop(SIGTERM).code, 0);
}

TEST(Lab07FindTheBugs, ConnectionsBeyondFdSetsizeAreRefusedAndTheRestServed) {
  expect_fd_setsize_respected();
}

TEST(Lab07FindTheBugs, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  expect_cheap_when_quiet();
}

}  // namespace
}  // namespace muxlab::test
