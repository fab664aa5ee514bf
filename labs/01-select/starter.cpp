// Lab 01 starter: an echo server on select(2). Complete the TODOs, then run
//   labs/check 01
// The program builds as it is, but it does not serve anyone yet.
//
// What is given: flags, the listening socket, signals and stats (run_server),
// and EchoConnection, which does the reading, writing and buffering of one
// client. What is yours: the readiness loop.
#include <sys/select.h>

#include <array>
#include <cerrno>
#include <memory>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab01_select",
    .summary = "Lab 01: TCP echo server on select(2)",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class Loop {
 public:
  explicit Loop(ServerContext& ctx) : ctx_(ctx) {}

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    while (!ctx_.shutdown.requested()) {
      fd_set readable;
      fd_set writable;
      FD_ZERO(&readable);
      FD_ZERO(&writable);
      int maxfd = -1;
      // TODO(1): watch the shutdown descriptor (ctx_.shutdown.fd()) and the
      // listener (ctx_.listener.get()) for reading, and every client: for
      // reading while echo.can_read(), for writing while echo.wants_write().
      // Keep `maxfd` the LARGEST descriptor you added (which way does the
      // comparison go?). Why must this happen again on every pass?
      (void)maxfd;

      // TODO(2): call select(maxfd + 1, ...) with a timeout of one second (or
      // nullptr); where must the timeval be set, and why? On
      // EINTR go round again; any other failure: throw SystemError("select", errno).
      // Count ctx_.counters.wakeups, add the result to ctx_.counters.events and
      // write one ctx_.tracer.line("wakeup: ...") per wakeup.
      return;  // remove this line once the loop waits in select()

      // TODO(3): if the listener is readable, accept one connection with
      // ctx_.acceptor.accept_one(ctx_.listener.get()). A descriptor >= FD_SETSIZE
      // cannot go into an fd_set: close it instead of storing it.

      // TODO(4): for every client whose bit is set: read_once() if readable,
      // then flush(); when echo.finished(), forget the client (that closes it).
      // Trace one line per descriptor, e.g. "  fd 7: readable".

      // TODO(5): urgent data. Put every client in a third set, `exceptfds`.
      // When its bit comes back set, fetch the byte with recv(fd, &b, 1, MSG_OOB)
      // and send it back with send(fd, &b, 1, MSG_OOB | MSG_NOSIGNAL). The
      // normal stream must still come back unchanged and in order.
    }
  }

 private:
  ServerContext& ctx_;
  // Indexed by descriptor number: select works in descriptor numbers anyway.
  std::array<std::unique_ptr<EchoConnection>, FD_SETSIZE> clients_{};
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Loop(ctx).run(); });
}
