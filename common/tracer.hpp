// Tracer: the --trace output, one line per wakeup and per event on stderr:
//   MICROSECONDS [server] text
// MICROSECONDS is CLOCK_MONOTONIC in µs (bench/timeline draws the lines on it).
// Each line goes out in a single write() so lines from pool workers never mix.
#pragma once

#include <cstdint>
#include <string>

namespace muxlab {

class Tracer {
 public:
  Tracer(std::string server, bool enabled) : server_(std::move(server)), enabled_(enabled) {}
  bool enabled() const { return enabled_; }

  void line(const char* format, ...) const __attribute__((format(printf, 2, 3)));

 private:
  std::string server_;
  bool enabled_;
};

// Readable names for readiness bits, e.g. "POLLIN|POLLRDHUP" or "EPOLLIN|EPOLLET".
std::string poll_flags_text(short flags);
std::string epoll_flags_text(std::uint32_t flags);

}  // namespace muxlab
