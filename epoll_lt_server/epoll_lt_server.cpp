// epoll_lt_server: the echo service on epoll(7), level-triggered.
//
// Level-triggered epoll is poll() with the interest list kept in the kernel:
// the server registers each descriptor once (epoll_ctl) instead of passing the
// whole list on every call, and epoll_wait() returns only the ready ones. A
// descriptor is reported on every call for as long as it stays ready, so:
//  * one read() per event is enough: what is left makes the next epoll_wait()
//    report the descriptor again (--trace shows it re-firing);
//  * EPOLLOUT may be registered only while output is pending: a socket with
//    room in its send buffer is always writable, and would be reported on
//    every call. Arming and disarming it costs an epoll_ctl() each time; the
//    stats count them (epollout_armed / epollout_disarmed, ctl_calls).
#include <sys/epoll.h>

#include <array>
#include <memory>

#include "connection_table.hpp"
#include "echo_connection.hpp"
#include "epoll_loop.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

const ServerSpec kSpec{
    .name = "epoll_lt_server",
    .summary = "TCP echo server on level-triggered epoll(7)",
    .pitfalls = {{"always-epollout",
                  "leave EPOLLOUT registered with nothing to write: every epoll_wait returns at "
                  "once for every connection, a wakeup storm that keeps a core busy while idle"}},
    .add_options = {},
    .validate = {},
    .offers_max_connections = true,
};

struct Client {
  Client(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  std::uint32_t interest = 0;  // the events epoll_ctl last registered
};

using Table = ConnectionTable<Client>;

class EpollLtServer {
 public:
  explicit EpollLtServer(ServerContext& ctx) : ctx_(ctx), epoll_(epoll_create_or_throw()) {
    for (const int fd : {ctx_.shutdown.fd(), ctx_.listener.get()}) {
      if (const int error = epoll_control(epoll_.get(), EPOLL_CTL_ADD, fd, EPOLLIN,
                                          Table::make_tag(fd), ctx_.counters)) {
        throw SystemError("epoll_ctl(ADD)", error);
      }
    }
  }

  void run() {
    std::array<epoll_event, kMaxEvents> events;
    ctx_.ready();  // the loop's own descriptors exist: now clients may come
    while (!ctx_.shutdown.requested()) {
      for (const epoll_event& event : wait_for_events(epoll_.get(), events, -1, ctx_)) {
        dispatch(event);
      }
    }
    ctx_.extra_stats["epollout_armed"] = epollout_armed_;
    ctx_.extra_stats["epollout_disarmed"] = epollout_disarmed_;
    table_.add_stats(ctx_.extra_stats);
  }

 private:
  static constexpr int kMaxEvents = 256;

  void dispatch(const epoll_event& event) {
    const std::uint64_t tag = event.data.u64;
    table_.trace_event(event);
    if (tag == Table::make_tag(ctx_.listener.get())) return accept_client();
    // nullptr: the shutdown pipe (run() sees the request) or a stale event.
    Client* client = table_.find_live(tag);
    if (client != nullptr) serve(*client, tag, event.events);
  }

  void accept_client() {
    // The listener's event promises a waiting connection, so room is made
    // first: the server never holds more than --max-connections clients, and
    // the newcomer is given the descriptor number of the client it replaces.
    // (Should that connection have been aborted meanwhile, a client was closed
    // a little early; the limit still holds.)
    if (table_.full(ctx_.options.max_connections)) table_.evict_oldest();
    // One accept per event: a fuller backlog keeps the listener ready, and LT
    // reports it again on the next call.
    auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
    if (status != Acceptor::Status::kAccepted) return;
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    auto client = std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters);
    client->interest = interest(client->echo);
    const std::uint32_t events = client->interest;
    const std::uint64_t tag = table_.insert(number, std::move(client));
    if (epoll_control(epoll_.get(), EPOLL_CTL_ADD, number, events, tag, ctx_.counters) != 0) {
      table_.close(number, "epoll_ctl(ADD) failed");
    }
  }

  std::uint32_t interest(const EchoConnection& echo) const {
    // EPOLLHUP and EPOLLERR are always reported and need not be asked for.
    std::uint32_t events = 0;
    if (echo.can_read()) events |= EPOLLIN | EPOLLRDHUP;
    if (echo.wants_write()) events |= EPOLLOUT;
    if (ctx_.options.pitfall_is("always-epollout")) {
      // PITFALL always-epollout: an idle socket's send buffer has room, so it
      // is writable; under LT that means "report me on every epoll_wait".
      events |= EPOLLOUT;
    }
    return events;
  }

  void serve(Client& client, std::uint64_t tag, std::uint32_t events) {
    EchoConnection& echo = client.echo;
    // RDHUP, HUP and ERR lead to read() too: it returns the bytes that came
    // before the FIN, then 0, or the pending error. One read per event: if
    // more is queued, the descriptor is still ready and will be reported again.
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) echo.read_once();
    echo.flush();
    if (echo.finished()) {
      table_.close(Table::fd_of(tag),
                   echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    rearm(client, tag);
  }

  void rearm(Client& client, std::uint64_t tag) {
    const std::uint32_t wanted = interest(client.echo);
    if (wanted == client.interest) return;  // the common case: no system call
    const bool had_out = (client.interest & EPOLLOUT) != 0;
    const bool wants_out = (wanted & EPOLLOUT) != 0;
    if (wants_out && !had_out) ++epollout_armed_;
    if (had_out && !wants_out) ++epollout_disarmed_;
    const int fd = Table::fd_of(tag);
    if (ctx_.tracer.enabled()) {
      ctx_.tracer.line("  fd %d: epoll_ctl(MOD) interest now %s", fd,
                       epoll_flags_text(wanted).c_str());
    }
    if (epoll_control(epoll_.get(), EPOLL_CTL_MOD, fd, wanted, tag, ctx_.counters) != 0) {
      table_.close(fd, "epoll_ctl(MOD) failed");
      return;
    }
    client.interest = wanted;
  }

  ServerContext& ctx_;
  Fd epoll_;
  Table table_{ctx_.tracer};
  std::uint64_t epollout_armed_ = 0;
  std::uint64_t epollout_disarmed_ = 0;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::EpollLtServer(ctx).run(); });
}
