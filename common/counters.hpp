// Counters: what a server did, written as JSON at exit (--stats-json).
// Atomic because the worker pool bumps them from several threads; relaxed
// ordering is enough, nobody synchronises through a counter.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "fd.hpp"

namespace muxlab {

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(std::uint64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void raise_to(std::uint64_t candidate);  // value = max(value, candidate)
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct Counters {
  Counter wakeups;  // returns from select/poll/epoll_wait
  Counter events;   // ready descriptors reported across all wakeups
  Counter accepts;
  Counter reads;      // read()/recv() calls, including those that said EAGAIN
  Counter writes;     // write()/send() calls, including those that said EAGAIN
  Counter ctl_calls;  // epoll_ctl() calls (0 for select and poll)
  Counter bytes_in;
  Counter bytes_out;
  Counter connections_total;
  Counter connections_now;
  Counter connections_peak;
  Counter resets;             // connections ended by ECONNRESET/EPIPE
  Counter accept_dropped;     // accepted and closed at once: out of descriptors
  Counter max_pending_bytes;  // the largest output backlog any connection held

  void connection_opened();
  void connection_closed() { connections_now.sub(); }
};

// The --stats-json file, opened (created, emptied) at start-up. A path that can
// never work (a missing directory, a directory, no permission, a device, a
// FIFO) is found before the server announces readiness instead of at exit,
// when the run's counters would be lost; and writing a regular file at exit
// cannot block the way opening a FIFO without a reader would.
class StatsFile {
 public:
  // 0, or the errno of the failure; EINVAL: the path is not a regular file.
  int open(const std::string& path);
  bool is_open() const { return fd_.valid(); }

  // Replaces the file's contents with the standard counters plus `extra`
  // (technique-specific numbers). Returns false and sets errno on failure.
  bool write(const std::string& server, const std::string& pitfall, const Counters& counters,
             const std::map<std::string, std::uint64_t>& extra);

 private:
  Fd fd_;
};

}  // namespace muxlab
