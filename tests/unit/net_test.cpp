// The one numeric-address parser every server, client and load loop uses.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "net.hpp"

namespace muxlab {
namespace {

TEST(NumericAddress, Ipv4KeepsHostAndPortInNetworkOrder) {
  const auto address = parse_numeric_address("127.0.0.1", 9000);
  ASSERT_TRUE(address);
  EXPECT_EQ(address->family(), AF_INET);
  EXPECT_EQ(address->length, sizeof(sockaddr_in));
  const auto& v4 = reinterpret_cast<const sockaddr_in&>(address->storage);
  EXPECT_EQ(ntohs(v4.sin_port), 9000);
  EXPECT_EQ(ntohl(v4.sin_addr.s_addr), 0x7f000001u);
}

TEST(NumericAddress, Ipv6) {
  const auto address = parse_numeric_address("::1", 65535);
  ASSERT_TRUE(address);
  EXPECT_EQ(address->family(), AF_INET6);
  EXPECT_EQ(address->length, sizeof(sockaddr_in6));
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6&>(address->storage).sin6_port), 65535);
}

TEST(NumericAddress, NamesAndJunkAreRefusedWithTheHostInTheMessage) {
  for (const char* host : {"localhost", "", "127.0.0.1:80", "[::1]", "1.2.3.4.5", "::1 "}) {
    EXPECT_FALSE(parse_numeric_address(host, 1)) << host;
    try {
      numeric_address(host, 1);
      ADD_FAILURE() << "accepted " << host;
    } catch (const SystemError& e) {
      EXPECT_EQ(e.error_number(), EINVAL);
      EXPECT_NE(std::string(e.what()).find(numeric_address_error(host)), std::string::npos)
          << e.what();
    }
  }
}

TEST(NumericAddress, LoopbackIsAllOf127Slash8AndOnlyTheIpv6One) {
  for (const char* host : {"127.0.0.1", "127.255.0.9", "::1"}) {
    EXPECT_TRUE(numeric_address(host, 0).is_loopback()) << host;
  }
  for (const char* host : {"0.0.0.0", "10.0.0.1", "128.0.0.1", "::", "::ffff:127.0.0.1"}) {
    EXPECT_FALSE(numeric_address(host, 0).is_loopback()) << host;
  }
}

}  // namespace
}  // namespace muxlab
