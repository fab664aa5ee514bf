// ElasticThreads: the pool's worker threads, between a minimum and a maximum.
//
// Grow: when a worker takes an event and that makes every worker busy, one
// more starts, so the next event does not wait for a handler to finish.
// Shrink: a worker whose wait timed out with nothing to do retires while more
// than the minimum remain; the next growth (or the stop) joins it, so no
// thread is ever detached. Stop: no thread starts or retires any more, the
// caller wakes the workers, and every thread is joined.
//
// The workers' loop is the caller's (`body`); this class only counts them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tracer.hpp"

namespace muxlab {

class ElasticThreads {
 public:
  using Body = std::function<void(unsigned id)>;

  ElasticThreads(unsigned min_threads, unsigned max_threads, const Tracer& tracer, Body body);
  ElasticThreads(const ElasticThreads&) = delete;
  ElasticThreads& operator=(const ElasticThreads&) = delete;

  // Starts the minimum; false when not even one thread could start.
  bool start();

  // A worker took an event / is done with it.
  void begin_work();
  void end_work();

  // A worker found nothing to do for a whole timeout: true if it must return.
  bool retire_if_spare(unsigned id);

  struct Summary {
    unsigned at_stop = 0;  // threads alive when the stop began
    unsigned peak = 0;
    unsigned grows = 0;
    unsigned shrinks = 0;
    // As threads_now, threads_peak, pool_grows and pool_shrinks.
    void report(std::map<std::string, std::uint64_t>& stats) const;
  };
  // Freezes the thread count, calls `wake` so that every worker returns, and
  // joins them all.
  Summary stop(const std::function<void()>& wake);

 private:
  bool start_one_locked();
  std::vector<std::thread> take_retired_locked();

  const unsigned min_;
  const unsigned max_;
  const Tracer& tracer_;
  const Body body_;

  std::mutex mutex_;                         // guards everything below
  std::map<unsigned, std::thread> threads_;  // started and not yet joined
  std::vector<unsigned> retired_;            // returned, waiting to be joined
  unsigned next_id_ = 1;
  unsigned live_ = 0;
  unsigned busy_ = 0;
  Summary summary_;
  bool stopping_ = false;
};

}  // namespace muxlab
