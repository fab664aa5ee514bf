// Lab 06, instructor solution: one thread per connection. It is the lab's
// starter with every TODO done, built as lab06_threads_solution; CI runs
// `labs/check 06` against it (ctest lab06_check).
#include <poll.h>

#include <atomic>
#include <cerrno>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab06_threads",
    .summary = "Lab 06: TCP echo server, one thread per connection",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class ThreadPerConnection {
 public:
  explicit ThreadPerConnection(ServerContext& ctx) : ctx_(ctx) {}

  void run() {
    ctx_.ready();
    pollfd watched[2] = {{ctx_.shutdown.fd(), POLLIN, 0}, {ctx_.listener.get(), POLLIN, 0}};
    while (!ctx_.shutdown.requested()) {
      const int ready = ::poll(watched, 2, -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw SystemError("poll", errno);
      }
      ctx_.counters.wakeups.add();
      ctx_.counters.events.add(static_cast<std::uint64_t>(ready));
      ctx_.tracer.line("wakeup: acceptor's poll returned %d", ready);
      if ((watched[1].revents & POLLIN) == 0) continue;
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), /*nonblocking=*/true);
      if (status != Acceptor::Status::kAccepted) continue;
      std::lock_guard lock(mutex_);
      std::erase_if(threads_, [](const std::unique_ptr<Worker>& worker) {
        if (!worker->done.load()) return false;
        worker->thread.join();
        return true;
      });
      auto& worker = *threads_.emplace_back(std::make_unique<Worker>());
      worker.thread = std::thread([this, &worker, fd = std::move(fd)]() mutable {
        serve(std::move(fd));
        worker.done = true;
      });
    }
    std::lock_guard lock(mutex_);
    for (auto& worker : threads_) worker->thread.join();
    threads_.clear();
  }

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void serve(Fd fd) {
    EchoConnection echo(std::move(fd), ctx_.options, ctx_.counters);
    while (!echo.finished()) {
      const short interest =
          static_cast<short>((echo.can_read() ? POLLIN : 0) | (echo.wants_write() ? POLLOUT : 0));
      pollfd watched[2] = {{echo.fd(), interest, 0}, {ctx_.shutdown.fd(), POLLIN, 0}};
      const int ready = ::poll(watched, 2, -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        return;
      }
      ctx_.counters.wakeups.add();
      ctx_.counters.events.add(static_cast<std::uint64_t>(ready));
      ctx_.tracer.line("wakeup: fd %d: poll returned %d (revents 0x%x)", echo.fd(), ready,
                       static_cast<unsigned>(watched[0].revents));
      if (watched[1].revents != 0) return;  // shutdown: the connection closes with `echo`
      if (watched[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (echo.can_read()) echo.read_once();
      }
      if (echo.wants_write()) echo.flush();
    }
  }

  ServerContext& ctx_;
  std::mutex mutex_;
  std::list<std::unique_ptr<Worker>> threads_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { ThreadPerConnection(ctx).run(); });
}
