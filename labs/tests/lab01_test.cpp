// Lab 01 (select): urgent data echoed as urgent data, and the fd_set rules:
// clients that were idle on the last pass are still watched, and clients that
// leave in any order do not disturb the others.
#include <sys/socket.h>

#include "lab_support.hpp"

namespace muxlab::test {
namespace {

TEST(Lab01Select, UrgentByteComesBackAsUrgentAndTheStreamStaysInOrder) {
  ServerProcess server(lab_launch());
  Fd client = connect_to(server.port());
  ASSERT_EQ(round_trip(client.get(), "before"), "before");
  const char bang = '!';
  ASSERT_EQ(::send(client.get(), &bang, 1, MSG_OOB), 1);
  // The urgent byte overtakes nothing in the stream: it is not part of it.
  // Wait until it comes back: the urgent mark arrives like other readiness.
  EXPECT_EQ(receive_urgent_byte(client.get()), '!') << "no urgent byte came back within 5 s";
  EXPECT_EQ(round_trip(client.get(), "after"), "after") << "the normal stream was disturbed";
}

TEST(Lab01Select, ClientsIdleOnTheLastPassAreStillWatched) {
  ServerProcess server(lab_launch());
  std::vector<Fd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(connect_to(server.port()));
  // Only the last one talks first: after that pass, select() has cleared the
  // bits of the four idle ones (and the listener's) in the sets it was given.
  ASSERT_EQ(round_trip(clients.back().get(), "first"), "first");
  expect_all_echo(clients);
  // The listener too must still be watched.
  Fd late = connect_to(server.port());
  EXPECT_EQ(round_trip(late.get(), "late"), "late") << "a new client was never accepted";
}

TEST(Lab01Select, ClientsLeavingInAnyOrderDoNotDisturbTheOthers) {
  ServerProcess server(lab_launch());
  expect_survivors_served(server, 12, 2);
}

TEST(Lab01Select, SleepsWhenQuietEvenBesideAClientThatDoesNotRead) {
  // A timeval set once, before the loop, is worn down to zero by Linux (it
  // writes back the time not slept): from then on select returns at once.
  expect_cheap_when_quiet();
}

TEST(Lab01Select, ConnectionsBeyondFdSetsizeAreRefusedAndTheRestServed) {
  expect_fd_setsize_respected();
}

}  // namespace
}  // namespace muxlab::test
