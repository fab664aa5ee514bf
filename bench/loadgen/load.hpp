// The load generator's vocabulary: what to run (LoadConfig), when (Timeline),
// and what one worker thread saw (WorkerResult, Errors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "histogram.hpp"

namespace muxlab::bench {

enum class Mode {
  kClosed,  // each connection keeps `pipeline` messages in flight
  kOpen,    // messages leave on a fixed schedule, whatever the answers do
  kChurn,   // connect, echo one message, close; `connections` at a time
};

struct LoadConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
  Mode mode = Mode::kClosed;
  unsigned connections = 1;  // active connections (churn: operations in flight)
  unsigned idle = 0;         // silent connections held open alongside
  unsigned pipeline = 1;     // closed loop: messages in flight per connection
  std::size_t msg_size = 64;
  double rate = 0;  // open loop: messages per second, all threads together
  unsigned threads = 1;
  std::int64_t warmup_ns = 0;
  std::int64_t duration_ns = 1'000'000'000;
  std::int64_t drain_timeout_ns = 5'000'000'000;
  std::int64_t setup_timeout_ns = 30'000'000'000;
  std::uint64_t max_messages = 100'000'000;  // per thread; bounds every loop by count
  unsigned max_connecting = 64;              // connections being set up at once, per thread
  // Poll instead of sleeping when there is nothing to do. On a CPU of its own
  // this spares the generator the cost (and the latency) of being woken up
  // for every answer, so it is not the side that runs out of CPU first.
  bool spin = false;
};

// Absolute CLOCK_MONOTONIC times in nanoseconds, the same for every worker.
struct Timeline {
  std::int64_t start = 0;          // warm-up begins
  std::int64_t measure_from = 0;   // the measured window
  std::int64_t measure_until = 0;  // no message is issued from here on
  std::int64_t drain_deadline = 0;
  std::int64_t close_deadline = 0;
};

struct Errors {
  std::uint64_t connect = 0;        // connect() or the first echo failed
  std::uint64_t mismatch = 0;       // an echoed byte differed, or more came back than was sent
  std::uint64_t eof = 0;            // the server closed while echoes were owed (a short read)
  std::uint64_t reset = 0;          // ECONNRESET, EPIPE or another socket error
  std::uint64_t timeout = 0;        // messages still unanswered at the drain deadline
  std::uint64_t idle_lost = 0;      // an idle connection was closed or sent something
  std::uint64_t unsent = 0;         // open loop: messages due on a connection already dead
  std::uint64_t close_timeout = 0;  // the server did not close after our FIN in time

  std::uint64_t total() const {
    return connect + mismatch + eof + reset + timeout + idle_lost + unsent + close_timeout;
  }
  void add(const Errors& other);
};

struct WorkerResult {
  LatencyHistogram latency;   // the measured window's messages
  LatencyHistogram send_lag;  // open loop: how late the generator issued each message
  std::uint64_t connections_ready = 0;
  std::uint64_t messages_issued = 0;      // the whole run, warm-up included
  std::uint64_t messages_completed = 0;   // the whole run, warm-up included
  std::uint64_t window_completed = 0;     // answers that arrived inside the window
  std::uint64_t window_scheduled = 0;     // open loop: messages due inside the window
  std::uint64_t window_due_answered = 0;  // open loop: ...of which answered, however late
  std::uint64_t bytes_sent = 0;           // every byte written, set-up and warm-up included
  std::uint64_t bytes_received = 0;       // every echoed byte read and checked
  std::int64_t window_cpu_ns = 0;         // this thread's CPU time inside the window
  std::int64_t window_idle_ns = 0;        // ...of which spent polling and finding nothing
  std::int64_t setup_ns = 0;
  Errors errors;
};

// CLOCK_MONOTONIC in nanoseconds: every time in the generator is one of these.
std::int64_t now_ns();

}  // namespace muxlab::bench
