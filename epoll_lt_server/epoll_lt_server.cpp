// epoll_lt_server: the echo service on epoll(7), level-triggered.
//
// Level-triggered epoll is poll() with the interest list kept in the kernel.
// A descriptor is reported on every epoll_wait() while it stays ready, so one
// read() per event is enough (what is left is reported again), and EPOLLOUT is
// registered only while output waits: an idle socket is always writable.
//
// Both epoll servers run a batch of events, then one turn for each connection
// it made ready, and check the stop request between turns (a turn may cost a
// lot: --work-us). epoll_lt_server.cpp and epoll_et_server.cpp share this
// skeleton, its names and order: their diff is what edge-triggering changes
// (labs/04-epoll-et/the-diff.md walks through it).
#include <sys/epoll.h>

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
  // The events epoll_ctl last registered.
  std::uint32_t interest = 0;
  std::uint32_t pending = 0;  // events reported and not used up yet
  bool queued = false;        // on the ready list
};

using Table = ConnectionTable<Client>;

// Events that send us to read(): the hang-ups too, because read() returns
// the bytes that came before the FIN, then 0, or the pending error.
constexpr std::uint32_t kHangUp = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
constexpr std::uint32_t kInput = EPOLLIN | kHangUp;

class Server {
 public:
  explicit Server(ServerContext& ctx) : ctx_(ctx), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    // One epoll instance holds the interest list for the server's whole life
    // (close-on-exec, like every descriptor here).
    if (!epoll_) throw SystemError("epoll_create1", errno);
    for (const int fd : {ctx_.shutdown.fd(), ctx_.listener.get()}) {
      // The shutdown pipe is level-triggered in both servers: once a signal
      // came it is reported on every call. Generation 0 in the tag: ours.
      const std::uint32_t events = EPOLLIN;
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
      const int timeout = -1;  // nothing waits in user space
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
    ctx_.extra_stats["epollout_armed"] = epollout_armed_;
    ctx_.extra_stats["epollout_disarmed"] = epollout_disarmed_;
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
    // The event promises a waiting connection: room first, and the newcomer
    // takes the evicted client's number. One accept: LT reports the rest.
    eviction_.make_room();
    auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
    if (status == Acceptor::Status::kAccepted) admit(std::move(fd));
  }

  void admit(Fd fd) {
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    auto client = std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters);
    const std::uint32_t events = client->interest = interest(client->echo);
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
    // One read per event: if more is queued, the descriptor is still ready
    // and will be reported again.
    if (client.pending & kInput) echo.read_once();
    client.pending = 0;
    // Writes go until the queue is empty or EAGAIN.
    echo.flush();
    if (echo.finished()) {
      table_.close(fd, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    rearm(client, tag);
  }

  std::uint32_t interest(const EchoConnection& echo) const {
    // EPOLLHUP and EPOLLERR are always reported and need not be asked for.
    std::uint32_t events = echo.can_read() ? EPOLLIN | EPOLLRDHUP : 0;
    // PITFALL always-epollout: an idle socket's send buffer has room, so it
    // is writable; under LT that means "report me on every epoll_wait".
    if (echo.wants_write() || ctx_.options.pitfall_is("always-epollout")) events |= EPOLLOUT;
    return events;
  }

  void rearm(Client& client, std::uint64_t tag) {
    const std::uint32_t wanted = interest(client.echo);
    if (wanted == client.interest) return;  // the common case: no system call
    if ((wanted & ~client.interest) & EPOLLOUT) ++epollout_armed_;
    if ((client.interest & ~wanted) & EPOLLOUT) ++epollout_disarmed_;
    const int fd = Table::fd_of(tag);
    ctx_.tracer.line("  fd %d: epoll_ctl(MOD) interest now %s", fd,
                     epoll_flags_text(wanted).c_str());
    // MOD replaces the whole registration: the tag is given again.
    epoll_event event{.events = wanted, .data = {.u64 = tag}};
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &event) != 0) {
      return table_.close(fd, "epoll_ctl(MOD) failed");
    }
    client.interest = wanted;
  }

  ServerContext& ctx_;
  Fd epoll_;
  Table table_{ctx_.tracer};
  OldestFirstEviction<Table> eviction_{table_, ctx_.options.max_connections};
  ReadyList<Client> ready_;
  std::uint64_t epollout_armed_ = 0;
  std::uint64_t epollout_disarmed_ = 0;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::Server(ctx).run(); });
}
