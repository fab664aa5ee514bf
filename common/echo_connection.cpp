#include "echo_connection.hpp"

#include "shutdown_signal.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace muxlab {

namespace {
// The modelled cost normally gives way to SIGTERM, so that no request, however
// costly, holds up the stop. A test that must see whether a pool waits for a
// worker still inside a request (joined) or exits under it (detached) needs a
// request the stop cannot cut short: it sets MUXLAB_UNINTERRUPTIBLE_COST.
bool cost_gives_way_to_stop() {
  static const bool gives_way = std::getenv("MUXLAB_UNINTERRUPTIBLE_COST") == nullptr;
  return gives_way && shutdown_requested();
}
}  // namespace

void simulate_request_cost(const ServerOptions& options) {
  using std::chrono::steady_clock;
  if (options.work_us > 0) {
    const auto until = steady_clock::now() + std::chrono::microseconds(options.work_us);
    while (steady_clock::now() < until && !cost_gives_way_to_stop()) {
    }
  }
  // Slept in short slices so a stop request is noticed within one of them.
  constexpr auto kSlice = std::chrono::milliseconds(5);
  const auto until = steady_clock::now() + std::chrono::microseconds(options.block_us);
  for (auto left = until - steady_clock::now(); left > left.zero() && !cost_gives_way_to_stop();
       left = until - steady_clock::now()) {
    std::this_thread::sleep_for(std::min<steady_clock::duration>(left, kSlice));
  }
}

EchoConnection::EchoConnection(Fd fd, const ServerOptions& options, Counters& counters)
    : fd_(std::move(fd)), options_(options), counters_(counters), cap_(options.buffer_cap) {
  counters_.connection_opened();
}

EchoConnection::~EchoConnection() {
  counters_.connection_closed();
}

EchoConnection::Io EchoConnection::read_once() {
  if (!can_read()) return Io::kWouldBlock;
  const std::size_t room = std::min(kReadChunk, cap_ - pending());
  auto space = outbox_.reserve(room);
  for (;;) {
    counters_.reads.add();
    const ssize_t n = ::read(fd_.get(), space.data(), room);
    if (n > 0) {
      outbox_.commit(static_cast<std::size_t>(n));
      last_read_short_ = static_cast<std::size_t>(n) < room;
      counters_.bytes_in.add(static_cast<std::uint64_t>(n));
      counters_.max_pending_bytes.raise_to(pending());
      simulate_request_cost(options_);
      return Io::kProgress;
    }
    if (n == 0) {
      peer_closed_ = true;
      return Io::kPeerClosed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Io::kWouldBlock;
    return fail(errno);
  }
}

EchoConnection::Io EchoConnection::fail(int error) {
  if (!failed_ && (error == ECONNRESET || error == EPIPE)) counters_.resets.add();
  failed_ = true;
  return Io::kFailed;
}

EchoConnection::Io EchoConnection::flush() {
  if (failed_) return Io::kFailed;  // the queue is for a peer that is gone
  bool moved = false;
  while (!outbox_.empty()) {
    const auto bytes = outbox_.readable();
    counters_.writes.add();
    // MSG_NOSIGNAL: EPIPE instead of SIGPIPE even if a student's main forgot to ignore it.
    const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      outbox_.consume(static_cast<std::size_t>(n));
      counters_.bytes_out.add(static_cast<std::uint64_t>(n));
      moved = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return moved ? Io::kProgress : Io::kWouldBlock;
    return fail(errno);
  }
  return moved ? Io::kProgress : Io::kWouldBlock;
}

}  // namespace muxlab
