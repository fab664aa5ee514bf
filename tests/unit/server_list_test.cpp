#include <gtest/gtest.h>

#include "process.hpp"

namespace muxlab::test {
namespace {

TEST(ServerList, ParsesNamesPathsAndLimits) {
  const auto list = parse_server_list("a=/bin/a,max_clients=900;/opt/my-server;;b=/x/b");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "a");
  EXPECT_EQ(list[0].path, "/bin/a");
  EXPECT_EQ(list[0].max_clients, 900);
  EXPECT_EQ(list[1].name, "my_server");  // made a valid test-name suffix
  EXPECT_EQ(list[1].path, "/opt/my-server");
  EXPECT_EQ(list[1].max_clients, 1000);
  EXPECT_EQ(list[2].name, "b");
}

TEST(ServerList, ThisBuildRegisteredItsServers) {
  EXPECT_GE(servers_under_test().size(), 2u);
}

}  // namespace
}  // namespace muxlab::test
