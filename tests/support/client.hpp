// Test-side client helpers. Every wait has a deadline; nothing sleeps and hopes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "fd.hpp"
#include "net.hpp"
#include "process.hpp"

namespace muxlab::test {

// A blocking-free TCP connection to 127.0.0.1:port (non-blocking, TCP_NODELAY).
Fd connect_to(std::uint16_t port, const std::string& host = "127.0.0.1");

// Deterministic pseudo-random bytes: every position differs from its neighbours,
// so a dropped, doubled or reordered chunk cannot compare equal.
std::string pattern(std::size_t size, std::uint32_t salt = 1);

// Sends everything (waiting for writability), false on error or deadline.
bool send_all(int fd, std::string_view data, Clock::time_point deadline);

// Receives until `size` bytes, EOF, an error or the deadline; returns what came.
std::string receive(int fd, std::size_t size, Clock::time_point deadline);

// What happened at the end of a read.
enum class Ending { kOpen, kEof, kReset };
// Reads (and discards, but returns) until EOF/reset or the deadline.
Ending wait_for_end(int fd, Clock::time_point deadline, std::string* tail = nullptr);

// Sends `payload` while reading the echo, so neither side's buffers can fill up
// and deadlock. Stops after `expect` bytes came back, at EOF, or at the deadline.
// `chunk` limits the size of each send() (1 sends byte by byte).
struct PumpResult {
  std::string received;
  std::size_t sent = 0;
  Ending ending = Ending::kOpen;
};
PumpResult pump(int fd, std::string_view payload, std::size_t expect, Clock::time_point deadline,
                std::size_t chunk = 64 * 1024, bool shutdown_after_send = false);

// send + receive of one message; returns the echo (shorter when it failed).
std::string round_trip(int fd, std::string_view message, std::chrono::milliseconds timeout = 5s);

// Raises this process's RLIMIT_NOFILE soft limit as far as the hard limit allows.
void raise_fd_limit();

}  // namespace muxlab::test
