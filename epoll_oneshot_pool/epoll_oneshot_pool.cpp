// epoll_oneshot_pool: the echo service on a pool of worker threads that share
// one epoll instance and take one event each (the design of seed 000, fixed).
//
// The kernel rule everything rests on: a descriptor registered with
// EPOLLONESHOT is reported to one epoll_wait() caller and is then disabled (no
// event is queued or delivered for it, not even EPOLLHUP) until it is re-armed
// with EPOLL_CTL_MOD. So the worker that receives a connection's event owns the
// connection outright: it reads, echoes and may close it without a lock, and
// hands it back to the pool by re-arming it. No worker ever waits for a client:
// output the socket will not take stays in the connection's outbox and the
// connection is re-armed for EPOLLOUT.
//
// Threads: --min-threads workers start; when an event finds every worker busy,
// one more starts (up to --max-threads); a worker that waited --idle-timeout-ms
// without an event exits while more than the minimum remain. The main thread
// only waits for SIGINT/SIGTERM, then wakes every worker through an eventfd,
// joins them and closes what is left.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "echo_connection.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"
#include "tsan_handoff.hpp"

namespace muxlab {
namespace {

struct PoolOptions {
  unsigned min_threads = 2;
  unsigned max_threads = 32;
  unsigned idle_timeout_ms = 5000;
  std::vector<int> keepalive;  // IDLE (s), INTVL (s), CNT (probes); empty: off
};

constexpr unsigned kMostThreads = 1024;

ServerSpec make_spec(PoolOptions& pool) {
  return ServerSpec{
      .name = "epoll_oneshot_pool",
      .summary = "TCP echo server: worker threads share one epoll fd, one EPOLLONESHOT event each",
      .pitfalls = {{"no-oneshot",
                    "register clients without EPOLLONESHOT: a second event for a connection "
                    "reaches another worker while the first is still inside it (see the "
                    "max_workers_per_connection stat), and nothing can ever be freed safely"},
                   {"no-rearm",
                    "forget the EPOLL_CTL_MOD after handling an event: the connection is never "
                    "reported again and stalls after its first message"},
                   {"listen-accept-once",
                    "register the listener edge-triggered without EPOLLONESHOT and accept one "
                    "connection per event, as the seed does: connections that arrive together "
                    "make one edge and all but one wait in the backlog"}},
      .add_options =
          [&pool](CLI::App& app) {
            app.add_option("--min-threads", pool.min_threads, "Workers kept even when idle")
                ->check(CLI::Range(1u, kMostThreads))
                ->capture_default_str();
            app.add_option("--max-threads", pool.max_threads,
                           "Most workers; one more starts whenever every worker is busy")
                ->check(CLI::Range(1u, kMostThreads))
                ->capture_default_str();
            app.add_option("--idle-timeout-ms", pool.idle_timeout_ms,
                           "A worker idle this long exits while more than the minimum remain")
                ->check(CLI::Range(1u, 86'400'000u))
                ->capture_default_str();
            app.add_option("--keepalive", pool.keepalive,
                           "TCP keepalive on accepted sockets: IDLE,INTVL,CNT "
                           "(seconds before the first probe, seconds between probes, probes)")
                ->delimiter(',')
                ->expected(3);
          },
      .validate = [&pool]() -> std::string {
        if (pool.max_threads < pool.min_threads) {
          return "--max-threads must be at least --min-threads";
        }
        if (!pool.keepalive.empty()) {
          // The kernel's own limits for TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
          const int most[] = {32767, 32767, 127};
          for (std::size_t i = 0; i < 3; ++i) {
            if (pool.keepalive[i] < 1 || pool.keepalive[i] > most[i]) {
              return "--keepalive IDLE,INTVL,CNT: each must be from 1 to " +
                     std::to_string(most[i]) + " (got " + std::to_string(pool.keepalive[i]) + ")";
            }
          }
        }
        return {};
      },
  };
}

// How many workers are inside one handler right now, and the most ever seen.
//
// The atomic is also the hand-off that ThreadSanitizer can see: the kernel
// orders "worker A re-arms" before "worker B receives the event", but TSan does
// not model EPOLL_CTL_MOD, so A's release in leave() and B's acquire in enter()
// state that order in C++ terms.
class Occupancy {
 public:
  void enter(Counter& most) { most.raise_to(inside_.fetch_add(1, std::memory_order_acq_rel) + 1); }
  void leave() { inside_.fetch_sub(1, std::memory_order_release); }

 private:
  std::atomic<std::uint64_t> inside_{0};
};

// One client. `echo` belongs to whichever worker holds the connection's event;
// `occupancy` is the only member two workers may touch at the same time.
struct Connection {
  Connection(Fd fd, const ServerOptions& options, Counters& counters)
      : echo(std::move(fd), options, counters) {}
  EchoConnection echo;
  Occupancy occupancy;
  // Used only by --pitfall no-oneshot (see serve()).
  std::mutex band_aid;
  bool buried = false;
};

class WorkerPool {
 public:
  WorkerPool(ServerContext& ctx, const PoolOptions& pool)
      : ctx_(ctx),
        pool_(pool),
        epoll_(epoll_create_or_throw()),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        oneshot_(ctx.options.pitfall_is("no-oneshot") ? 0u : std::uint32_t{EPOLLONESHOT}),
        accept_once_(ctx.options.pitfall_is("listen-accept-once")) {
    if (!wake_) throw SystemError("eventfd", errno);
  }

  void run() {
    // The wake-up is level-triggered and never read: once written it stays
    // readable, so every epoll_wait() from then on returns it, including the
    // ones of workers that are busy at the moment of the signal.
    register_or_throw(wake_.get(), EPOLLIN, kWakeTag);
    register_or_throw(ctx_.listener.get(), listener_interest(), kListenerTag);
    {
      std::lock_guard lock(pool_mutex_);
      for (unsigned i = 0; i < pool_.min_threads; ++i) start_worker_locked();
      if (live_ == 0) throw SystemError("cannot start any worker thread", EAGAIN);
    }
    ctx_.ready();  // the epoll instance and the first workers exist
    wait_for_stop();
    shut_down();
  }

 private:
  static constexpr std::uint64_t kListenerTag = 0;  // data.u64 of the listener's events
  static constexpr std::uint64_t kWakeTag = 1;      // ...of the eventfd; others hold a Connection*
  static constexpr int kReadsPerTurn = 4;

  static std::uint64_t tag(const Connection* conn) {
    return reinterpret_cast<std::uintptr_t>(conn);
  }

  std::uint32_t listener_interest() const {
    if (accept_once_) {
      // PITFALL listen-accept-once: the seed's registration. Edge-triggered
      // alone, the listener yields one event for a whole burst of connections.
      return EPOLLIN | EPOLLET;
    }
    return EPOLLIN | EPOLLONESHOT;
  }

  std::uint32_t interest(const EchoConnection& echo) const {
    // EPOLLET changes nothing while EPOLLONESHOT is set (the item is disabled
    // after one report either way); it is here so that dropping ONESHOT (the
    // pitfall) leaves an edge-triggered registration like the seed's. EPOLLIN is
    // left out while the outbox is full: that is the backpressure of the contract.
    std::uint32_t events = EPOLLET | oneshot_;
    if (echo.can_read()) events |= EPOLLIN | EPOLLRDHUP;
    if (echo.wants_write()) events |= EPOLLOUT;
    return events;
  }

  void register_or_throw(int fd, std::uint32_t events, std::uint64_t data) {
    if (const int error =
            epoll_control(epoll_.get(), EPOLL_CTL_ADD, fd, events, data, ctx_.counters))
      throw SystemError("epoll_ctl(ADD)", error);
  }

  // ---- a worker ----------------------------------------------------------

  void work(unsigned id) {
    for (;;) {
      epoll_event event{};
      // One event per call: whatever this worker takes, it handles itself, so a
      // slow handler never delays events that another worker could serve.
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
        if (retire_if_spare(id)) return;
        continue;
      }
      ctx_.counters.events.add();
      if (event.data.u64 == kWakeTag || ctx_.shutdown.requested()) {
        ctx_.tracer.line("worker %u wakeup: fd %d (stop)", id, wake_.get());
        return;
      }
      const bool listener = event.data.u64 == kListenerTag;
      auto* conn = listener ? nullptr : reinterpret_cast<Connection*>(event.data.u64);
      if (ctx_.tracer.enabled()) {  // flag names cost a string per event
        ctx_.tracer.line("worker %u wakeup: fd %d %s%s", id,
                         listener ? ctx_.listener.get() : conn->echo.fd(),
                         epoll_flags_text(event.events).c_str(), listener ? " (listener)" : "");
      }
      begin_work();
      if (listener) {
        accept_clients();
      } else {
        serve(*conn, event.events);
      }
      end_work();
    }
  }

  void accept_clients() {
    // The Acceptor is not thread-safe (it trades a spare descriptor when the
    // process runs out). That is fine here because the listener is ONESHOT too:
    // until the re-arm below, this worker is the only one in this function.
    listener_occupancy_.enter(most_in_accept_);
    for (;;) {
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get());
      if (status == Acceptor::Status::kWouldBlock) break;  // backlog empty: safe to re-arm
      if (status == Acceptor::Status::kAccepted) adopt(std::move(fd));
      if (accept_once_) {
        // PITFALL listen-accept-once: one accept per event. The rest of the
        // burst stays in the backlog, and an edge-triggered listener will not
        // report it again until yet another client connects. Two workers can
        // also be in here at once (no ONESHOT), racing on the Acceptor.
        listener_occupancy_.leave();
        return;
      }
    }
    listener_occupancy_.leave();
    if (const int error = epoll_control(epoll_.get(), EPOLL_CTL_MOD, ctx_.listener.get(),
                                        listener_interest(), kListenerTag, ctx_.counters)) {
      std::fprintf(stderr, "epoll_oneshot_pool: cannot re-arm the listener: %s\n",
                   std::strerror(error));
      ctx_.shutdown.request();
    }
  }

  void adopt(Fd fd) {
    if (!pool_.keepalive.empty()) enable_keepalive(fd.get());
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
    const std::uint32_t events = EPOLLIN | EPOLLRDHUP | EPOLLET | oneshot_;
    if (const int error =
            epoll_control(epoll_.get(), EPOLL_CTL_ADD, number, events, tag(conn), ctx_.counters)) {
      ctx_.tracer.line("fd %d: epoll_ctl(ADD): %s", number, std::strerror(error));
      close(*conn, "not registered");
    }
  }

  void enable_keepalive(int fd) {
    // The kernel probes an idle peer and resets the connection when it has
    // vanished, so dead clients do not hold a connection forever (the seed's
    // lifecycle management, without a list of connections to scan).
    const int on = 1;
    const auto& k = pool_.keepalive;
    if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k[0], sizeof k[0]) != 0 ||
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k[1], sizeof k[1]) != 0 ||
        ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k[2], sizeof k[2]) != 0) {
      ctx_.tracer.line("fd %d: keepalive not set: %s", fd, std::strerror(errno));
    }
  }

  void serve(Connection& conn, std::uint32_t events) {
    conn.occupancy.enter(most_in_connection_);
    std::unique_lock<std::mutex> band_aid;
    if (oneshot_ == 0) {
      // PITFALL no-oneshot: without ONESHOT a second event for this connection
      // can reach another worker right now (the count above shows it). The lock
      // people reach for keeps the demonstration from corrupting memory, but it
      // parks a worker on a connection that someone else is already serving.
      band_aid = std::unique_lock(conn.band_aid);
      if (conn.buried) {
        conn.occupancy.leave();
        return;
      }
    }
    EchoConnection& echo = conn.echo;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_turn(echo);
    echo.flush();
    if (echo.finished()) {
      conn.occupancy.leave();
      close(conn, echo.peer_closed() ? "peer finished, all echoed" : "connection failed");
      return;
    }
    const int fd = echo.fd();
    const std::uint32_t next = interest(echo);
    conn.occupancy.leave();
    rearm(conn, fd, next);
  }

  // At most kReadsPerTurn chunks per event, each written back at once. Leaving
  // data in the socket loses nothing: EPOLL_CTL_MOD checks readiness, so a
  // connection re-armed while still readable is queued again at once, behind
  // the connections that were already waiting. That is what keeps one fast
  // sender from holding a worker forever.
  void read_turn(EchoConnection& echo) {
    for (int turn = 0; turn < kReadsPerTurn && !ctx_.shutdown.requested(); ++turn) {
      if (echo.read_once() != EchoConnection::Io::kProgress) return;
      echo.flush();
    }
  }

  void rearm(Connection& conn, int fd, std::uint32_t events) {
    if (ctx_.options.pitfall_is("no-rearm")) {
      // PITFALL no-rearm: the event was consumed and nothing enables it again.
      // The connection stays registered but disabled; whatever the client sends
      // next is never reported, and the client waits forever.
      ctx_.tracer.line("fd %d: NOT re-armed (pitfall)", fd);
      return;
    }
    if (ctx_.tracer.enabled()) {
      ctx_.tracer.line("fd %d: re-armed %s", fd, epoll_flags_text(events).c_str());
    }
    // The hand-off. Until the kernel re-enables the item this worker owns the
    // connection; from then on another worker may receive its event, and even
    // close and free it, so nothing after this call may touch `conn`.
    // (unseen_by_tsan: see tsan_handoff.hpp; it changes nothing outside TSan builds.)
    const int error = unseen_by_tsan([&] {
      return epoll_control(epoll_.get(), EPOLL_CTL_MOD, fd, events, tag(&conn), ctx_.counters);
    });
    if (error != 0) {
      // Not re-armed: no event can come, so the connection is still ours.
      ctx_.tracer.line("fd %d: epoll_ctl(MOD): %s", fd, std::strerror(error));
      close(conn, "re-arm failed");
    }
  }

  void close(Connection& conn, const char* why) {
    ctx_.tracer.line("fd %d: closed (%s)", conn.echo.fd(), why);
    if (oneshot_ == 0) {
      bury(conn);
      return;
    }
    // Safe close. This worker received the connection's one event and has not
    // re-armed it, so the kernel holds no event for it and will queue none: no
    // other worker can be about to use this object, and it may be freed now.
    // Closing the socket also takes it out of the epoll set (this is its only
    // descriptor: close-on-exec, never duplicated), so no EPOLL_CTL_DEL is needed.
    // Without ONESHOT another worker may have just returned from epoll_wait()
    // with this very pointer (seed 001's DEL-versus-pending-event race); freeing
    // it here would hand that worker freed memory.
    std::unique_ptr<Connection> doomed;
    {
      std::lock_guard lock(connections_mutex_);
      const auto it = connections_.find(&conn);
      doomed = std::move(it->second);
      connections_.erase(it);
    }
  }

  void bury(Connection& conn) {
    // PITFALL no-oneshot: nobody can tell whether another worker holds an event
    // for this connection, so it is never freed before exit. The peer is told
    // goodbye, the interest is dropped, and the object is kept until shutdown.
    epoll_control(epoll_.get(), EPOLL_CTL_DEL, conn.echo.fd(), 0, tag(&conn), ctx_.counters);
    ::shutdown(conn.echo.fd(), SHUT_RDWR);
    conn.buried = true;
  }

  // ---- the pool ----------------------------------------------------------

  bool start_worker_locked() {
    const unsigned id = next_id_++;
    try {
      threads_.emplace(id, std::thread(&WorkerPool::work, this, id));
    } catch (const std::system_error& e) {
      // Out of threads or memory: the workers already running carry on.
      std::fprintf(stderr, "epoll_oneshot_pool: cannot start a worker: %s\n", e.what());
      return false;
    }
    ++live_;
    peak_ = std::max(peak_, live_);
    return true;
  }

  void begin_work() {
    std::vector<std::thread> retired;
    {
      std::lock_guard lock(pool_mutex_);
      ++busy_;
      if (busy_ < live_ || live_ >= pool_.max_threads || stopping_) return;
      // Every worker is busy, this one included: start one more so that the
      // next event does not wait for a handler to finish.
      ctx_.tracer.line("pool: all %u workers busy, starting one more", live_);
      retired = take_retired_locked();
      if (start_worker_locked()) ++grows_;
    }
    for (auto& thread : retired) thread.join();
  }

  void end_work() {
    std::lock_guard lock(pool_mutex_);
    --busy_;
  }

  bool retire_if_spare(unsigned id) {
    std::lock_guard lock(pool_mutex_);
    if (live_ <= pool_.min_threads || stopping_) return false;
    --live_;
    ++shrinks_;
    // Joined by whoever starts the next worker, or at shutdown.
    retired_.push_back(id);
    ctx_.tracer.line("pool: worker %u retiring, %u left", id, live_);
    return true;
  }

  std::vector<std::thread> take_retired_locked() {
    std::vector<std::thread> retired;
    for (const unsigned id : retired_) {
      retired.push_back(std::move(threads_.at(id)));
      threads_.erase(id);
    }
    retired_.clear();
    return retired;
  }

  void wait_for_stop() {
    pollfd signal{ctx_.shutdown.fd(), POLLIN, 0};
    while (!ctx_.shutdown.requested()) {
      if (::poll(&signal, 1, -1) < 0 && errno != EINTR) break;
    }
  }

  void shut_down() {
    std::map<unsigned, std::thread> everyone;
    {
      std::lock_guard lock(pool_mutex_);
      stopping_ = true;  // no worker starts or retires from now on
      threads_at_stop_ = live_;
      everyone.swap(threads_);
      retired_.clear();
    }
    ctx_.tracer.line("pool: stopping, waking %u workers", threads_at_stop_);
    // Adding 1 to a fresh eventfd cannot overflow it; only EINTR can interrupt.
    while (::eventfd_write(wake_.get(), 1) != 0 && errno == EINTR) {
    }
    for (auto& [id, thread] : everyone) thread.join();
    // Every worker has returned, so no event is being handled: the connections
    // left have no owner but this thread. Destroying them closes the sockets.
    connections_.clear();

    ctx_.extra_stats["threads_now"] = threads_at_stop_;
    ctx_.extra_stats["threads_peak"] = peak_;
    ctx_.extra_stats["pool_grows"] = grows_;
    ctx_.extra_stats["pool_shrinks"] = shrinks_;
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

  std::mutex pool_mutex_;                    // guards everything below
  std::map<unsigned, std::thread> threads_;  // started and not yet joined
  std::vector<unsigned> retired_;            // returned, waiting to be joined
  unsigned next_id_ = 1;
  unsigned live_ = 0;
  unsigned busy_ = 0;
  unsigned peak_ = 0;
  unsigned grows_ = 0;
  unsigned shrinks_ = 0;
  unsigned threads_at_stop_ = 0;
  bool stopping_ = false;
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  muxlab::PoolOptions pool;
  const muxlab::ServerSpec spec = muxlab::make_spec(pool);
  return muxlab::run_server(argc, argv, spec, [&pool](muxlab::ServerContext& ctx) {
    muxlab::WorkerPool(ctx, pool).run();
  });
}
