// The conformance suite: one fixture, parameterised over the servers under test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"

namespace muxlab::test {

class ServerTest : public ::testing::TestWithParam<ServerUnderTest> {
 protected:
  static void SetUpTestSuite() { raise_fd_limit(); }

  // A completion-based server cannot run where io_uring is switched off
  // (io_uring_disabled, a seccomp filter): skipped, with the reason.
  void SetUp() override {
    if (GetParam().name.find("io_uring") == std::string::npos) return;
    if (const std::string why = io_uring_unavailable(); !why.empty()) GTEST_SKIP() << why;
  }

  ServerProcess& start(std::vector<std::string> args = {},
                       std::optional<rlim_t> max_open_files = std::nullopt) {
    server_ = std::make_unique<ServerProcess>(
        ServerProcess::Launch{GetParam().path, std::move(args), max_open_files});
    return *server_;
  }
  ServerProcess& server() { return *server_; }

  // Waits until the server holds at most `limit` descriptors, probing it so
  // that its loop keeps running; returns the last count seen.
  int wait_for_fd_count_at_most(int limit, std::chrono::milliseconds timeout = 10s) {
    int open = -1;
    for (auto deadline = Clock::now() + timeout; Clock::now() < deadline;) {
      open = server_->open_fd_count();
      if (open <= limit) break;
      // Each probe forces at least one more pass of the server's loop.
      Fd probe = connect_to(server_->port());
      round_trip(probe.get(), "z");
    }
    return open;
  }

  // The server survived the test and still echoes on a fresh connection.
  void expect_still_serving() {
    ASSERT_TRUE(server_->running()) << server_->stderr_text();
    Fd probe = connect_to(server_->port());
    EXPECT_EQ(round_trip(probe.get(), "still there?"), "still there?");
  }

 private:
  std::unique_ptr<ServerProcess> server_;
};

inline void PrintTo(const ServerUnderTest& server, std::ostream* out) {
  *out << server.path;
}

inline std::string server_name(const ::testing::TestParamInfo<ServerUnderTest>& info) {
  return info.param.name;
}

}  // namespace muxlab::test

#define MUXLAB_INSTANTIATE(prefix, suite)                                             \
  INSTANTIATE_TEST_SUITE_P(prefix, suite,                                             \
                           ::testing::ValuesIn(::muxlab::test::servers_under_test()), \
                           ::muxlab::test::server_name)
