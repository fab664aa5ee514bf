// A stop must not wait for the queue of ready connections to run dry.
//
// When every request costs something (--block-us, --work-us) and a hundred
// clients keep their connections readable, the pool's ready list never
// empties: each re-armed connection goes back into it at once. The stop
// wake-up is one more entry in that list, so a worker that only looks for it
// among the events it takes keeps serving for as long as the list rotates.
// The server must exit 0, with its stats, within 3 s of SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "pool_support.hpp"

namespace muxlab::test {
namespace {

// `count` connections, each sending 64 KiB messages without end and reading
// whatever comes back, from one thread, until stopped or `limit` passes.
class Streamers {
 public:
  Streamers(std::uint16_t port, int count, std::chrono::seconds limit) {
    for (int i = 0; i < count; ++i) {
      Fd fd = connect_to(port);
      ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
      fds_.push_back(std::move(fd));
    }
    thread_ = std::thread([this, limit] { run(Clock::now() + limit); });
  }
  ~Streamers() {
    done_ = true;
    thread_.join();
  }
  std::size_t echoed() const { return echoed_.load(); }

 private:
  void run(Clock::time_point deadline) {
    const std::string message = pattern(64 * 1024, 7);
    std::vector<std::size_t> offset(fds_.size(), 0);
    std::vector<pollfd> polled;
    for (const Fd& fd : fds_) polled.push_back({fd.get(), POLLIN | POLLOUT, 0});
    static char sink[64 * 1024];
    while (!done_ && Clock::now() < deadline && !polled.empty()) {
      if (::poll(polled.data(), polled.size(), 100) <= 0) continue;
      for (std::size_t i = 0; i < polled.size(); ++i) {
        const int fd = polled[i].fd;
        if (fd < 0) continue;
        if (polled[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
          if (n > 0) echoed_ += static_cast<std::size_t>(n);
          if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) polled[i].fd = -1;
        }
        if (polled[i].fd >= 0 && (polled[i].revents & POLLOUT)) {
          const ssize_t n =
              ::send(fd, message.data() + offset[i], message.size() - offset[i], MSG_NOSIGNAL);
          if (n > 0) offset[i] = (offset[i] + static_cast<std::size_t>(n)) % message.size();
          if (n < 0 && errno != EAGAIN && errno != EINTR) polled[i].fd = -1;
        }
      }
    }
  }

  std::vector<Fd> fds_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<std::size_t> echoed_{0};
};

class StopUnderLoad : public PoolTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(StopUnderLoad, ExitsWithStatsWithinThreeSeconds) {
  // 20 ms per read chunk, a hundred busy connections: the pool grows to its
  // default maximum and every worker is always inside a request.
  start({GetParam(), "20000"});
  Streamers load(server().port(), 100, 60s);
  const auto busy = [&] {
    return load.echoed() >= (4u << 20) && thread_count(server().pid()) >= 17;
  };
  ASSERT_TRUE(wait_until(busy, Clock::now() + 40s))
      << "echoed " << load.echoed() << " bytes, " << thread_count(server().pid()) << " threads";

  const auto asked = Clock::now();
  const ExitStatus status = server().stop(SIGTERM, 3s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked);
  ASSERT_TRUE(status.exited) << "still serving 3 s after SIGTERM (killed)";
  EXPECT_EQ(status.code, 0) << server().stderr_text().substr(0, 4000);
  EXPECT_LT(took, 3s);
  EXPECT_FALSE(has_sanitizer_report(server().stderr_text()));
  const auto stats = read_json(stats_path());
  EXPECT_GT(stats.value("bytes_in", 0), 0) << stats.dump();
  EXPECT_EQ(stats.value("max_workers_per_connection", 0), 1);
}

std::string cost_name(const ::testing::TestParamInfo<const char*>& cost) {
  return std::string(cost.param) == "--block-us" ? "Blocking" : "Working";
}

INSTANTIATE_TEST_SUITE_P(RequestCost, StopUnderLoad, ::testing::Values("--block-us", "--work-us"),
                         cost_name);

}  // namespace
}  // namespace muxlab::test
