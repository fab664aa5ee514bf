// epoll_et_server: the echo service on epoll(7), edge-triggered.
//
// With EPOLLET a descriptor is reported when its state changes, not while it
// stays ready. So: register once, IN|OUT|ET; read until the edge is used up
// (EAGAIN, or a read shorter than asked unless a hang-up or EPOLLPRI came);
// keep what is left unused (fairness budget, full buffer) on a ready list.
//
// Both epoll servers run a batch of events, then one turn for each connection
// it made ready, and check the stop request between turns (a turn may cost a
// lot: --work-us). epoll_lt_server.cpp and epoll_et_server.cpp share this
// skeleton, its names and order: their diff is what edge-triggering changes
// (labs/04-epoll-et/the-diff.md walks through it).
#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <memory>

#include "connection_table.hpp"
#include "echo_connection.hpp"
#include "epoll_loop.hpp"
#include "eviction.hpp"
#include "ready_list.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

bool drain_to_eagain = false;  // --drain-to-eagain

const ServerSpec kSpec{
    .name = "epoll_et_server",
    .summary = "TCP echo server on edge-triggered epoll(7) with a fairness budget",
    .pitfalls = {{"no-drain", "one read per edge: a message over one 16 KiB chunk stalls"},
                 {"blocking", "blocking sockets: the read that should say EAGAIN stops the server"},
                 {"accept-once", "one accept per edge: all but one of a burst of clients wait"}},
    .add_options =
        [](CLI::App& app) {
          app.add_flag("--drain-to-eagain", drain_to_eagain,
                       "the textbook loop: after a short read, read on until EAGAIN");
        },
    .validate = {},
    .offers_max_connections = true,
};

struct Client {
  Client(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  std::uint32_t pending = 0;  // events reported and not used up yet
  bool queued = false;        // on the ready list
};

using Table = ConnectionTable<Client>;

// Events that send us to read(): the hang-ups too, because read() returns
// the bytes that came before the FIN, then 0, or the pending error.
constexpr std::uint32_t kHangUp = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr std::uint32_t kInput = EPOLLIN | kHangUp;

// read() calls per turn: used up in one go, an edge of a client sending faster
// than we echo would keep the loop to itself.
constexpr int kReadsPerTurn = 4;

class Server {
 public:
  explicit Server(ServerContext& ctx) : ctx_(ctx), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    // One epoll instance holds the interest list for the server's whole life
    // (close-on-exec, like every descriptor here).
    if (!epoll_) throw SystemError("epoll_create1", errno);
    for (const int fd : {ctx_.shutdown.fd(), ctx_.listener.get()}) {
      // The shutdown pipe is level-triggered in both servers: once a signal
      // came it is reported on every call. Generation 0 in the tag: ours.
      const std::uint32_t events = fd == ctx_.listener.get() ? EPOLLIN | EPOLLET : EPOLLIN;
      epoll_event event{.events = events, .data = {.u64 = Table::make_tag(fd)}};
      ctx_.counters.ctl_calls.add();
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
        throw SystemError("epoll_ctl(ADD)", errno);
      }
    }
  }

  void run() {
    std::array<epoll_event, kMaxEvents> events;
    ctx_.ready();  // the loop's own descriptors exist: now clients may come
    while (!ctx_.shutdown.requested()) {
      const int timeout = ready_.empty() ? -1 : 0;  // no edge announces leftovers
      // At most kMaxEvents of the ready descriptors; the others stay on the
      // kernel's ready list for the next call.
      int ready;
      do {  // EINTR (a signal, or SIGSTOP/SIGCONT): ask again. After SIGTERM the
            // shutdown pipe is readable, so the stop is a wakeup like any other.
        ready = ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, timeout);
      } while (ready < 0 && errno == EINTR);
      if (ready < 0) throw SystemError("epoll_wait", errno);
      count_wakeup(ctx_, timeout, ready);
      for (int i = 0; i < ready; ++i) dispatch(events[i]);
      // One turn for each client this batch (or an earlier pass) made ready.
      // The stop request is checked between turns: SIGTERM must not wait for
      // a pass of costly requests (--work-us).
      ready_.take_turns(
          table_, [this] { return ctx_.shutdown.requested(); },
          [this](Client& client, std::uint64_t tag) { serve(client, tag); });
    }
    ctx_.extra_stats["budget_exhausted"] = budget_exhausted_;
    ctx_.extra_stats["ready_list_peak"] = ready_.peak();
    table_.add_stats(ctx_.extra_stats);
    eviction_.add_stats(ctx_.extra_stats);
  }

 private:
  static constexpr int kMaxEvents = 256;

  // An event only records what changed; the work happens in the turns, so
  // that every connection made ready by this batch gets its turn in order.
  void dispatch(const epoll_event& event) {
    const std::uint64_t tag = event.data.u64;
    table_.trace_event(event);
    if (tag == Table::make_tag(ctx_.listener.get())) return accept_clients();
    // nullptr: the shutdown pipe (run() sees the request) or a stale event.
    Client* client = table_.find_live(tag);
    if (client == nullptr) return;
    client->pending |= event.events;
    ready_.push(*client, tag);
  }

  void accept_clients() {
    // One edge may stand for a burst of connections: accept until EAGAIN.
    for (;;) {
      const bool blocking = ctx_.options.pitfall_is("blocking");
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), !blocking);
      if (status == Acceptor::Status::kWouldBlock) return;
      if (status == Acceptor::Status::kAccepted) admit(std::move(fd));
      // PITFALL accept-once: the rest of the backlog made no edge of its own.
      if (ctx_.options.pitfall_is("accept-once")) return;
    }
  }

  void admit(Fd fd) {
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    // Only accept tells whether anyone waits: room is made after it, and the
    // loop's next accept reuses the evicted client's number.
    eviction_.make_room();
    auto client = std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters);
    // Once, never modified: EPOLLOUT fires on a change, not "while writable";
    // input is read only when we ask. ADD reports data that came before it.
    const std::uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
    const std::uint64_t tag = table_.insert(number, std::move(client));
    eviction_.admitted(tag);
    // data carries the generation tag, never a pointer (connection_table.hpp).
    epoll_event event{.events = events, .data = {.u64 = tag}};
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, number, &event) != 0) {
      table_.close(number, "epoll_ctl(ADD) failed");
    }
  }

  void serve(Client& client, std::uint64_t tag) {
    EchoConnection& echo = client.echo;
    const int fd = Table::fd_of(tag);
    int reads = 0;
    auto io = EchoConnection::Io::kProgress;
    while ((client.pending & kInput) && echo.can_read() && reads < kReadsPerTurn) {
      ++reads;
      io = echo.read_once();
      // EAGAIN, FIN or error use the edge up; so does a short read (the queue
      // is empty), unless a FIN waits behind the data with no edge of its own,
      // or urgent data (EPOLLPRI) cut the read short at its mark.
      const bool emptied =
          echo.last_read_short() && !(client.pending & (kHangUp | EPOLLPRI)) && !drain_to_eagain;
      if (io != EchoConnection::Io::kProgress || emptied) client.pending = 0;
      // PITFALL no-drain: one read per edge; what is left made its edge already.
      if (ctx_.options.pitfall_is("no-drain")) client.pending = 0;
    }
    // Writes go until the queue is empty or EAGAIN.
    echo.flush();
    if (reads > 0) trace_turn(ctx_, fd, reads, turn_outcome(echo, io, client.pending & kInput));
    if (echo.finished()) {
      table_.close(fd, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    // Input left and room for it: no edge will come (a full buffer gets EPOLLOUT).
    if ((client.pending & kInput) && echo.can_read()) {
      ++budget_exhausted_;
      ready_.push(client, tag);
    }
  }

  ServerContext& ctx_;
  Fd epoll_;
  Table table_{ctx_.tracer};
  OldestFirstEviction<Table> eviction_{table_, ctx_.options.max_connections};
  ReadyList<Client> ready_;
  std::uint64_t budget_exhausted_ = 0;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::Server(ctx).run(); });
}
