#include "tracer.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <utility>

namespace muxlab {

void Tracer::line(const char* format, ...) const {
  if (!enabled_) return;
  // The leading field is CLOCK_MONOTONIC in microseconds: it never jumps with
  // the wall clock, and lines from every thread (and every process) of the
  // machine share it, so bench/timeline can lay them side by side. It comes
  // first so that everything after it reads as before.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const auto micros = static_cast<std::uint64_t>(now.tv_sec) * 1000000u +
                      static_cast<std::uint64_t>(now.tv_nsec) / 1000u;
  char buffer[512];
  int n = std::snprintf(buffer, sizeof buffer, "%" PRIu64 " [%s] ", micros, server_.c_str());
  va_list args;
  va_start(args, format);
  n += std::vsnprintf(buffer + n, sizeof buffer - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  std::size_t len = std::min(static_cast<std::size_t>(n), sizeof buffer - 2);
  buffer[len++] = '\n';
  // A lost trace line is not worth failing for; the result is ignored on purpose.
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, buffer, len);
}

namespace {

template <typename Bits>
std::string flags_text(Bits flags, std::initializer_list<std::pair<Bits, const char*>> names) {
  std::string text;
  for (const auto& [bit, name] : names) {
    if ((flags & bit) == 0) continue;
    if (!text.empty()) text += '|';
    text += name;
    flags = static_cast<Bits>(flags & ~bit);
  }
  if (flags != 0) {
    char rest[32];
    std::snprintf(rest, sizeof rest, "%s0x%x", text.empty() ? "" : "|",
                  static_cast<unsigned>(flags));
    text += rest;
  }
  return text.empty() ? "0" : text;
}

}  // namespace

std::string poll_flags_text(short flags) {
  return flags_text<short>(flags, {{POLLIN, "POLLIN"},
                                   {POLLPRI, "POLLPRI"},
                                   {POLLOUT, "POLLOUT"},
                                   {POLLRDHUP, "POLLRDHUP"},
                                   {POLLERR, "POLLERR"},
                                   {POLLHUP, "POLLHUP"},
                                   {POLLNVAL, "POLLNVAL"}});
}

std::string epoll_flags_text(std::uint32_t flags) {
  return flags_text<std::uint32_t>(flags, {{EPOLLIN, "EPOLLIN"},
                                           {EPOLLPRI, "EPOLLPRI"},
                                           {EPOLLOUT, "EPOLLOUT"},
                                           {EPOLLRDHUP, "EPOLLRDHUP"},
                                           {EPOLLERR, "EPOLLERR"},
                                           {EPOLLHUP, "EPOLLHUP"},
                                           {EPOLLET, "EPOLLET"},
                                           {EPOLLONESHOT, "EPOLLONESHOT"},
                                           {EPOLLEXCLUSIVE, "EPOLLEXCLUSIVE"}});
}

}  // namespace muxlab
