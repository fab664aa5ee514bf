// epoll_loop_per_thread: the echo service on N independent event loops, one
// per thread, each with its own epoll instance and its own connections.
//
// Each loop is the course's level-triggered loop (epoll_lt_server): one read
// per event, EPOLLOUT armed only while output is pending. A connection never
// leaves the loop that accepted it, so no lock guards a connection. What this
// file is about is the one new question: how does a new connection reach a
// loop? --listener chooses one of three answers:
//
//  reuseport  one listening socket per loop, all bound to the same address
//             with SO_REUSEPORT. The kernel gives every socket its own accept
//             queue and puts each new connection in one of them, chosen by a
//             hash of its addresses. Nothing is shared, nobody wakes for
//             nothing; but a loop that is busy (or stuck) still owns its
//             queue, and the connections hashed to it wait.
//  exclusive  one listening socket in every loop's epoll, registered with
//             EPOLLEXCLUSIVE: a new connection wakes one loop (or a few)
//             instead of all of them. Which one is the kernel's choice, and it
//             is not fair: the first loop that is asleep takes it.
//  shared     the same without EPOLLEXCLUSIVE: every new connection wakes every
//             loop, one accepts it and the rest find nothing (accept_eagain).
//             This is the thundering herd, kept so it can be measured.
//
// Per-loop counters (thread0_wakeups, thread0_accepts, thread0_accept_eagain,
// thread0_connections) land in --stats-json; --trace names the loop on every line.
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "connection_table.hpp"
#include "echo_connection.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

// More loops than this is a typo, not a machine: each one costs a thread and
// three descriptors (its epoll instance, its spare for EMFILE, its listener).
constexpr int kMaxThreads = 1024;

struct Flags {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string listener = "reuseport";
};
Flags g_flags;

const ServerSpec kSpec{
    .name = "epoll_loop_per_thread",
    .summary = "TCP echo server: one level-triggered epoll loop per thread",
    .pitfalls =
        {{"blocking-accept",
          "the listener is left blocking and a loop accepts until accept() fails: once the queue "
          "is empty that thread sleeps inside accept(), and its own clients wait unserved"},
         {"exclusive-by-mod",
          "register the listener plainly, then ask for EPOLLEXCLUSIVE with EPOLL_CTL_MOD and "
          "ignore the result: the kernel refuses (EINVAL), and every loop wakes for every "
          "connection, the herd the flag was meant to stop"}},
    .add_options =
        [](CLI::App& app) {
          app.add_option("--threads", g_flags.threads, "Event loops, one thread each")
              ->check(CLI::Range(1, kMaxThreads))
              ->capture_default_str();
          app.add_option("--listener", g_flags.listener,
                         "How new connections reach the loops: reuseport (a listening socket per "
                         "loop), exclusive (one shared, EPOLLEXCLUSIVE), shared (one shared, "
                         "every loop wakes)")
              ->check(CLI::IsMember({"reuseport", "exclusive", "shared"}))
              ->capture_default_str();
        },
    .validate = {},
    .offers_max_connections = false,
    .reuse_port = [] { return g_flags.listener == "reuseport"; },
};

// A connection and the events epoll_ctl last registered for it.
struct Client : EchoConnection {
  using EchoConnection::EchoConnection;
  std::uint32_t interest = 0;
};

using Table = ConnectionTable<Client>;

// What one loop did; written only by its own thread, read after the join.
struct LoopStats {
  std::uint64_t wakeups = 0;
  std::uint64_t accepts = 0;
  std::uint64_t accept_eagain = 0;  // woken for a connection another loop took
  std::uint64_t connections = 0;    // connections this loop served to the end
};

class Loop {
 public:
  // Everything that can fail at start-up happens here, in the main thread,
  // before "listening on": the epoll instance and both registrations.
  Loop(ServerContext& ctx, int index, int listen_fd)
      : ctx_(ctx),
        index_(index),
        listen_fd_(listen_fd),
        tracer_(ctx.tracer.enabled() ? "epoll_loop_per_thread t" + std::to_string(index) : "",
                ctx.tracer.enabled()),
        acceptor_(ctx.counters, tracer_),
        table_(tracer_) {
    // epoll_create1: a new, empty interest list and ready list, owned by this
    // loop alone. CLOEXEC so no child process inherits it.
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw SystemError("epoll_create1", errno);
    // The shutdown pipe is in every loop: it stays readable once a signal came,
    // so under level triggering every loop sees it, however many there are.
    add(ctx_.shutdown.fd(), EPOLLIN, "the shutdown pipe");
    if (ctx_.options.pitfall_is("exclusive-by-mod")) {
      // PITFALL exclusive-by-mod: EPOLLEXCLUSIVE is accepted by EPOLL_CTL_ADD
      // only. This MOD fails with EINVAL, and nobody looks: the listener stays
      // a plain registration in every loop, and the herd is back.
      add(listen_fd_, EPOLLIN, "the listener");
      epoll_event event{.events = EPOLLIN | EPOLLEXCLUSIVE,
                        .data = {.u64 = Table::make_tag(listen_fd_)}};
      const int result = ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listen_fd_, &event);
      ctx_.counters.ctl_calls.add();
      tracer_.line("epoll_ctl(MOD, listener, EPOLLEXCLUSIVE) = %d (%s), ignored", result,
                   result == 0 ? "ok" : std::strerror(errno));
      return;
    }
    // The kernel rule behind --listener exclusive: a socket in several epoll
    // instances wakes all of them per event, unless each registered it with
    // EPOLLEXCLUSIVE; then the wake-up stops at the first instance that has a
    // thread asleep in it. The flag is for EPOLL_CTL_ADD only (MOD: EINVAL).
    listener_events_ = g_flags.listener == "exclusive" ? EPOLLIN | EPOLLEXCLUSIVE : EPOLLIN;
    add(listen_fd_, listener_events_, "the listener");
  }

  // The thread's body. Throws SystemError only for a failure of the loop itself.
  void run() {
    std::array<epoll_event, kMaxEvents> events;
    while (!ctx_.shutdown.requested()) {
      if (paused_ && std::chrono::steady_clock::now() >= resume_at_) resume_accepting();
      // epoll_wait: sleeps until this loop's ready list is not empty. Only this
      // thread waits on this instance, so whatever it returns is this loop's.
      const int ready =
          ::epoll_wait(epoll_.get(), events.data(), kMaxEvents, paused_ ? kPauseMs : -1);
      if (ready < 0) {
        // EINTR: a signal (or SIGSTOP/SIGCONT) interrupted the sleep; if it
        // was SIGTERM the pipe is readable now and the next call says so.
        if (errno == EINTR) continue;
        throw SystemError("epoll_wait", errno);
      }
      ++stats_.wakeups;
      ctx_.counters.wakeups.add();
      ctx_.counters.events.add(static_cast<std::uint64_t>(ready));
      tracer_.line("wakeup: epoll_wait returned %d", ready);
      for (int i = 0; i < ready; ++i) dispatch(events[static_cast<std::size_t>(i)]);
    }
    // Returning destroys the table: every connection of this loop is closed.
  }

  const LoopStats& stats() const { return stats_; }
  void add_stats(std::map<std::string, std::uint64_t>& extra) const {
    const std::string prefix = "thread" + std::to_string(index_) + "_";
    extra[prefix + "wakeups"] = stats_.wakeups;
    extra[prefix + "accepts"] = stats_.accepts;
    extra[prefix + "accept_eagain"] = stats_.accept_eagain;
    extra[prefix + "connections"] = stats_.connections;
    extra["accept_pauses"] += accept_pauses_;
    table_.add_stats(extra);  // stale events: summed over the loops by the caller
  }

 private:
  static constexpr int kMaxEvents = 256;
  static constexpr int kPauseMs = 100;  // how long a loop out of descriptors stops accepting

  void add(int fd, std::uint32_t events, const char* what) {
    epoll_event event{.events = events, .data = {.u64 = Table::make_tag(fd)}};
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      throw SystemError(std::string("epoll_ctl(ADD) for ") + what, errno);
    }
  }

  void dispatch(const epoll_event& event) {
    table_.trace_event(event);
    if (event.data.u64 == Table::make_tag(listen_fd_)) return accept_client();
    // nullptr: the shutdown pipe (run() sees the request) or a stale event.
    if (Client* client = table_.find_live(event.data.u64)) serve(*client, event);
  }

  void accept_client() {
    const bool blocking = ctx_.options.pitfall_is("blocking-accept");
    // PITFALL blocking-accept: a loop that accepts until accept() fails, on a
    // listener without O_NONBLOCK. The last call finds the queue empty and
    // sleeps in the kernel; this loop's clients wait until someone connects.
    for (bool again = true; again; again = blocking) {
      // One accept per event otherwise: a fuller queue keeps the listener
      // ready, and level triggering reports it again on the next wait.
      auto [status, fd] = acceptor_.accept_one(listen_fd_, true);
      if (status == Acceptor::Status::kWouldBlock) {
        // Still readable, yet nothing to accept: out of descriptors, and the
        // spare that would let us refuse politely was taken (descriptor
        // numbers are shared by every thread). Level triggering would report
        // the listener again at once, forever: stop watching it for a while.
        if (pollfd p{listen_fd_, POLLIN, 0}; ::poll(&p, 1, 0) == 1) return pause_accepting();
        // The herd's cost: woken for a connection another loop already took.
        ++stats_.accept_eagain;
        tracer_.line("accept: nothing there (EAGAIN), another loop took it");
        return;
      }
      if (status != Acceptor::Status::kAccepted) continue;
      ++stats_.accepts;
      const int number = fd.get();
      tracer_.line("accept: new connection fd %d", number);
      auto client = std::make_unique<Client>(std::move(fd), ctx_.options, ctx_.counters);
      client->interest = interest(*client);
      const std::uint64_t tag = table_.insert(number, std::move(client));
      epoll_event event{.events = table_.find(tag)->interest, .data = {.u64 = tag}};
      ctx_.counters.ctl_calls.add();
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, number, &event) != 0) {
        table_.close(number, "epoll_ctl(ADD) failed");
      }
    }
  }

  void pause_accepting() {
    // DEL, not MOD: an EPOLLEXCLUSIVE registration cannot be modified.
    ctx_.counters.ctl_calls.add();
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listen_fd_, nullptr);
    paused_ = true;
    resume_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPauseMs);
    ++accept_pauses_;
    tracer_.line("accept: out of descriptors, listener unwatched for %d ms", kPauseMs);
  }

  void resume_accepting() {
    paused_ = false;
    add(listen_fd_, listener_events_, "the listener");
    tracer_.line("accept: listener watched again");
  }

  static std::uint32_t interest(const EchoConnection& echo) {
    // EPOLLHUP and EPOLLERR are always reported and need not be asked for.
    return (echo.can_read() ? EPOLLIN | EPOLLRDHUP : 0u) | (echo.wants_write() ? EPOLLOUT : 0u);
  }

  // The level-triggered echo step of epoll_lt_server: one read, flush, then
  // re-register only if the interest changed.
  void serve(Client& client, const epoll_event& event) {
    const int fd = client.fd();
    if (event.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) client.read_once();
    client.flush();
    if (client.finished()) {
      ++stats_.connections;
      return table_.close(fd,
                          client.peer_closed() ? "peer finished, all echoed" : "connection failed");
    }
    const std::uint32_t wanted = interest(client);
    if (wanted == client.interest) return;
    epoll_event update{.events = wanted, .data = event.data};
    ctx_.counters.ctl_calls.add();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &update) != 0) {
      ++stats_.connections;
      return table_.close(fd, "epoll_ctl(MOD) failed");
    }
    client.interest = wanted;
  }

  ServerContext& ctx_;
  const int index_;
  const int listen_fd_;
  Tracer tracer_;      // names this loop on every line
  Acceptor acceptor_;  // one each: its spare descriptor is not shareable
  Table table_;        // this loop's connections; no other thread sees them
  Fd epoll_;
  std::uint32_t listener_events_ = EPOLLIN;
  bool paused_ = false;
  std::chrono::steady_clock::time_point resume_at_;
  std::uint64_t accept_pauses_ = 0;
  LoopStats stats_;
};

// The port the first listener was given (it may have asked for port 0).
std::uint16_t bound_port(int fd) {
  const std::string address = local_address(fd);  // "HOST:PORT" or "[HOST]:PORT"
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

void run_loops(ServerContext& ctx) {
  const auto count = static_cast<std::size_t>(g_flags.threads);
  // reuseport: run_server's listener already has SO_REUSEPORT (kSpec.reuse_port);
  // each further loop binds its own socket to the same address.
  std::vector<Fd> own_listeners;
  if (g_flags.listener == "reuseport") {
    const std::uint16_t port = bound_port(ctx.listener.get());
    for (std::size_t i = 1; i < count; ++i) {
      own_listeners.push_back(listen_tcp(ctx.options.host, port, 4096, /*reuse_port=*/true));
    }
  }
  if (ctx.options.pitfall_is("blocking-accept")) {
    for (int fd : {ctx.listener.get()}) set_nonblocking(fd, false);
    for (const Fd& fd : own_listeners) set_nonblocking(fd.get(), false);
  }
  std::vector<std::unique_ptr<Loop>> loops;
  for (std::size_t i = 0; i < count; ++i) {
    const int listen_fd =
        i == 0 || own_listeners.empty() ? ctx.listener.get() : own_listeners[i - 1].get();
    loops.push_back(std::make_unique<Loop>(ctx, static_cast<int>(i), listen_fd));
  }

  // The first failure of any loop stops them all (through the shutdown pipe)
  // and is reported by this thread once everyone has been joined.
  std::mutex failure_lock;
  std::optional<SystemError> failure;
  auto body = [&](Loop& loop) {
    try {
      loop.run();
    } catch (const SystemError& error) {
      const std::lock_guard lock(failure_lock);
      if (!failure) failure.emplace(error);
      ctx.shutdown.request();
    }
  };
  std::vector<std::thread> threads;
  try {
    for (std::size_t i = 0; i < count; ++i) {
      threads.emplace_back(body, std::ref(*loops[i]));
      // Named here, before "listening on": /proc/PID/task/*/comm says loopN.
      const std::string name = "loop" + std::to_string(i);
      ::pthread_setname_np(threads.back().native_handle(), name.substr(0, 15).c_str());
    }
  } catch (const std::system_error& error) {
    ctx.shutdown.request();
    for (auto& thread : threads) thread.join();
    throw SystemError("cannot start loop thread " + std::to_string(threads.size()),
                      error.code().value());
  }
  ctx.ready();  // every loop exists and is running: now clients may come
  for (auto& thread : threads) thread.join();
  if (failure) throw *failure;

  std::uint64_t eagain = 0;
  std::uint64_t stale = 0;
  for (const auto& loop : loops) {
    loop->add_stats(ctx.extra_stats);
    eagain += loop->stats().accept_eagain;
    stale += ctx.extra_stats["stale_events_skipped"];
  }
  ctx.extra_stats["threads"] = count;
  ctx.extra_stats["accept_eagain"] = eagain;
  ctx.extra_stats["stale_events_skipped"] = stale;
}

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec, muxlab::run_loops);
}
