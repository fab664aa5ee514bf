// epoll_oneshot_pool: the echo service on a pool of worker threads that all
// wait on ONE epoll instance and take one event each.
//
// What it teaches: EPOLLONESHOT turns an event into ownership. A descriptor
// registered with it is reported to one epoll_wait() caller and is then
// disabled (nothing is queued or delivered for it, not even EPOLLHUP) until
// EPOLL_CTL_MOD arms it again. So the worker that receives a connection's
// event owns the connection outright: it reads, echoes and may close and free
// it without a lock, and gives it back to the pool by re-arming it. The life
// of a connection is the loop below: wait -> serve -> re-arm (or close).
// No worker ever waits for a client: output the socket will not take stays in
// the connection's outbox and the connection is re-armed with EPOLLOUT.
//
// Stop: the main thread waits for SIGINT/SIGTERM, wakes every worker through
// an eventfd and joins them. Workers also check the stop request after every
// epoll_wait() and between read chunks: under load the wake-up is one entry
// among many ready connections. Work in flight is dropped, not finished: the
// chunk in hand completes and what the socket takes at once is written, no
// more input is read, events taken later are dropped, and the connections
// still open are closed after the join. A stop costs one chunk, however busy.
//
// Beside it: pool_options.* (flags, pitfalls, keepalive), elastic_threads.*
// (growing and shrinking the workers), no_oneshot.hpp (what the pitfall adds),
// occupancy.hpp and tsan_handoff.hpp (the hand-off as ThreadSanitizer sees it).
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "echo_connection.hpp"
#include "elastic_threads.hpp"
#include "no_oneshot.hpp"
#include "occupancy.hpp"
#include "pool_options.hpp"
#include "server_main.hpp"
#include "tsan_handoff.hpp"

namespace muxlab {
namespace {

// One client. `echo` belongs to whichever worker holds the connection's event;
// `occupancy` is the only member two workers may touch at the same time.
struct Connection {
  Connection(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  Occupancy occupancy;
  NoOneshotBandAid no_oneshot;  // used only by --pitfall no-oneshot
};

epoll_event interest_of(std::uint32_t events, std::uint64_t data) {
  return epoll_event{.events = events, .data = {.u64 = data}};
}

class WorkerPool {
 public:
  WorkerPool(ServerContext& ctx, const PoolOptions& pool)
      : ctx_(ctx),
        pool_(pool),
        // One instance shared by every worker: each epoll_wait() on it takes
        // events off the same ready list.
        epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        oneshot_(ctx.options.pitfall_is("no-oneshot") ? 0u : std::uint32_t{EPOLLONESHOT}),
        accept_once_(ctx.options.pitfall_is("listen-accept-once")),
        threads_(pool.min_threads, pool.max_threads, ctx.tracer,
                 [this](unsigned id) { work(id); }) {
    if (!epoll_) throw SystemError("epoll_create1", errno);
    if (!wake_) throw SystemError("eventfd", errno);
  }

  void run() {
    // The wake-up is level-triggered and never read: once written it stays
    // readable, so every epoll_wait() from then on may return it. The listener
    // is ONESHOT like the clients: one worker at a time accepts.
    for (auto [fd, interest] :
         {std::pair{wake_.get(), interest_of(EPOLLIN, kWakeTag)},
          std::pair{ctx_.listener.get(), interest_of(listener_interest(), kListener)}}) {
      ctx_.counters.ctl_calls.add();
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &interest) != 0) {
        throw SystemError("epoll_ctl(ADD)", errno);
      }
    }
    if (!threads_.start()) throw SystemError("cannot start any worker thread", EAGAIN);
    ctx_.ready();  // the epoll instance and the first workers exist
    pollfd signal{ctx_.shutdown.fd(), POLLIN, 0};
    while (!ctx_.shutdown.requested()) {
      if (::poll(&signal, 1, -1) < 0 && errno != EINTR) break;
    }
    shut_down();
  }

 private:
  static constexpr std::uint64_t kListener = 0;  // data.u64 of the listener's events
  static constexpr std::uint64_t kWakeTag = 1;   // ...of the eventfd; others hold a Connection*
  static constexpr int kReadsPerTurn = 4;

  static std::uint64_t tag(const Connection* c) { return reinterpret_cast<std::uintptr_t>(c); }

  std::uint32_t listener_interest() const {
    // PITFALL listen-accept-once: edge-triggered without ONESHOT, the listener
    // yields one event for a whole burst of connections.
    return accept_once_ ? EPOLLIN | EPOLLET : EPOLLIN | EPOLLONESHOT;
  }

  std::uint32_t interest(const EchoConnection& echo) const {
    // EPOLLET changes nothing while EPOLLONESHOT is set (disabled after one
    // report either way); without ONESHOT (the pitfall) it leaves a plain ET
    // registration. No EPOLLIN while the outbox is full: backpressure.
    std::uint32_t events = EPOLLET | oneshot_;
    if (echo.can_read()) events |= EPOLLIN | EPOLLRDHUP;
    if (echo.wants_write()) events |= EPOLLOUT;
    return events;
  }

  void work(unsigned id) {
    for (;;) {
      epoll_event event{};
      // One event per call: whatever this worker takes, it handles itself, so
      // a slow handler never delays events that another worker could serve.
      // The timeout is the idle limit after which a spare worker retires.
      const int ready =
          ::epoll_wait(epoll_.get(), &event, 1, static_cast<int>(pool_.idle_timeout_ms));
      if (ready < 0) {
        if (errno == EINTR) continue;
        std::fprintf(stderr, "epoll_oneshot_pool: epoll_wait: %s\n", std::strerror(errno));
        ctx_.shutdown.request();
        return;
      }
      ctx_.counters.wakeups.add();
      if (ready == 0) {
        ctx_.tracer.line("worker %u wakeup: idle for %u ms", id, pool_.idle_timeout_ms);
        if (threads_.retire_if_spare(id)) return;
        continue;
      }
      ctx_.counters.events.add();
      // Any event ends the worker once a stop was asked: re-armed busy
      // connections keep the ready list full, so the wake-up may be a hundred
      // entries away. The event is dropped; its connection stays disarmed.
      if (event.data.u64 == kWakeTag || ctx_.shutdown.requested()) {
        ctx_.tracer.line("worker %u wakeup: fd %d (stop)", id, wake_.get());
        return;
      }
      const bool listener = event.data.u64 == kListener;
      auto* conn = listener ? nullptr : reinterpret_cast<Connection*>(event.data.u64);
      if (ctx_.tracer.enabled()) {  // flag names cost a string per event
        ctx_.tracer.line("worker %u wakeup: fd %d %s%s", id,
                         listener ? ctx_.listener.get() : conn->echo.fd(),
                         epoll_flags_text(event.events).c_str(), listener ? " (listener)" : "");
      }
      threads_.begin_work();
      listener ? accept_clients() : serve(*conn, event.events);
      threads_.end_work();
    }
  }

  void accept_clients() {
    // The Acceptor is not thread-safe (it trades a spare descriptor when the
    // process runs out); the listener's ONESHOT lets one worker in at a time.
    listener_occupancy_.enter(most_in_accept_);
    for (;;) {
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
      if (status == Acceptor::Status::kWouldBlock) break;  // backlog empty: safe to re-arm
      if (status == Acceptor::Status::kAccepted) adopt(std::move(fd));
      if (accept_once_) {
        // PITFALL listen-accept-once: one accept per event. The rest of the
        // burst stays in the backlog until yet another client connects.
        listener_occupancy_.leave();
        return;
      }
    }
    listener_occupancy_.leave();
    epoll_event interest = interest_of(listener_interest(), kListener);
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, ctx_.listener.get(), &interest) != 0) {
      std::fprintf(stderr, "epoll_oneshot_pool: cannot re-arm the listener: %s\n",
                   std::strerror(errno));
      ctx_.shutdown.request();
    }
  }

  void adopt(Fd fd) {
    if (!pool_.keepalive.empty()) enable_keepalive(fd.get(), pool_, ctx_.tracer);
    const int number = fd.get();
    auto owned = std::make_unique<Connection>(std::move(fd), ctx_.options, ctx_.counters);
    Connection* conn = owned.get();
    {
      std::lock_guard lock(connections_mutex_);
      connections_.emplace(conn, std::move(owned));
    }
    ctx_.tracer.line("accept: new connection fd %d", number);
    // Registered last: from this call on another worker may receive the
    // connection's first event, so it must be complete (and known to the
    // shutdown) before.
    epoll_event interest = interest_of(EPOLLIN | EPOLLRDHUP | EPOLLET | oneshot_, tag(conn));
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, number, &interest) != 0) {
      ctx_.tracer.line("fd %d: epoll_ctl(ADD): %s", number, std::strerror(errno));
      close(*conn, "not registered");
    }
  }

  void serve(Connection& conn, std::uint32_t events) {
    conn.occupancy.enter(most_in_connection_);
    std::unique_lock<std::mutex> band_aid;
    if (oneshot_ == 0) {  // PITFALL no-oneshot: see no_oneshot.hpp
      band_aid = conn.no_oneshot.lock();
      if (conn.no_oneshot.buried()) return conn.occupancy.leave();
    }
    EchoConnection& echo = conn.echo;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_turn(echo);
    echo.flush();
    if (echo.finished()) {
      conn.occupancy.leave();
      return close(conn, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
    }
    const int fd = echo.fd();
    const std::uint32_t next = interest(echo);
    conn.occupancy.leave();
    rearm(conn, fd, next);
  }

  // At most kReadsPerTurn chunks per event, each written back at once, and
  // none once a stop was asked. Data left in the socket is not lost: re-armed
  // while still readable, the connection is queued again at once, behind the
  // ones already waiting, so one fast sender never holds a worker for ever.
  void read_turn(EchoConnection& echo) {
    for (int turn = 0; turn < kReadsPerTurn && !ctx_.shutdown.requested(); ++turn) {
      if (echo.read_once() != EchoConnection::Io::kProgress) return;
      echo.flush();
    }
  }

  void rearm(Connection& conn, int fd, std::uint32_t events) {
    if (ctx_.options.pitfall_is("no-rearm")) {
      // PITFALL no-rearm: the event was consumed and nothing enables it again;
      // whatever the client sends next is never reported.
      ctx_.tracer.line("fd %d: NOT re-armed (pitfall)", fd);
      return;
    }
    if (ctx_.tracer.enabled()) {
      ctx_.tracer.line("fd %d: re-armed %s", fd, epoll_flags_text(events).c_str());
    }
    // The hand-off. MOD looks at the socket as it is now: already readable
    // (or writable, for EPOLLOUT) means an event is queued at once, so nothing
    // that arrived meanwhile is lost. From then on another worker may serve,
    // close and free the connection: nothing after this call touches `conn`.
    epoll_event interest = interest_of(events, tag(&conn));
    ctx_.counters.ctl_calls.add();
    const int failed = unseen_by_tsan([&] {  // a plain call outside TSan builds
      return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &interest) != 0 ? errno : 0;
    });
    if (failed != 0) {
      // Not re-armed: no event can come, so the connection is still ours.
      ctx_.tracer.line("fd %d: epoll_ctl(MOD): %s", fd, std::strerror(failed));
      close(conn, "re-arm failed");
    }
  }

  void close(Connection& conn, const char* why) {
    ctx_.tracer.line("fd %d: closed (%s)", conn.echo.fd(), why);
    if (oneshot_ == 0) return conn.no_oneshot.bury(epoll_.get(), conn.echo.fd(), ctx_.counters);
    // Safe to free: this worker took the connection's one event and has not
    // re-armed it, so the kernel holds and will queue no event for it, and no
    // other worker can be about to use this pointer. Closing the socket (its
    // only descriptor) also takes it out of the epoll set: no EPOLL_CTL_DEL.
    std::unique_ptr<Connection> doomed;
    std::lock_guard lock(connections_mutex_);
    const auto it = connections_.find(&conn);
    doomed = std::move(it->second);
    connections_.erase(it);
  }

  void shut_down() {
    const ElasticThreads::Summary threads = threads_.stop([this] {
      // Adding 1 to a fresh eventfd cannot overflow it; only EINTR can interrupt.
      while (::eventfd_write(wake_.get(), 1) != 0 && errno == EINTR) {
      }
    });
    // Every worker has returned, so no event is being handled: the connections
    // left have no owner but this thread. Destroying them closes the sockets.
    connections_.clear();
    threads.report(ctx_.extra_stats);
    ctx_.extra_stats["max_workers_per_connection"] = most_in_connection_.get();
    ctx_.extra_stats["max_workers_in_accept"] = most_in_accept_.get();
  }

  ServerContext& ctx_;
  const PoolOptions& pool_;
  Fd epoll_;
  Fd wake_;
  const std::uint32_t oneshot_;  // EPOLLONESHOT, or 0 under --pitfall no-oneshot
  const bool accept_once_;

  std::mutex connections_mutex_;
  std::unordered_map<const Connection*, std::unique_ptr<Connection>> connections_;

  Occupancy listener_occupancy_;
  Counter most_in_connection_;
  Counter most_in_accept_;
  ElasticThreads threads_;  // last: its workers use everything above
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  muxlab::PoolOptions pool;
  const muxlab::ServerSpec spec = muxlab::make_pool_spec(pool);
  return muxlab::run_server(argc, argv, spec, [&pool](muxlab::ServerContext& ctx) {
    muxlab::WorkerPool(ctx, pool).run();
  });
}
