// Bookkeeping of the single-threaded epoll servers, one line each in their
// loops: counting a wakeup, wording a turn for --trace. The system calls, and
// the rules they rely on, stay in each server's own file.
#pragma once

#include <cstdint>

#include "echo_connection.hpp"
#include "server_main.hpp"

namespace muxlab {

// One wakeup that returned `ready` events: counted, and traced with the
// timeout it was called with.
inline void count_wakeup(ServerContext& ctx, int timeout_ms, int ready) {
  ctx.counters.wakeups.add();
  ctx.counters.events.add(static_cast<std::uint64_t>(ready));
  ctx.tracer.line("wakeup: epoll_wait(timeout %d) returned %d", timeout_ms, ready);
}

// The --trace line of one turn that read: "turn: N reads, <outcome>".
inline void trace_turn(ServerContext& ctx, int fd, int reads, const char* outcome) {
  ctx.tracer.line("  fd %d: turn: %d read%s, %s", fd, reads, reads == 1 ? "" : "s", outcome);
}

// How a turn of reads ended, for the --trace line "turn: N reads, <this>".
// `unread`: the server still counts on input it was told about.
inline const char* turn_outcome(const EchoConnection& echo, EchoConnection::Io last, bool unread) {
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
  if (echo.finished()) return "write failed";
  if (unread) {
    return echo.can_read() ? "budget spent, back on the ready list"
                           : "buffer full, waiting for EPOLLOUT";
  }
  if (echo.last_read_short()) return "short read, nothing left";
  return "stopped after one read (pitfall no-drain), data left behind";
}

}  // namespace muxlab
