#include "rules_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "kernel_view.hpp"
#include "net.hpp"

namespace muxlab::rules {

namespace {

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<long>(0, left.count()));
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

std::uint16_t bound_port(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) fail("getsockname");
  return ntohs(address.sin_port);
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A handler that does nothing: its only job is to make a blocked epoll_wait
// return EINTR when a waiter has to be released.
void ignore_signal(int) {}

void install_release_signal() {
  static const bool installed = [] {
    struct sigaction action {};
    action.sa_handler = ignore_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: the point is to interrupt the wait
    return ::sigaction(SIGUSR1, &action, nullptr) == 0;
  }();
  if (!installed) fail("sigaction(SIGUSR1)");
}

}  // namespace

void PrintTo(Transport transport, std::ostream* out) {
  *out << (transport == Transport::kTcp ? "loopback TCP" : "AF_UNIX socketpair");
}

std::string transport_name(const ::testing::TestParamInfo<Transport>& info) {
  return info.param == Transport::kTcp ? "tcp" : "unix";
}

Fd tcp_listener(std::uint16_t* port) {
  Fd listener = listen_tcp("127.0.0.1", 0, 16);
  *port = bound_port(listener.get());
  return listener;
}

Fd tcp_connect_nonblocking(std::uint16_t port, int* error) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket");
  const sockaddr_in address = loopback(port);
  *error = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0
               ? 0
               : errno;
  return fd;
}

Fd tcp_port_without_listener(std::uint16_t* port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket");
  const sockaddr_in address = loopback(0);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    fail("bind");
  }
  *port = bound_port(fd.get());
  return fd;
}

Pair connected_pair(Transport transport) {
  if (transport == Transport::kUnix) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      fail("socketpair");
    }
    return Pair{Fd(fds[0]), Fd(fds[1])};
  }
  std::uint16_t port = 0;
  Fd listener = tcp_listener(&port);
  int error = 0;
  Fd a = tcp_connect_nonblocking(port, &error);
  if (error != 0 && error != EINPROGRESS) {
    errno = error;
    fail("connect");
  }
  // The handshake completes in the kernel on its own; wait for both halves.
  if ((wait_for_poll(listener.get(), POLLIN) & POLLIN) == 0) fail("no connection to accept");
  Fd b(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!b) fail("accept4");
  if ((wait_for_poll(a.get(), POLLOUT) & POLLOUT) == 0) fail("connect did not complete");
  no_delay(a.get());
  no_delay(b.get());
  return Pair{std::move(a), std::move(b)};
}

Fd unconnected_socket(Transport transport) {
  const int family = transport == Transport::kTcp ? AF_INET : AF_UNIX;
  Fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket");
  return fd;
}

bool send_now(int fd, std::string_view data, int flags) {
  const ssize_t n = ::send(fd, data.data(), data.size(), flags | MSG_NOSIGNAL);
  return n == static_cast<ssize_t>(data.size());
}

std::string read_now(int fd, std::size_t limit) {
  std::string buffer(limit, '\0');
  const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
  buffer.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return buffer;
}

std::string read_exactly(int fd, std::size_t size) {
  const auto deadline = Clock::now() + kDeadline;
  std::string got;
  while (got.size() < size && Clock::now() < deadline) {
    std::string chunk(size - got.size(), '\0');
    const ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
    if (n > 0) {
      got.append(chunk.data(), static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, remaining_ms(deadline));
    } else if (errno != EINTR) {
      break;
    }
  }
  return got;
}

int bytes_queued(int fd) {
  int queued = 0;
  if (::ioctl(fd, FIONREAD, &queued) != 0) return -1;
  return queued;
}

bool wait_for_bytes(int fd, int size) {
  const auto deadline = Clock::now() + kDeadline;
  while (bytes_queued(fd) < size) {
    if (Clock::now() >= deadline) return false;
    // Some bytes may already be there, which keeps poll() from sleeping, so
    // pace the re-check instead of spinning.
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1) > 0) std::this_thread::sleep_for(1ms);
  }
  return true;
}

short wait_for_poll(int fd, short want) {
  const auto deadline = Clock::now() + kDeadline;
  pollfd p{fd, want, 0};
  for (;;) {
    p.revents = 0;
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno != EINTR) return 0;
    if ((p.revents & want) == want || Clock::now() >= deadline) return p.revents;
    // Another bit (say POLLIN) is already set while we wait for the one that
    // matters (say POLLRDHUP): poll() returns at once, so pace the loop.
    if (r > 0) std::this_thread::sleep_for(1ms);
  }
}

std::size_t fill_send_buffer(int fd) {
  const std::string block(64 * 1024, 'f');
  std::size_t sent = 0;
  const auto deadline = Clock::now() + kDeadline;
  while (Clock::now() < deadline) {
    const ssize_t n = ::send(fd, block.data(), block.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) fail("send while filling");
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(kQuiet.count())) == 0) return sent;
  }
  throw std::runtime_error("send buffer never filled");
}

Fd make_epoll() {
  Fd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) fail("epoll_create1");
  return fd;
}

int ctl(int epoll_fd, int op, int fd, std::uint32_t events, std::uint64_t tag) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = tag;
  return ::epoll_ctl(epoll_fd, op, fd, &event) == 0 ? 0 : errno;
}

std::vector<epoll_event> wait_events(int epoll_fd, std::chrono::milliseconds timeout, int max) {
  std::vector<epoll_event> events(static_cast<std::size_t>(max));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const int n = ::epoll_wait(epoll_fd, events.data(), max, remaining_ms(deadline));
    if (n >= 0) {
      events.resize(static_cast<std::size_t>(n));
      return events;
    }
    if (errno != EINTR) fail("epoll_wait");
  }
}

std::vector<epoll_event> wait_reported(int epoll_fd, int max) {
  return wait_events(epoll_fd, std::chrono::duration_cast<std::chrono::milliseconds>(kDeadline),
                     max);
}

std::string event_names(std::uint32_t events) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {EPOLLIN, "IN"},   {EPOLLPRI, "PRI"}, {EPOLLOUT, "OUT"},
      {EPOLLERR, "ERR"}, {EPOLLHUP, "HUP"}, {EPOLLRDHUP, "RDHUP"}};
  std::string text;
  for (const auto& [bit, name] : kNames) {
    if ((events & bit) == 0) continue;
    if (!text.empty()) text += '|';
    text += name;
  }
  // The companion bits (RDNORM, WRNORM, ...) are left out on purpose: they
  // shadow IN and OUT and would only clutter the messages.
  return text.empty() ? "none" : text;
}

bool blocked_in(pid_t tid, std::initializer_list<long> numbers,
                std::initializer_list<std::string_view> channels) {
  const test::TaskView task = test::task_view(::getpid(), tid);
  if (task.state.state != 'S') return false;
  if (std::find(numbers.begin(), numbers.end(), task.syscall) == numbers.end()) return false;
  // The wait channel names the kernel function it sleeps in ("0" when the
  // kernel hides it); when shown, it must be the wait itself and not, say, a
  // page fault taken on the way in.
  const std::string& channel = task.state.wchan;
  if (channel.empty() || channel == "0") return true;
  return std::any_of(channels.begin(), channels.end(), [&](std::string_view name) {
    return channel.find(name) != std::string::npos;
  });
}

bool blocked_in_epoll_wait(pid_t tid) {
  return blocked_in(tid,
                    {
#ifdef SYS_epoll_wait
                        SYS_epoll_wait,
#endif
#ifdef SYS_epoll_pwait2
                        SYS_epoll_pwait2,
#endif
                        SYS_epoll_pwait},
                    {"epoll"});
}

bool blocked_in_select_or_poll(pid_t tid) {
  return blocked_in(tid,
                    {
#ifdef SYS_select
                        SYS_select,
#endif
#ifdef SYS_poll
                        SYS_poll,
#endif
                        SYS_pselect6, SYS_ppoll},
                    {"select", "poll"});
}

WaiterGroup::WaiterGroup(std::vector<int> epoll_fds)
    : epoll_fds_(std::move(epoll_fds)), waiters_(epoll_fds_.size()) {
  install_release_signal();
  for (std::size_t i = 0; i < waiters_.size(); ++i) {
    Waiter& w = waiters_[i];
    const int epoll_fd = epoll_fds_[i];
    w.thread = std::thread([&w, epoll_fd] {
      w.tid.store(static_cast<pid_t>(::gettid()));
      epoll_event event{};
      // A generous timeout only so that a broken test cannot hang forever.
      const int n = ::epoll_wait(epoll_fd, &event, 1, 20'000);
      w.event = event;
      w.result.store(n < 0 ? -errno : n);
    });
  }
}

WaiterGroup::~WaiterGroup() {
  release();
}

bool WaiterGroup::block_all() {
  const auto deadline = Clock::now() + kDeadline;
  for (Waiter& w : waiters_) {
    for (;;) {
      const pid_t tid = w.tid.load();
      if (tid != 0 && blocked_in_epoll_wait(tid)) break;
      if (w.result.load() != kPending || Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
  }
  return true;
}

int WaiterGroup::settle(int expected, std::chrono::milliseconds quiet) {
  auto count = [this](auto predicate) {
    return static_cast<int>(std::count_if(waiters_.begin(), waiters_.end(), predicate));
  };
  auto returned = [&] {
    return count([](const Waiter& w) { return w.result.load() != kPending; });
  };
  const int all = static_cast<int>(waiters_.size());
  const auto deadline = Clock::now() + kDeadline;
  while (returned() < std::min(expected, all) && Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  // Then watch for extra wake-ups; each one restarts the window.
  int seen = returned();
  auto quiet_until = Clock::now() + quiet;
  while (seen < all && Clock::now() < quiet_until) {
    std::this_thread::sleep_for(1ms);
    if (const int now = returned(); now != seen) {
      seen = now;
      quiet_until = Clock::now() + quiet;
    }
  }
  const int woken = count([](const Waiter& w) { return w.result.load() > 0; });
  release();
  return woken;
}

bool WaiterGroup::all_still_asleep_after(std::chrono::milliseconds window) {
  const auto until = Clock::now() + window;
  auto none_returned = [this] {
    return std::all_of(waiters_.begin(), waiters_.end(),
                       [](const Waiter& w) { return w.result.load() == kPending; });
  };
  while (Clock::now() < until) {
    if (!none_returned()) return false;
    std::this_thread::sleep_for(1ms);
  }
  return none_returned() && std::all_of(waiters_.begin(), waiters_.end(), [](const Waiter& w) {
           return blocked_in_epoll_wait(w.tid.load());
         });
}

void WaiterGroup::release() {
  const auto deadline = Clock::now() + kDeadline;
  for (Waiter& w : waiters_) {
    if (!w.thread.joinable()) continue;
    // Repeated in case the signal lands just before the thread sleeps again;
    // a thread that has already returned simply ignores it.
    while (w.result.load() == kPending && Clock::now() < deadline) {
      ::pthread_kill(w.thread.native_handle(), SIGUSR1);
      std::this_thread::sleep_for(5ms);
    }
    w.thread.join();
  }
}

}  // namespace muxlab::rules
