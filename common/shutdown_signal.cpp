#include "shutdown_signal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>

#include "net.hpp"

namespace muxlab {

namespace {

int g_pipe[2] = {-1, -1};
std::atomic<bool> g_requested{false};

void on_signal(int) {
  // Only async-signal-safe calls here. errno is saved because the interrupted
  // code may be about to read it. The pipe is non-blocking and never drained,
  // so a flood of signals can fill it without ever blocking the handler.
  const int saved_errno = errno;
  g_requested.store(true, std::memory_order_relaxed);
  [[maybe_unused]] ssize_t ignored = ::write(g_pipe[1], "x", 1);
  errno = saved_errno;
}

}  // namespace

ShutdownSignal::ShutdownSignal() {
  if (g_pipe[0] >= 0) return;  // already set up, and kept (see the destructor)
  if (::pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    g_pipe[0] = g_pipe[1] = -1;
    throw SystemError("cannot create the signal pipe", errno);
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  // No SA_RESTART: a blocking call in the main thread should return EINTR and
  // let the loop see the request promptly.
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  // A write to a connection the peer has reset raises SIGPIPE, whose default
  // action kills the process. We want EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);
}

// Deliberately empty. Restoring SIG_DFL here, after the stats were written but
// before the process is gone, would let the next SIGTERM of a flood kill it
// (exit by signal instead of 0). The handler stays harmless to the end: it
// only sets a flag and writes to a pipe that is never closed before exit.
ShutdownSignal::~ShutdownSignal() = default;

int ShutdownSignal::fd() const {
  return g_pipe[0];
}
bool ShutdownSignal::requested() const {
  return g_requested.load(std::memory_order_relaxed);
}
void ShutdownSignal::request() {
  on_signal(0);
}

bool shutdown_requested() {
  return g_requested.load(std::memory_order_relaxed);
}

}  // namespace muxlab
