// Lab 09 starter: N event loops, one per thread, each with its own epoll
// instance and its own clients. It works, and it has the thundering herd:
// every loop watches the one listening socket, so every new connection wakes
// every loop. Complete the TODOs, then
//   labs/check 09
#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

int g_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

const ServerSpec kSpec{
    .name = "lab09_many_cores",
    .summary = "Lab 09: TCP echo server, one epoll loop per thread",
    .pitfalls = {},
    .add_options =
        [](CLI::App& app) {
          app.add_option("--threads", g_threads, "Event loops, one thread each")
              ->check(CLI::Range(1, 1024));
        },
    .validate = {},
    // TODO(1): with SO_REUSEPORT the kernel gives each loop a listening socket
    // of its own. It must be set on every socket before bind(), the first one
    // included: return true here, then bind one more socket per extra loop
    // in run_loops() with listen_tcp(host, port, 4096, true).
    .reuse_port = [] { return false; },
};

class Loop {
 public:
  Loop(ServerContext& ctx, int listen_fd)
      : ctx_(ctx), listen_fd_(listen_fd), acceptor_(ctx.counters, ctx.tracer) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw SystemError("epoll_create1", errno);
    add(ctx_.shutdown.fd(), EPOLLIN);
    // TODO(2): this is the herd: the same listening socket in every loop's
    // epoll, plainly registered. Give each loop its own socket (TODO 1), or
    // register the shared one with EPOLLEXCLUSIVE (ADD only), and compare.
    add(listen_fd_, EPOLLIN);
  }

  void run() {
    epoll_event events[64];
    while (!ctx_.shutdown.requested()) {
      const int ready = ::epoll_wait(epoll_.get(), events, 64, -1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) throw SystemError("epoll_wait", errno);
      ctx_.counters.wakeups.add();
      ctx_.tracer.line("wakeup: %d events", ready);
      for (int i = 0; i < ready; ++i) {
        if (ctx_.tracer.enabled()) {
          ctx_.tracer.line("  fd %d: %s", events[i].data.fd,
                           epoll_flags_text(events[i].events).c_str());
        }
        handle(events[i].data.fd, events[i].events);
      }
    }
  }

 private:
  void add(int fd, std::uint32_t events) {
    epoll_event event{.events = events, .data = {.fd = fd}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      throw SystemError("epoll_ctl(ADD)", errno);
    }
  }

  void handle(int fd, std::uint32_t events) {
    if (fd == listen_fd_) {
      auto [status, client] = acceptor_.accept_one(listen_fd_);
      if (status != Acceptor::Status::kAccepted) return;
      const int number = client.get();
      clients_[number] =
          std::make_unique<EchoConnection>(std::move(client), ctx_.options, ctx_.counters);
      epoll_event event{.events = EPOLLIN | EPOLLRDHUP, .data = {.fd = number}};
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, number, &event) != 0) clients_.erase(number);
      return;
    }
    auto found = clients_.find(fd);
    if (found == clients_.end()) return;  // the shutdown pipe
    EchoConnection& echo = *found->second;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) echo.read_once();
    echo.flush();
    if (echo.finished()) {
      clients_.erase(found);
      return;
    }
    // Level-triggered: EPOLLOUT only while output waits, EPOLLIN while there is room.
    epoll_event event{.events = (echo.can_read() ? EPOLLIN | EPOLLRDHUP : 0u) |
                                (echo.wants_write() ? EPOLLOUT : 0u),
                      .data = {.fd = fd}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event);
  }

  ServerContext& ctx_;
  const int listen_fd_;
  Acceptor acceptor_;  // one per loop: its spare descriptor is not shareable
  Fd epoll_;
  std::unordered_map<int, std::unique_ptr<EchoConnection>> clients_;
};

void run_loops(ServerContext& ctx) {
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < g_threads; ++i) {
    loops.push_back(std::make_unique<Loop>(ctx, ctx.listener.get()));
  }
  std::vector<std::thread> threads;
  for (auto& loop : loops) threads.emplace_back([&loop] { loop->run(); });
  ctx.ready();
  // TODO(3): a loop that throws (epoll_wait failing, say) ends the whole
  // process through std::terminate, and SIGTERM must stop every loop within
  // 3 s. Catch in the thread, stop the others with ctx.shutdown.request(),
  // join everyone, then rethrow the first failure. Count per loop (wakeups,
  // accepts, accept_eagain) into ctx.extra_stats after the joins.
  for (auto& thread : threads) thread.join();
}

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, run_loops);
}
