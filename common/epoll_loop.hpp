// wait_for_events(): the epoll_wait() call of the single-threaded epoll servers
// with its bookkeeping, so each server's file shows only what it decides: the
// timeout it passes and what it does with each event.
#pragma once

#include <sys/epoll.h>

#include <cerrno>
#include <cstdint>
#include <span>

#include "server_main.hpp"

namespace muxlab {

// Returns the ready events (none when timeout_ms is 0 and nothing is ready),
// counted as one wakeup and traced. EINTR is retried: a shutdown signal has
// also made the self-pipe readable, and the pipe is in the interest list, so
// the next call returns at once. (Being stopped and continued, SIGSTOP then
// SIGCONT, also makes epoll_wait fail with EINTR, without any handler.)
inline std::span<epoll_event> wait_for_events(int epoll_fd, std::span<epoll_event> buffer,
                                              int timeout_ms, ServerContext& ctx) {
  for (;;) {
    const int ready =
        ::epoll_wait(epoll_fd, buffer.data(), static_cast<int>(buffer.size()), timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw SystemError("epoll_wait", errno);
    }
    ctx.counters.wakeups.add();
    ctx.counters.events.add(static_cast<std::uint64_t>(ready));
    ctx.tracer.line("wakeup: epoll_wait(timeout %d) returned %d", timeout_ms, ready);
    return buffer.first(static_cast<std::size_t>(ready));
  }
}

}  // namespace muxlab
