// Lab 02 starter: an echo server on poll(2) that uses POLLRDHUP without losing
// the bytes that arrive together with the client's FIN. Complete the TODOs, then
//   labs/check 02
#include <poll.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab02_poll",
    .summary = "Lab 02: TCP echo server on poll(2) with POLLRDHUP",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

class Loop {
 public:
  explicit Loop(ServerContext& ctx) : ctx_(ctx) {
    slots_.push_back(pollfd{ctx_.shutdown.fd(), POLLIN, 0});
    slots_.push_back(pollfd{ctx_.listener.get(), POLLIN, 0});
    clients_.resize(2);  // parallel to slots_: no client for the first two
  }

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    while (!ctx_.shutdown.requested()) {
      // TODO(1): call poll() on the whole array, retry on EINTR, throw
      // SystemError("poll", errno) otherwise. Count wakeups and events and
      // trace "wakeup: poll returned N".
      return;  // remove this line once the loop waits in poll()

      // TODO(2): walk the slots that existed when poll() was called. For the
      // listener, accept one connection and add a slot whose `events` come
      // from interest(). For a client, call serve().
    }
  }

 private:
  // TODO(3): what should a client's slot ask for? Think about the buffer cap
  // (can_read), pending output (wants_write) and the peer's FIN (POLLRDHUP).
  // Asking for POLLOUT when nothing is queued wakes the loop on every pass.
  static short interest(const EchoConnection& echo) {
    (void)echo;
    return POLLIN;
  }

  void serve(std::size_t slot, short revents) {
    EchoConnection& echo = *clients_[slot];
    (void)revents;
    // TODO(4): POLLRDHUP says "the peer will send nothing more", not "there is
    // nothing left to read". Decide which revents lead to read_once(), then
    // flush(). Close only once echo.finished() says everything went back.
    if (echo.finished()) close_slot(slot);
  }

  void close_slot(std::size_t slot) {
    // TODO(5): forget the client and make poll() skip this slot (a negative
    // fd is ignored). Reuse freed slots rather than growing the array forever.
    clients_[slot].reset();
  }

  ServerContext& ctx_;
  std::vector<pollfd> slots_;
  std::vector<std::unique_ptr<EchoConnection>> clients_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Loop(ctx).run(); });
}
