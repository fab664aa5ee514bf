#include "shutdown_signal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  if (::pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    std::fprintf(stderr, "pipe2: %s\n", std::strerror(errno));
    std::exit(1);
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

ShutdownSignal::~ShutdownSignal() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  ::close(g_pipe[0]);
  ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

int ShutdownSignal::fd() const {
  return g_pipe[0];
}
bool ShutdownSignal::requested() const {
  return g_requested.load(std::memory_order_relaxed);
}
void ShutdownSignal::request() {
  on_signal(0);
}

}  // namespace muxlab
