// Lab 06 starter: the baseline every multiplexer is measured against, one
// thread per connection with blocking I/O. Complete the TODOs, run it under
// the benchmark next to the other servers, and check it with
//   labs/check 06
#include <poll.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab06_threads",
    .summary = "Lab 06: TCP echo server, one blocking thread per connection",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class ThreadPerConnection {
 public:
  explicit ThreadPerConnection(ServerContext& ctx) : ctx_(ctx) {}

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    // The acceptor waits for the listener or for the shutdown descriptor.
    pollfd watched[2] = {{ctx_.shutdown.fd(), POLLIN, 0}, {ctx_.listener.get(), POLLIN, 0}};
    while (!ctx_.shutdown.requested()) {
      if (::poll(watched, 2, -1) < 0 && errno != EINTR) throw SystemError("poll", errno);
      // TODO(1): count the wakeup and its events so --stats-json is honest
      // (the benchmark's "wakeups per message" column reads these counters).
      if ((watched[1].revents & POLLIN) == 0) continue;
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), /*nonblocking=*/false);
      if (status != Acceptor::Status::kAccepted) continue;
      // TODO(2): start a thread running serve() for this connection and keep
      // it in threads_ (under mutex_).
    }
    // TODO(3): shutdown(fd, SHUT_RDWR) every open connection so the blocked
    // threads return from read(), then join them all.
  }

 private:
  void serve(Fd fd) {
    EchoConnection echo(std::move(fd), ctx_.options, ctx_.counters);
    // TODO(4): read_once(), then flush(), until finished(). On a blocking
    // socket each call waits: count every return from read as one wakeup
    // with one event, so the counters compare with the multiplexers'.
    (void)echo;
  }

  ServerContext& ctx_;
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { ThreadPerConnection(ctx).run(); });
}
