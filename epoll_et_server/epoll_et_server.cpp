// epoll_et_server: the echo service on epoll(7), edge-triggered.
//
// With EPOLLET a descriptor is reported when its state changes (bytes arrive,
// send-buffer space frees up, a connection lands in the backlog), not for as
// long as it stays ready. Three rules follow, and this file is built on them:
//  * every descriptor is non-blocking and every read, accept and write loop runs
//    until EAGAIN: that answer is the only proof the kernel will report the
//    next change;
//  * readiness the server chooses not to use up yet (the fairness budget below,
//    a full output buffer) will not be reported again: the server must remember
//    it itself, on a user-space ready list;
//  * interest never has to change, so a connection costs exactly one
//    epoll_ctl() in its whole life (compare ctl_calls with epoll_lt_server's).
#include <sys/epoll.h>

#include <algorithm>
#include <array>
#include <deque>
#include <memory>

#include "connection_table.hpp"
#include "echo_connection.hpp"
#include "epoll_loop.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

const ServerSpec kSpec{
    .name = "epoll_et_server",
    .summary = "TCP echo server on edge-triggered epoll(7) with a fairness budget",
    .pitfalls =
        {{"no-drain",
          "one read per edge, as if it were level-triggered: a message longer than one read "
          "chunk (16 KiB) stalls until the client sends something more"},
         {"blocking",
          "drain loop on blocking sockets: the read that should say EAGAIN waits for the client "
          "instead, and the whole server stops serving everyone else"},
         {"accept-once",
          "one accept per edge on the listener: of a burst of connections, all but one wait in "
          "the backlog until a later connection arrives"}},
    .add_options = {},
    .validate = {},
    .offers_max_connections = true,
};

// How many read() calls one connection gets per turn. Draining to EAGAIN in
// one go would let a client that sends faster than we echo keep the loop to
// itself; 4 x 16 KiB per turn, then everyone else who is ready gets a turn.
constexpr int kReadsPerTurn = 4;

struct Client {
  Client(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  bool unread = false;  // an input edge came and read() has not said EAGAIN since
  bool queued = false;  // on the ready list
};

using Table = ConnectionTable<Client>;

class EpollEtServer {
 public:
  explicit EpollEtServer(ServerContext& ctx) : ctx_(ctx), epoll_(epoll_create_or_throw()) {
    // The shutdown pipe stays level-triggered: once a signal came it is meant
    // to be seen on every pass until the loop ends.
    watch(ctx_.shutdown.fd(), EPOLLIN, Table::make_tag(ctx_.shutdown.fd()));
    watch(ctx_.listener.get(), EPOLLIN | EPOLLET, Table::make_tag(ctx_.listener.get()));
  }

  void run() {
    std::array<epoll_event, kMaxEvents> events;
    ctx_.ready();  // the loop's own descriptors exist: now clients may come
    while (!ctx_.shutdown.requested()) {
      // Connections on the ready list still have input that the kernel will
      // not announce again: sleeping now could leave them waiting for ever.
      const int timeout = ready_.empty() ? -1 : 0;
      for (const epoll_event& event : wait_for_events(epoll_.get(), events, timeout, ctx_)) {
        dispatch(event);
      }
      take_turns();
    }
    ctx_.extra_stats["budget_exhausted"] = budget_exhausted_;
    ctx_.extra_stats["ready_list_peak"] = ready_list_peak_;
    table_.add_stats(ctx_.extra_stats);
  }

 private:
  static constexpr int kMaxEvents = 256;

  void watch(int fd, std::uint32_t events, std::uint64_t tag) {
    if (const int error =
            epoll_control(epoll_.get(), EPOLL_CTL_ADD, fd, events, tag, ctx_.counters)) {
      throw SystemError("epoll_ctl(ADD)", error);
    }
  }

  // An event only records what changed; the work happens in take_turns(), so
  // that every connection made ready by this batch gets its turn in order.
  void dispatch(const epoll_event& event) {
    const std::uint64_t tag = event.data.u64;
    table_.trace_event(event);
    if (tag == Table::make_tag(ctx_.listener.get())) return accept_clients();
    // nullptr: the shutdown pipe (run() sees the request) or a stale event.
    Client* client = table_.find_live(tag);
    if (client == nullptr) return;
    // RDHUP, HUP and ERR are input edges too: read() returns what came before
    // the FIN, then 0, or the pending error.
    if (event.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) client->unread = true;
    queue(*client, tag);
  }

  void accept_clients() {
    // One edge may stand for a whole burst of connections: accept until EAGAIN,
    // or the ones left in the backlog wait for the next newcomer's edge.
    for (;;) {
      const bool blocking = ctx_.options.pitfall_is("blocking");
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), !blocking);
      if (status == Acceptor::Status::kWouldBlock) return;
      if (status == Acceptor::Status::kAccepted) admit(std::move(fd));
      if (ctx_.options.pitfall_is("accept-once")) {
        // PITFALL accept-once: LT habits again. The rest of the backlog made
        // no new edge and will make none until another connection arrives.
        return;
      }
    }
  }

  void admit(Fd fd) {
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    // Unlike LT, nothing told us whether anyone else is waiting (only accept
    // can tell), so room is made after a successful accept, not before; the
    // next accept of this loop then reuses the evicted client's number.
    if (table_.full(ctx_.options.max_connections)) table_.evict_oldest();
    const std::uint64_t tag =
        table_.insert(number, std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters));
    // Registered once, never modified. Under ET an EPOLLOUT with nothing to
    // write costs nothing: it fires on a change (space freed after the buffer
    // was full, or along with an input edge), never "while writable", so there
    // is no storm to prevent by disarming it. And a full output buffer needs no
    // EPOLLIN removal either: input is only read when we ask for it. Each
    // MOD that LT needs to arm and disarm EPOLLOUT is a system call saved here.
    // If the peer sent before this call, ADD itself reports the pending edge.
    const std::uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    if (epoll_control(epoll_.get(), EPOLL_CTL_ADD, number, events, tag, ctx_.counters) != 0) {
      table_.close(number, "epoll_ctl(ADD) failed");
    }
  }

  void queue(Client& client, std::uint64_t tag) {
    if (client.queued) return;
    client.queued = true;
    ready_.push_back(tag);
    ready_list_peak_ = std::max<std::uint64_t>(ready_list_peak_, ready_.size());
  }

  void take_turns() {
    // One turn for each connection that was ready when the pass began. One
    // that spends its budget is queued again behind them and waits for the next
    // pass, after epoll_wait has had the chance to report everyone else.
    for (std::size_t turns = ready_.size(); turns > 0; --turns) {
      const std::uint64_t tag = ready_.front();
      ready_.pop_front();
      // The tag, not a pointer, is queued: a client evicted since then is
      // simply not found, like a stale event.
      Client* client = table_.find(tag);
      if (client == nullptr) continue;
      client->queued = false;
      serve(*client, tag);
    }
  }

  void serve(Client& client, std::uint64_t tag) {
    EchoConnection& echo = client.echo;
    const int fd = Table::fd_of(tag);
    int reads = 0;
    auto last = EchoConnection::Io::kProgress;
    while (client.unread && echo.can_read() && reads < kReadsPerTurn) {
      ++reads;
      last = echo.read_once();
      // EAGAIN, FIN or an error: this edge is used up.
      if (last != EchoConnection::Io::kProgress) client.unread = false;
      if (ctx_.options.pitfall_is("no-drain")) {
        // PITFALL no-drain: one read per edge. The bytes still queued in the
        // socket made their edge already; nothing will report them again until
        // the client sends more.
        client.unread = false;
      }
    }
    // Writes go until the queue is empty or EAGAIN; after EAGAIN the kernel
    // reports EPOLLOUT when space frees up, and that event brings us back here.
    echo.flush();
    // Input is still waiting and there is room for it: no edge will come for
    // it, so it goes back on the ready list. (With the buffer full, the
    // EPOLLOUT that follows the peer reading its echo brings it back instead.)
    const bool again = !echo.finished() && client.unread && echo.can_read();
    if (ctx_.tracer.enabled() && reads > 0) {
      ctx_.tracer.line("  fd %d: turn: %d read%s, %s", fd, reads, reads == 1 ? "" : "s",
                       turn_outcome(client, again, reads, last));
    }
    if (echo.finished()) {
      table_.close(fd, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    if (again) {
      queue(client, tag);
      if (reads == kReadsPerTurn) ++budget_exhausted_;
    }
  }

  static const char* turn_outcome(const Client& client, bool again, int reads,
                                  EchoConnection::Io last) {
    if (again) {
      return reads == kReadsPerTurn ? "budget spent, back on the ready list"
                                    : "back on the ready list";
    }
    switch (last) {
      case EchoConnection::Io::kWouldBlock:
        return "drained to EAGAIN";
      case EchoConnection::Io::kPeerClosed:
        return "read the FIN";
      case EchoConnection::Io::kFailed:
        return "read failed";
      case EchoConnection::Io::kProgress:
        break;
    }
    if (client.echo.finished()) return "write failed";
    if (client.unread) return "buffer full, waiting for EPOLLOUT";
    return "stopped after one read (pitfall no-drain), data left behind";
  }

  ServerContext& ctx_;
  Fd epoll_;
  Table table_{ctx_.tracer};
  std::deque<std::uint64_t> ready_;  // tags of connections with input left over
  std::uint64_t budget_exhausted_ = 0;
  std::uint64_t ready_list_peak_ = 0;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::EpollEtServer(ctx).run(); });
}
