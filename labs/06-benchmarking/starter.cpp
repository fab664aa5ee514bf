// Lab 06 starter: the baseline every multiplexer is measured against, one
// thread per connection. Complete the TODOs, run it under the benchmark next
// to the other servers, and check it with
//   labs/check 06
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
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    // The acceptor waits for the listener or for the shutdown descriptor.
    pollfd watched[2] = {{ctx_.shutdown.fd(), POLLIN, 0}, {ctx_.listener.get(), POLLIN, 0}};
    while (!ctx_.shutdown.requested()) {
      if (::poll(watched, 2, -1) < 0 && errno != EINTR) throw SystemError("poll", errno);
      // TODO(1): count the wakeup and its events so --stats-json is honest
      // (the benchmark's "wakeups per message" column reads these counters),
      // and trace it: ctx_.tracer.line("wakeup: ...") (--trace must show it).
      if ((watched[1].revents & POLLIN) == 0) continue;
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), /*nonblocking=*/true);
      if (status != Acceptor::Status::kAccepted) continue;
      // TODO(2): start a thread running serve(std::move(fd)) and keep it in
      // threads_ (under mutex_). Join the threads whose connection has ended
      // (their `done` flag is set) on the way: an unjoined thread keeps its
      // stack until someone joins it.
    }
    // TODO(3): join every thread. They all watch the shutdown descriptor,
    // which stays readable once a signal came, so each one returns on its own.
  }

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void serve(Fd fd) {
    EchoConnection echo(std::move(fd), ctx_.options, ctx_.counters);
    // TODO(4): until echo.finished() or shutdown: poll() this thread's two
    // descriptors, the connection (POLLIN while echo.can_read(), POLLOUT while
    // echo.wants_write()) and ctx_.shutdown.fd() (POLLIN). Count each return
    // as one wakeup and its ready descriptors as events, so the counters
    // compare with the multiplexers', and trace one line per wakeup that names
    // the descriptor ("wakeup: fd 7: ..."). Then read_once() if the connection is
    // readable (or reported POLLHUP/POLLERR), and flush() whenever output is
    // queued.
    //
    // Why not simply "blocking read_once(), then blocking flush()"? A client
    // that sends a lot before it reads anything fills its receive buffer with
    // our echo: our write blocks, so we stop reading, so its send blocks too.
    // Both wait for each other forever (the conformance test
    // HalfCloseWhileTheEchoIsStillQueued does exactly this). Waiting for
    // "readable OR writable" is what breaks the cycle, even with one thread
    // per connection.
    (void)echo;
  }

  ServerContext& ctx_;
  std::mutex mutex_;
  std::list<std::unique_ptr<Worker>> threads_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { ThreadPerConnection(ctx).run(); });
}
