// How new connections reach several listeners: SO_REUSEPORT groups, and one
// listening socket watched by several epoll instances with and without
// EPOLLEXCLUSIVE. docs/concepts/epoll-threads.md cites these tests;
// epoll_loop_per_thread's --listener modes are built on them.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <fstream>

#include "net.hpp"
#include "rules_support.hpp"

namespace muxlab::rules {
namespace {

constexpr int kSockets = 4;

// TCP only: listening sockets, SO_REUSEPORT. Named ".../tcp" like the other rules.
class ReusePortTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, ReusePortTcp, ::testing::Values(Transport::kTcp), transport_name);
class ListenerHerdTcp : public ::testing::TestWithParam<Transport> {};
INSTANTIATE_TEST_SUITE_P(Rules, ListenerHerdTcp, ::testing::Values(Transport::kTcp),
                         transport_name);

// A TCP socket bound to 127.0.0.1:port (not listening), SO_REUSEPORT set
// before bind() when asked. Returns bind()'s errno (0 on success) in *error.
Fd bind_loopback(std::uint16_t port, bool reuse_port, int* error) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (reuse_port) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  const sockaddr_in address{AF_INET, htons(port), {htonl(INADDR_LOOPBACK)}, {}};
  *error = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0
               ? 0
               : errno;
  return fd;
}

std::uint16_t port_of(int fd) {
  const std::string address = local_address(fd);  // "127.0.0.1:PORT"
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

// kSockets listeners in one SO_REUSEPORT group on a free loopback port.
std::vector<Fd> reuseport_group(std::uint16_t* port) {
  std::vector<Fd> group;
  group.push_back(listen_tcp("127.0.0.1", 0, 64, /*reuse_port=*/true));
  *port = port_of(group[0].get());
  for (int i = 1; i < kSockets; ++i) group.push_back(listen_tcp("127.0.0.1", *port, 64, true));
  return group;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// Connects one client and waits until one socket of the group has it queued;
// returns that socket's index.
int connect_and_find_queue(std::uint16_t port, const std::vector<Fd>& group, Fd* client) {
  int error = 0;
  *client = tcp_connect_nonblocking(port, &error);
  for (const auto deadline = Clock::now() + kDeadline; Clock::now() < deadline;) {
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (readable(group[i].get())) return static_cast<int>(i);
    }
    std::this_thread::sleep_for(1ms);
  }
  return -1;
}

TEST_P(ReusePortTcp, EverySocketMustSetItBeforeBind) {
  int error = 0;
  Fd plain = bind_loopback(0, false, &error);
  ASSERT_EQ(error, 0);
  const std::uint16_t port = port_of(plain.get());
  Fd late = bind_loopback(port, true, &error);
  EXPECT_EQ(error, EADDRINUSE) << "the first socket did not set SO_REUSEPORT";

  Fd first = bind_loopback(0, true, &error);
  ASSERT_EQ(error, 0);
  const std::uint16_t shared = port_of(first.get());
  Fd without = bind_loopback(shared, false, &error);
  EXPECT_EQ(error, EADDRINUSE) << "the second socket did not set SO_REUSEPORT";
  Fd with = bind_loopback(shared, true, &error);
  EXPECT_EQ(error, 0) << "both set it: the address is shared";
}

TEST_P(ReusePortTcp, EachSocketHasItsOwnAcceptQueue) {
  std::uint16_t port = 0;
  const std::vector<Fd> group = reuseport_group(&port);
  Fd client;
  const int owner = connect_and_find_queue(port, group, &client);
  ASSERT_GE(owner, 0);
  // The connection waits in one socket's queue only: every other socket of
  // the group is not readable and has nothing to accept.
  for (int i = 0; i < kSockets; ++i) {
    if (i == owner) continue;
    EXPECT_FALSE(readable(group[static_cast<std::size_t>(i)].get())) << "socket " << i;
    EXPECT_LT(::accept4(group[static_cast<std::size_t>(i)].get(), nullptr, nullptr, SOCK_CLOEXEC),
              0);
    EXPECT_EQ(errno, EAGAIN);
  }
  Fd accepted(::accept4(group[static_cast<std::size_t>(owner)].get(), nullptr, nullptr, 0));
  EXPECT_TRUE(accepted.valid());
}

TEST_P(ReusePortTcp, ConnectionsAreSpreadOverEverySocket) {
  // The kernel picks the socket by a hash of the connection's addresses and
  // ports; 64 connections from different ports all missing one of 4 sockets
  // would happen about once in 10^8 runs.
  std::uint16_t port = 0;
  const std::vector<Fd> group = reuseport_group(&port);
  std::vector<int> per_socket(kSockets, 0);
  for (int i = 0; i < 64; ++i) {
    Fd client;
    const int owner = connect_and_find_queue(port, group, &client);
    ASSERT_GE(owner, 0);
    ++per_socket[static_cast<std::size_t>(owner)];
    Fd accepted(::accept4(group[static_cast<std::size_t>(owner)].get(), nullptr, nullptr, 0));
  }
  for (int i = 0; i < kSockets; ++i) EXPECT_GT(per_socket[static_cast<std::size_t>(i)], 0) << i;
}

TEST_P(ReusePortTcp, ClosingASocketResetsTheConnectionsInItsQueue) {
  // Unless net.ipv4.tcp_migrate_req is 1 (off by default), the queued
  // connections are not handed to another socket of the group.
  int migrate = 0;
  std::ifstream("/proc/sys/net/ipv4/tcp_migrate_req") >> migrate;
  if (migrate != 0) GTEST_SKIP() << "net.ipv4.tcp_migrate_req is on";
  std::uint16_t port = 0;
  std::vector<Fd> group = reuseport_group(&port);
  Fd client;
  const int owner = connect_and_find_queue(port, group, &client);
  ASSERT_GE(owner, 0);
  group[static_cast<std::size_t>(owner)].reset();
  pollfd p{client.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  char byte = 0;
  EXPECT_LT(::recv(client.get(), &byte, 1, 0), 0);
  EXPECT_EQ(errno, ECONNRESET);
}

// One listener registered in kSockets epoll instances, in order, a thread
// asleep in each from `first_sleeper` on; one client connects. Returns the waiters that
// woke (settled as in epoll_threads_rules_test.cpp).
struct HerdResult {
  int woken = 0;
  std::vector<bool> which;
  bool first_instance_has_it = false;  // instance 0's ready list holds the listener
};
// Instances below `first_sleeper` have no thread waiting in them.
HerdResult listener_herd(std::uint32_t mode, std::size_t first_sleeper, int expected) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  std::vector<Fd> instances;
  std::vector<int> sleepers;
  for (int i = 0; i < kSockets; ++i) {
    instances.push_back(make_epoll());
    EXPECT_EQ(ctl(instances.back().get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN | mode), 0);
    if (static_cast<std::size_t>(i) >= first_sleeper) sleepers.push_back(instances.back().get());
  }
  WaiterGroup waiters(sleepers);
  EXPECT_TRUE(waiters.block_all());
  int error = 0;
  Fd client = tcp_connect_nonblocking(port, &error);
  HerdResult result;
  result.woken = waiters.settle(expected);
  for (std::size_t i = 0; i < sleepers.size(); ++i) result.which.push_back(waiters.woke(i));
  result.first_instance_has_it = !wait_events(instances[0].get(), 0ms).empty();
  return result;
}

TEST_P(ListenerHerdTcp, WithoutExclusiveOneConnectionWakesEveryInstance) {
  EXPECT_EQ(listener_herd(0, 0, kSockets).woken, kSockets);
}

TEST_P(ListenerHerdTcp, WithExclusiveOneConnectionWakesTheFirstRegisteredInstance) {
  const HerdResult result = listener_herd(EPOLLEXCLUSIVE, 0, 1);
  EXPECT_EQ(result.woken, 1);
  ASSERT_FALSE(result.which.empty());
  EXPECT_TRUE(result.which[0]) << "the wake-up did not go to the instance registered first";
}

TEST_P(ListenerHerdTcp, ExclusiveCannotBeAddedToAPlainRegistrationByMod) {
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  Fd ep = make_epoll();
  ASSERT_EQ(ctl(ep.get(), EPOLL_CTL_ADD, listener.get(), EPOLLIN), 0);
  EXPECT_EQ(ctl(ep.get(), EPOLL_CTL_MOD, listener.get(), EPOLLIN | EPOLLEXCLUSIVE), EINVAL);
}

TEST_P(ListenerHerdTcp, WithExclusiveAnInstanceWithoutASleeperIsPassedButStillGetsTheEvent) {
  // Nobody sleeps in instance 0 (its loop is busy): the wake-up goes on to
  // instance 1, the first with a sleeper, and stops there. Instance 0 was
  // passed on the way, and the connection is on its ready list too: its loop
  // will see it at its next epoll_wait and race instance 1's for it.
  const HerdResult result = listener_herd(EPOLLEXCLUSIVE, 1, 1);
  EXPECT_EQ(result.woken, 1);
  ASSERT_EQ(result.which.size(), 3u);
  EXPECT_TRUE(result.which[0]) << "instance 1 (the first sleeper) did not wake";
  EXPECT_TRUE(result.first_instance_has_it) << "instance 0 did not get the event";
}

}  // namespace
}  // namespace muxlab::rules
