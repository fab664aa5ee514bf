#include "worker.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <stdexcept>
#include <string>

#include "net.hpp"
#include "payload.hpp"

namespace muxlab::bench {

namespace {

constexpr std::size_t kReadBuffer = 64 * 1024;
constexpr int kMaxEvents = 256;
// Opening the hello byte: every persistent connection's stream starts with it.
constexpr std::uint64_t kHelloBytes = 1;

std::int64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void Errors::add(const Errors& o) {
  connect += o.connect;
  mismatch += o.mismatch;
  eof += o.eof;
  reset += o.reset;
  timeout += o.timeout;
  idle_lost += o.idle_lost;
  unsent += o.unsent;
  close_timeout += o.close_timeout;
}

Worker::Worker(const LoadConfig& config, std::uint64_t first_id, unsigned active, unsigned idle,
               double rate, std::int64_t phase_ns)
    : config_(config),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      conns_(active + idle),
      active_(active),
      rate_(rate),
      phase_ns_(phase_ns),
      next_stream_id_(first_id),
      events_(kMaxEvents),
      buffer_(kReadBuffer) {
  if (!epoll_) throw std::runtime_error("epoll_create1 failed");
  for (unsigned i = active; i < active + idle; ++i) conns_[i].idle = true;
}

// ---------------------------------------------------------------- plumbing

bool Worker::start_connect(Conn& c, std::uint64_t stream_id) {
  const bool idle = c.idle;
  c = Conn{};
  c.idle = idle;
  c.phase = Payload::phase_for(stream_id);
  const auto address = parse_numeric_address(config_.host, config_.port);
  if (address) {
    c.fd = Fd(::socket(address->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  }
  if (!c.fd) {
    ++result_.errors.connect;
    return false;
  }
  // Small messages must leave at once, not wait for Nagle to batch them.
  const int one = 1;
  ::setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(c.fd.get(), address->get(), address->length) != 0 && errno != EINPROGRESS) {
    c.fd.reset();
    ++result_.errors.connect;
    return false;
  }
  c.state = State::kConnecting;
  watch(c, EPOLLOUT);
  return true;
}

// The non-blocking connect() is over when the socket turns writable; SO_ERROR says how.
bool Worker::connect_finished(Conn& c) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
    fail(c, &Errors::connect);
    return false;
  }
  return true;
}

void Worker::watch(Conn& c, std::uint32_t events) {
  if (c.registered && events == c.events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = &c;
  ::epoll_ctl(epoll_.get(), c.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd.get(), &ev);
  c.registered = true;
  c.events = events;
}

void Worker::flush(Conn& c) {
  const Payload& payload = Payload::instance();
  while (c.written < c.issued) {
    const auto bytes = payload.window(c.phase, c.written, c.issued - c.written);
    const ssize_t n = ::send(c.fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.written += static_cast<std::uint64_t>(n);
      result_.bytes_sent += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // The server is not reading fast enough: wait for room, keep the bytes owed.
      watch(c, c.events | EPOLLOUT);
      return;
    }
    fail(c, &Errors::reset);
    return;
  }
  if (c.events & EPOLLOUT) watch(c, c.events & ~std::uint32_t{EPOLLOUT});
}

// One recv(): epoll is level-triggered, so whatever is left is reported again.
Worker::Received Worker::receive(Conn& c) {
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n > 0) {
      const auto got = static_cast<std::uint64_t>(n);
      result_.bytes_received += got;
      // An echo can never be ahead of what was sent, and must be the same bytes.
      if (c.received + got > c.written ||
          !Payload::instance().matches(c.phase, c.received,
                                       {buffer_.data(), static_cast<std::size_t>(n)})) {
        fail(c, &Errors::mismatch);
        return Received::kFailed;
      }
      c.received += got;
      return Received::kData;
    }
    if (n == 0) return Received::kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Received::kNothing;
    fail(c, &Errors::reset);
    return Received::kFailed;
  }
}

void Worker::fail(Conn& c, std::uint64_t Errors::*kind) {
  ++(result_.errors.*kind);
  close(c);
}

void Worker::close(Conn& c) {
  // Messages that died with the connection are no longer awaited; the error
  // that closed it has been counted by the caller.
  in_flight_ -= c.starts.size();
  c.starts.clear();
  c.fd.reset();  // close() also takes it out of the epoll set
  c.registered = false;
  c.events = 0;
  c.state = State::kClosed;
}

int Worker::poll_once(int timeout_ms) {
  for (;;) {
    const int n =
        ::epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (n >= 0) return n;
    if (errno != EINTR) throw std::runtime_error("epoll_wait failed");
  }
}

int Worker::wait_until(std::int64_t deadline, std::int64_t spin_ns) {
  if (!config_.spin) {
    // Sleep until `spin_ns` before the deadline: waking from a sleep can be
    // tens of microseconds late, and an open-loop send must leave on time.
    const std::int64_t sleep_ns = deadline - now_ns() - spin_ns;
    if (sleep_ns > 0) {
      const timespec timeout{.tv_sec = static_cast<time_t>(sleep_ns / 1'000'000'000),
                             .tv_nsec = static_cast<long>(sleep_ns % 1'000'000'000)};
      int n = 0;
      do {
        n = ::epoll_pwait2(epoll_.get(), events_.data(), static_cast<int>(events_.size()), &timeout,
                           nullptr);
      } while (n < 0 && errno == EINTR);
      if (n < 0) throw std::runtime_error("epoll_pwait2 failed");
      if (n > 0) return n;
    }
  }
  // Poll without sleeping until something is ready or the deadline passes.
  // Polls that find nothing are idle time, not work: they are timed apart (in
  // CPU time, so a preempted poll is not counted twice) so that a spinning
  // generator can still tell how busy it really is.
  const int ready = poll_once(0);
  if (ready > 0 || now_ns() >= deadline) return ready;
  const std::int64_t idle_from = thread_cpu_ns();
  for (;;) {
    const int n = poll_once(0);
    if (n > 0 || now_ns() >= deadline) {
      idle_ns_ += thread_cpu_ns() - idle_from;
      return n;
    }
  }
}

// ---------------------------------------------------------------- set-up

bool Worker::setup(std::int64_t deadline) {
  const std::int64_t began = now_ns();
  // Churn slots connect once per operation; only the idle ones are set up here.
  const std::size_t first = config_.mode == Mode::kChurn ? active_ : 0;
  const unsigned wanted = static_cast<unsigned>(conns_.size() - first);
  std::size_t next = first;
  unsigned connecting = 0;
  unsigned ready = 0;
  unsigned failed = 0;
  while (ready + failed < wanted) {
    // A bounded number of handshakes at once keeps the server's accept queue
    // from overflowing, which would cost a one-second SYN retry.
    while (connecting < config_.max_connecting && next < conns_.size()) {
      Conn& c = conns_[next];
      if (start_connect(c, next_stream_id_++)) {
        ++connecting;
      } else {
        ++failed;
      }
      ++next;
    }
    if (now_ns() >= deadline) break;
    const int n = wait_until(std::min(deadline, now_ns() + 100'000'000));
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(events_[static_cast<std::size_t>(i)].data.ptr);
      const unsigned before = ready + failed;
      on_setup_event(c, events_[static_cast<std::size_t>(i)].events, ready, failed);
      connecting -= ready + failed - before;
    }
  }
  for (Conn& c : conns_) {
    if (c.state == State::kConnecting || c.state == State::kHello) fail(c, &Errors::connect);
  }
  result_.errors.connect += conns_.size() - next;  // never tried: the deadline came first
  result_.connections_ready = ready;
  result_.setup_ns = now_ns() - began;
  return ready == wanted;
}

void Worker::on_setup_event(Conn& c, std::uint32_t events, unsigned& ready, unsigned& failed) {
  if (c.state == State::kConnecting) {
    if (!connect_finished(c)) {
      ++failed;
      return;
    }
    c.state = State::kHello;
    c.issued = kHelloBytes;
    flush(c);
    if (c.state == State::kClosed) {
      ++failed;
      return;
    }
    watch(c, EPOLLIN);
    return;
  }
  if (c.state != State::kHello || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
  switch (receive(c)) {
    case Received::kNothing:
      return;
    case Received::kData:
      if (c.received < kHelloBytes) return;
      c.base = kHelloBytes;
      c.state = State::kReady;
      // Idle connections must stay silent; RDHUP tells us if the server drops one.
      watch(c, c.idle ? EPOLLIN | EPOLLRDHUP : EPOLLIN);
      ++ready;
      return;
    case Received::kEof:
      fail(c, &Errors::connect);
      ++failed;
      return;
    case Received::kFailed:
      ++failed;
      return;
  }
}

// ---------------------------------------------------------------- the load

void Worker::issue(Conn& c, std::uint64_t messages, std::int64_t start) {
  c.issued += messages * config_.msg_size;
  c.starts.insert(c.starts.end(), messages, start);
  in_flight_ += messages;
  result_.messages_issued += messages;
  if (result_.messages_issued >= config_.max_messages) issuing_ = false;
}

void Worker::record_completion(std::int64_t start, std::int64_t now) {
  ++result_.messages_completed;
  if (in_window(now)) ++result_.window_completed;
  // Closed loop: the answers of the window. Open loop: the messages *due* in
  // the window, however late their answers come; that is what keeps a stall
  // from hiding (no coordinated omission).
  const bool counts = config_.mode == Mode::kOpen ? in_window(start) : in_window(now);
  if (counts) result_.latency.record(now - start);
  if (config_.mode == Mode::kOpen && counts) ++result_.window_due_answered;
}

void Worker::complete_messages(Conn& c, std::int64_t now) {
  std::uint64_t done = 0;
  while (!c.starts.empty() && c.received >= c.base + (c.completed + 1) * config_.msg_size) {
    record_completion(c.starts.front(), now);
    c.starts.pop_front();
    ++c.completed;
    ++done;
  }
  in_flight_ -= done;
  // Closed loop: every answer sends the next message at once, and the answers
  // of one read leave in one write.
  if (config_.mode == Mode::kClosed && done > 0 && issuing_) {
    issue(c, done, now);
    flush(c);
  }
}

void Worker::on_event(Conn& c, std::uint32_t events, std::int64_t now) {
  if (c.state == State::kClosing) {
    switch (receive(c)) {
      case Received::kEof:
        close(c);
        return;
      case Received::kData:
        complete_messages(c, now);
        return;
      default:
        return;
    }
  }
  if (c.state != State::kReady) return;
  if (c.idle) {
    // A silent connection has nothing to receive: any event means trouble.
    fail(c, &Errors::idle_lost);
    return;
  }
  if (events & EPOLLOUT) flush(c);
  if (c.state != State::kReady || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
  switch (receive(c)) {
    case Received::kData:
      complete_messages(c, now);
      return;
    case Received::kEof:
      // The server hung up while it still owed us echoes: a short read.
      fail(c, &Errors::eof);
      return;
    default:
      return;
  }
}

void Worker::start_operation(Conn& c, std::int64_t now) {
  if (!issuing_) return;
  if (!start_connect(c, next_stream_id_++)) return;  // counted; the slot stays empty
  c.base = 0;
  c.starts.push_back(now);  // an operation's latency includes its connect
  ++in_flight_;
  if (++result_.messages_issued >= config_.max_messages) issuing_ = false;
}

void Worker::on_churn_event(Conn& c, std::uint32_t events, std::int64_t now) {
  if (c.state == State::kConnecting) {
    if (!connect_finished(c)) return;  // a slot whose connect fails stays empty
    c.state = State::kReady;
    c.issued = config_.msg_size;
    watch(c, EPOLLIN);
    flush(c);
    return;
  }
  if (c.state != State::kReady) return;
  if (events & EPOLLOUT) flush(c);
  if (c.state != State::kReady || !(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
  const Received got = receive(c);
  if (got == Received::kEof) fail(c, &Errors::eof);
  if (got == Received::kFailed || got == Received::kEof) {
    start_operation(c, now);
    return;
  }
  if (got != Received::kData || c.received < config_.msg_size) return;
  record_completion(c.starts.front(), now);
  c.starts.clear();
  --in_flight_;
  // Closing first leaves the TIME_WAIT state on our side; on loopback the
  // kernel may reuse such ports at once (tcp_tw_reuse), so churn can go on.
  close(c);
  start_operation(c, now);
}

std::int64_t Worker::due(std::uint64_t k) const {
  // Computed from k, never by adding periods, so rounding cannot drift.
  const long double period = 1e9L / static_cast<long double>(rate_);
  return t_.start + phase_ns_ + static_cast<std::int64_t>(std::llround(period * k));
}

void Worker::issue_due(std::int64_t now) {
  while (issuing_) {
    const std::int64_t at = due(next_due_);
    if (at > now || at >= t_.measure_until) break;
    Conn& c = conns_[next_due_ % active_];
    ++next_due_;
    if (in_window(at)) ++result_.window_scheduled;
    if (c.state != State::kReady) {
      ++result_.errors.unsent;
      continue;
    }
    issue(c, 1, at);
    result_.send_lag.record(now - at);
    if (c.written + config_.msg_size == c.issued) dirty_.push_back(&c);
  }
  // Messages that fell due together on one connection leave in one write.
  for (Conn* c : dirty_) {
    if (c->state == State::kReady && !(c->events & EPOLLOUT)) flush(*c);
  }
  dirty_.clear();
}

void Worker::sample_cpu(std::int64_t now) {
  if (cpu_samples_ == 0 && now >= t_.measure_from) {
    cpu_at_window_start_ = thread_cpu_ns();
    idle_at_window_start_ = idle_ns_;
    cpu_samples_ = 1;
  }
  if (cpu_samples_ == 1 && now >= t_.measure_until) {
    result_.window_cpu_ns = thread_cpu_ns() - cpu_at_window_start_;
    result_.window_idle_ns = idle_ns_ - idle_at_window_start_;
    cpu_samples_ = 2;
  }
}

void Worker::dispatch(int ready, std::int64_t now) {
  for (int i = 0; i < ready; ++i) {
    const epoll_event& ev = events_[static_cast<std::size_t>(i)];
    Conn& c = *static_cast<Conn*>(ev.data.ptr);
    if (config_.mode == Mode::kChurn && !c.idle) {
      on_churn_event(c, ev.events, now);
    } else {
      on_event(c, ev.events, now);
    }
  }
}

void Worker::run(const Timeline& timeline) {
  t_ = timeline;
  const bool open = config_.mode == Mode::kOpen;
  const std::int64_t spin_ns = open ? 20'000 : 0;
  while (now_ns() < t_.start) wait_until(t_.start);

  issuing_ = true;
  std::int64_t now = now_ns();
  for (unsigned i = 0; i < active_; ++i) {
    Conn& c = conns_[i];
    if (config_.mode == Mode::kChurn) {
      start_operation(c, now);
    } else if (config_.mode == Mode::kClosed && c.state == State::kReady && issuing_) {
      issue(c, config_.pipeline, now);
      flush(c);
    }
  }

  for (;;) {
    now = now_ns();
    sample_cpu(now);
    // Everything due by now leaves now, up to the window's end: a generator that
    // was late must still send the whole schedule, or the stall would be hidden.
    if (open) issue_due(now);
    if (now >= t_.measure_until) break;
    std::int64_t wake = cpu_samples_ == 0 ? t_.measure_from : t_.measure_until;
    if (open && issuing_) wake = std::min(wake, due(next_due_));
    const int n = wait_until(wake, spin_ns);
    now = now_ns();
    dispatch(n, now);
  }
  issuing_ = false;
  drain();
  close_all();
}

// The window is over: no new messages, but every one in flight is awaited (up
// to the deadline), so the bytes we count are all the bytes the server sent.
void Worker::drain() {
  while (in_flight_ > 0 && now_ns() < t_.drain_deadline) {
    const int n = wait_until(t_.drain_deadline);
    dispatch(n, now_ns());
  }
  // What never came back is an error, and (open loop) still a latency: at
  // least this long, so the tail cannot look better than it was.
  const std::int64_t now = now_ns();
  for (Conn& c : conns_) {
    result_.errors.timeout += c.starts.size();
    if (config_.mode == Mode::kOpen) {
      for (const std::int64_t start : c.starts) {
        if (in_window(start)) result_.latency.record(now - start);
      }
    }
    // Counted once: an answer that still comes while closing is not awaited.
    c.starts.clear();
  }
  in_flight_ = 0;
}

// Half-close every connection and wait for the server to close its side: the
// contract says it echoes what it has and then closes, so after this the
// server's counters hold everything this run did.
void Worker::close_all() {
  unsigned closing = 0;
  for (Conn& c : conns_) {
    if (c.state == State::kClosed) continue;
    if (c.state != State::kReady || ::shutdown(c.fd.get(), SHUT_WR) != 0) {
      close(c);
      continue;
    }
    c.state = State::kClosing;
    watch(c, EPOLLIN);
    ++closing;
  }
  while (closing > 0 && now_ns() < t_.close_deadline) {
    const int n = wait_until(t_.close_deadline);
    const std::int64_t now = now_ns();
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(events_[static_cast<std::size_t>(i)].data.ptr);
      on_event(c, events_[static_cast<std::size_t>(i)].events, now);
      if (c.state == State::kClosed) --closing;
    }
  }
  for (Conn& c : conns_) {
    if (c.state == State::kClosing) fail(c, &Errors::close_timeout);
  }
}

}  // namespace muxlab::bench
