// Helpers shared by the pool's own tests: a fixture that runs the pool with a
// stats file, and ways to watch it from outside (its trace, /proc).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"

namespace muxlab::test {

inline std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

// Any report a sanitizer runtime writes to stderr.
inline bool has_sanitizer_report(const std::string& err) {
  for (const char* marker :
       {"ThreadSanitizer", "AddressSanitizer", "LeakSanitizer", "runtime error:"}) {
    if (err.find(marker) != std::string::npos) return true;
  }
  return false;
}

class PoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { raise_fd_limit(); }
  void TearDown() override { ::unlink(stats_path_.c_str()); }

  // Starts the pool with `args` and a stats file.
  ServerProcess& start(std::vector<std::string> args) {
    args.insert(args.end(), {"--stats-json", stats_path_});
    server_ = std::make_unique<ServerProcess>(
        ServerProcess::Launch{EPOLL_ONESHOT_POOL_PATH, std::move(args), std::nullopt});
    return *server_;
  }
  ServerProcess& server() { return *server_; }
  const std::string& stats_path() const { return stats_path_; }

  // SIGTERM, a clean exit, no sanitizer report; returns the stats file.
  nlohmann::json stop() {
    const ExitStatus status = server_->stop(SIGTERM, 20s);
    EXPECT_TRUE(status.exited) << "still running 20 s after SIGTERM";
    EXPECT_EQ(status.code, 0) << server_->stderr_text().substr(0, 20000);
    EXPECT_FALSE(has_sanitizer_report(server_->stderr_text()))
        << server_->stderr_text().substr(0, 20000);
    if (status.code != 0) return nlohmann::json::object();
    return read_json(stats_path_);
  }

  // The server-side descriptor number of the first connection it traced.
  int first_accepted_fd(Clock::time_point deadline) {
    const std::string marker = "accept: new connection fd ";
    std::string err;
    const auto traced = [&] {
      err = server_->stderr_text();
      const auto at = err.find(marker);
      return at != std::string::npos && err.find('\n', at) != std::string::npos;
    };
    if (!wait_until(traced, deadline)) {
      return -1;
    }
    return std::stoi(err.substr(err.find(marker) + marker.size()));
  }

  bool wait_for_trace(const std::string& needle, std::size_t times, Clock::time_point deadline) {
    return wait_until([&] { return count_of(server_->stderr_text(), needle) >= times; }, deadline);
  }

 private:
  std::string stats_path_ = temp_path("pool-stats");
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace muxlab::test
