// poll_server: the echo service on poll(2).
//
// Unlike select, poll() leaves `events` alone and answers in `revents`, so the
// interest of each slot is set when the connection's state changes and not
// rebuilt every pass. Closed slots are parked on a free list (fd = -1 makes
// poll skip them) and reused in O(1).
#include <poll.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

const ServerSpec kSpec{
    .name = "poll_server",
    .summary = "TCP echo server on poll(2) with POLLRDHUP",
    .pitfalls = {{"rdhup-before-in",
                  "close as soon as POLLRDHUP is seen, before reading what arrived with the FIN: "
                  "the last bytes the client sent are lost"}},
    .add_options = {},
    .validate = {},
};

class PollServer {
 public:
  explicit PollServer(ServerContext& ctx) : ctx_(ctx) {
    add_slot(ctx_.shutdown.fd(), POLLIN, nullptr);
    add_slot(ctx_.listener.get(), POLLIN, nullptr);
  }

  void run() {
    ctx_.ready();  // the loop's own descriptors exist: now clients may come
    while (!ctx_.shutdown.requested()) {
      int ready = -1;
      do {  // EINTR: wait again, so the shutdown is a wakeup like any other
        ready = ::poll(slots_.data(), slots_.size(), -1);
      } while (ready < 0 && errno == EINTR);
      if (ready < 0) throw SystemError("poll", errno);
      ctx_.counters.wakeups.add();
      ctx_.counters.events.add(static_cast<std::uint64_t>(ready));
      ctx_.tracer.line("wakeup: poll returned %d", ready);
      dispatch(ready);
    }
  }

 private:
  static constexpr std::size_t kShutdownSlot = 0;
  static constexpr std::size_t kListenerSlot = 1;

  static short interest(const EchoConnection& echo) {
    // POLLRDHUP asks to be told when the peer has shut down its sending side.
    // POLLHUP and POLLERR are always reported and need not be asked for.
    short events = 0;
    if (echo.can_read()) events |= POLLIN | POLLRDHUP;
    if (echo.wants_write()) events |= POLLOUT;
    return events;
  }

  void add_slot(int fd, short events, std::unique_ptr<EchoConnection> echo) {
    if (!free_slots_.empty()) {
      const std::size_t slot = free_slots_.back();
      free_slots_.pop_back();
      slots_[slot] = pollfd{fd, events, 0};
      connections_[slot] = std::move(echo);
      return;
    }
    slots_.push_back(pollfd{fd, events, 0});
    connections_.push_back(std::move(echo));
  }

  void dispatch(int ready) {
    // Only the slots that existed when poll() was called have a fresh revents;
    // a slot filled by accept during this pass still holds 0 there.
    const std::size_t watched = slots_.size();
    for (std::size_t slot = kListenerSlot; slot < watched && ready > 0; ++slot) {
      // A stop must not wait for the rest of a pass of expensive requests:
      // what is not served now is dropped, its connection closed at exit.
      if (ctx_.shutdown.requested()) return;
      const short revents = slots_[slot].revents;
      if (revents == 0) continue;
      --ready;
      slots_[slot].revents = 0;
      if (ctx_.tracer.enabled()) {
        ctx_.tracer.line("  fd %d: %s", slots_[slot].fd, poll_flags_text(revents).c_str());
      }
      if (slot == kListenerSlot) {
        accept_clients();
      } else {
        serve(slot, revents);
      }
    }
  }

  void accept_clients() {
    // One accept per wakeup: poll is level-triggered and reports the listener
    // again while the backlog is not empty.
    auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
    if (status != Acceptor::Status::kAccepted) return;
    ctx_.tracer.line("accept: new connection fd %d", fd.get());
    auto echo = std::make_unique<EchoConnection>(std::move(fd), ctx_.options, ctx_.counters);
    const int number = echo->fd();
    const short events = interest(*echo);
    add_slot(number, events, std::move(echo));
  }

  void serve(std::size_t slot, short revents) {
    EchoConnection& echo = *connections_[slot];
    if ((revents & POLLRDHUP) && ctx_.options.pitfall_is("rdhup-before-in")) {
      // PITFALL rdhup-before-in: treating "peer shut down" as "nothing left to
      // read". The bytes that arrived before the FIN are still queued; closing
      // now throws them away (and the kernel answers the peer with a reset).
      close_slot(slot, "POLLRDHUP seen, closing at once");
      return;
    }
    // POLLRDHUP, POLLHUP and POLLERR all lead to read(): it returns the data
    // still queued before the FIN, then 0, or the pending error. Reading is the
    // only way to tell those apart without losing bytes.
    if (revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) echo.read_once();
    echo.flush();
    if (echo.finished()) {
      close_slot(slot, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    slots_[slot].events = interest(echo);
  }

  void close_slot(std::size_t slot, const char* why) {
    ctx_.tracer.line("  fd %d: closed (%s)", slots_[slot].fd, why);
    connections_[slot].reset();
    slots_[slot] = pollfd{-1, 0, 0};
    free_slots_.push_back(slot);
  }

  ServerContext& ctx_;
  std::vector<pollfd> slots_;
  std::vector<std::unique_ptr<EchoConnection>> connections_;  // parallel to slots_
  std::vector<std::size_t> free_slots_;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::PollServer(ctx).run(); });
}
