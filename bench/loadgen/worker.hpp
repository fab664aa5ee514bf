// Worker: one generator thread with its own epoll set and its own share of the
// connections. Workers share nothing while the load runs, so they never wait
// for each other; their results are merged after they finish.
//
// Everything is level-triggered and non-blocking. A connection's stream is
// the Payload pattern at the connection's phase, so what was sent is never
// stored: `written` and `received` are offsets into the same stream, and the
// messages in flight are a FIFO of the times their latency counts from.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "fd.hpp"
#include "load.hpp"

namespace muxlab::bench {

class Worker {
 public:
  // This worker's share: `active` connections (stream ids from `first_id`),
  // `idle` silent ones, and (open loop) `rate` messages per second whose
  // schedule starts `phase_ns` after the common start.
  Worker(const LoadConfig& config, std::uint64_t first_id, unsigned active, unsigned idle,
         double rate, std::int64_t phase_ns);

  // Connects every connection and echoes one byte on each, so the server is
  // known to hold them all before the load starts. False if any failed.
  bool setup(std::int64_t deadline);
  void run(const Timeline& timeline);
  const WorkerResult& result() const { return result_; }

 private:
  enum class State { kClosed, kConnecting, kHello, kReady, kClosing };
  enum class Received { kData, kNothing, kEof, kFailed };

  struct Conn {
    Fd fd;
    std::uint64_t phase = 0;
    bool idle = false;
    State state = State::kClosed;
    std::uint32_t events = 0;  // what epoll watches for now
    bool registered = false;
    std::uint64_t base = 0;     // stream bytes before the first message (the hello)
    std::uint64_t issued = 0;   // stream bytes that must go out (written + waiting)
    std::uint64_t written = 0;  // stream bytes the socket took
    std::uint64_t received = 0;
    std::uint64_t completed = 0;      // messages answered
    std::deque<std::int64_t> starts;  // messages in flight: when each one's latency began
  };

  // Connection plumbing.
  bool start_connect(Conn& c, std::uint64_t stream_id);
  bool connect_finished(Conn& c);
  void watch(Conn& c, std::uint32_t events);
  void flush(Conn& c);
  Received receive(Conn& c);
  void fail(Conn& c, std::uint64_t Errors::*kind);
  void close(Conn& c);

  // The phases.
  int poll_once(int timeout_ms);
  int wait_until(std::int64_t deadline, std::int64_t spin_ns = 0);
  void on_setup_event(Conn& c, std::uint32_t events, unsigned& ready, unsigned& failed);
  void dispatch(int ready, std::int64_t now);
  void on_event(Conn& c, std::uint32_t events, std::int64_t now);
  void on_churn_event(Conn& c, std::uint32_t events, std::int64_t now);
  void issue(Conn& c, std::uint64_t messages, std::int64_t start);
  void complete_messages(Conn& c, std::int64_t now);
  void record_completion(std::int64_t start, std::int64_t now);
  void start_operation(Conn& c, std::int64_t now);
  void issue_due(std::int64_t now);
  std::int64_t due(std::uint64_t k) const;
  void sample_cpu(std::int64_t now);
  void drain();
  void close_all();
  bool in_window(std::int64_t t) const { return t >= t_.measure_from && t < t_.measure_until; }

  LoadConfig config_;
  Fd epoll_;
  std::vector<Conn> conns_;  // the active ones first, then the idle ones
  unsigned active_;
  double rate_;
  std::int64_t phase_ns_;
  std::uint64_t next_stream_id_;
  std::vector<epoll_event> events_;
  std::vector<char> buffer_;
  Timeline t_;
  bool issuing_ = false;
  std::uint64_t in_flight_ = 0;  // messages (churn: operations) not yet answered
  std::uint64_t next_due_ = 0;   // open loop: the next message of the schedule
  std::vector<Conn*> dirty_;     // open loop: connections with new bytes to send
  int cpu_samples_ = 0;
  std::int64_t cpu_at_window_start_ = 0;
  std::int64_t idle_ns_ = 0;  // spent in polls that found nothing
  std::int64_t idle_at_window_start_ = 0;
  WorkerResult result_;
};

}  // namespace muxlab::bench
