// Lab 03 starter: an echo server on epoll, level-triggered. Complete the
// TODOs, then
//   labs/check 03
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
    .name = "lab03_epoll_lt",
    .summary = "Lab 03: TCP echo server on epoll, level-triggered",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class Loop {
 public:
  explicit Loop(ServerContext& ctx) : ctx_(ctx), epoll_(epoll_create_or_throw()) {
    // TODO(1): register ctx_.shutdown.fd() and ctx_.listener.get() for EPOLLIN
    // with epoll_control(epoll_.get(), EPOLL_CTL_ADD, fd, events, tag, ctx_.counters).
    // The tag comes back in data.u64: the descriptor number is a fine tag.
  }

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    while (!ctx_.shutdown.requested()) {
      // TODO(2): epoll_wait() into events_, retry on EINTR. Count wakeups and
      // events, trace the wakeup and each event (epoll_flags_text helps).
      return;  // remove this line once the loop waits in epoll_wait()

      // TODO(3): the listener: accept one connection (LT reports it again while
      // the backlog is not empty), register it, remember it in clients_.
      // TODO(4): a client: read_once() on input, flush(), close when finished().
    }
  }

 private:
  // TODO(5): the interest of a client. With level triggering, EPOLLOUT is
  // reported on EVERY wait while the socket has room to send, i.e. almost
  // always. Ask for it only while output is queued, and change the interest
  // (EPOLL_CTL_MOD) only when it differs from what is registered.
  static std::uint32_t interest(const EchoConnection& echo) {
    (void)echo;
    return EPOLLIN | EPOLLOUT;
  }

  ServerContext& ctx_;
  Fd epoll_;
  epoll_event events_[128]{};
  std::unordered_map<int, std::unique_ptr<EchoConnection>> clients_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Loop(ctx).run(); });
}
