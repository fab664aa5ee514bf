// Lab 04 starter: an echo server on epoll, edge-triggered. Complete the TODOs,
// then
//   labs/check 04
// Edge-triggered means: you are told when something CHANGES, once. Whatever
// you leave unread (or unaccepted) will not be reported again.
#include <sys/epoll.h>

#include <cerrno>
#include <memory>
#include <unordered_map>

#include "echo_connection.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab04_epoll_et",
    .summary = "Lab 04: TCP echo server on epoll, edge-triggered",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class Loop {
 public:
  explicit Loop(ServerContext& ctx) : ctx_(ctx), epoll_(epoll_create_or_throw()) {
    // TODO(1): register the shutdown descriptor (level-triggered is fine) and
    // the listener with EPOLLIN | EPOLLET.
  }

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    while (!ctx_.shutdown.requested()) {
      // TODO(2): epoll_wait(), EINTR, counters, trace (as in lab 03).
      return;  // remove this line once the loop waits in epoll_wait()

      // TODO(3): the listener: accept until kWouldBlock. One accept per edge
      // leaves connections in the backlog that nobody will ever report again.

      // TODO(4): a client, registered once with EPOLLIN | EPOLLOUT | EPOLLET |
      // EPOLLRDHUP: read until kWouldBlock (or until the buffer cap stops you),
      // flush until kWouldBlock. Every socket must be non-blocking: why?
      // Fairness: a client that sends faster than you echo must not keep the
      // loop to itself. Bound the work per event and remember which clients
      // still have readable data left (a "ready list"), serving them again
      // after the other events of this batch.
    }
  }

 private:
  ServerContext& ctx_;
  Fd epoll_;
  epoll_event events_[128]{};
  std::unordered_map<int, std::unique_ptr<EchoConnection>> clients_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Loop(ctx).run(); });
}
