#include "echo_connection.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>

namespace muxlab {

void simulate_request_cost(const ServerOptions& options) {
  if (options.work_us > 0) {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::microseconds(options.work_us);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
  if (options.block_us > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(options.block_us));
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
    failed_ = true;
    if (errno == ECONNRESET) counters_.resets.add();
    return Io::kFailed;
  }
}

EchoConnection::Io EchoConnection::flush() {
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
    failed_ = true;
    if (errno == ECONNRESET || errno == EPIPE) counters_.resets.add();
    return Io::kFailed;
  }
  return moved ? Io::kProgress : Io::kWouldBlock;
}

}  // namespace muxlab
