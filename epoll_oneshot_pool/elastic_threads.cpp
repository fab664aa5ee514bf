#include "elastic_threads.hpp"

#include <algorithm>
#include <cstdio>
#include <system_error>

namespace muxlab {

ElasticThreads::ElasticThreads(unsigned min_threads, unsigned max_threads, const Tracer& tracer,
                               Body body)
    : min_(min_threads), max_(max_threads), tracer_(tracer), body_(std::move(body)) {}

bool ElasticThreads::start() {
  std::lock_guard lock(mutex_);
  for (unsigned i = 0; i < min_; ++i) start_one_locked();
  return live_ > 0;
}

bool ElasticThreads::start_one_locked() {
  const unsigned id = next_id_++;
  try {
    threads_.emplace(id, std::thread(body_, id));
  } catch (const std::system_error& e) {
    // Out of threads or memory: the workers already running carry on.
    std::fprintf(stderr, "epoll_oneshot_pool: cannot start a worker: %s\n", e.what());
    return false;
  }
  ++live_;
  summary_.peak = std::max(summary_.peak, live_);
  return true;
}

void ElasticThreads::begin_work() {
  std::vector<std::thread> retired;
  {
    std::lock_guard lock(mutex_);
    ++busy_;
    if (busy_ < live_ || live_ >= max_ || stopping_) return;
    tracer_.line("pool: all %u workers busy, starting one more", live_);
    retired = take_retired_locked();
    if (start_one_locked()) ++summary_.grows;
  }
  for (auto& thread : retired) thread.join();
}

void ElasticThreads::end_work() {
  std::lock_guard lock(mutex_);
  --busy_;
}

bool ElasticThreads::retire_if_spare(unsigned id) {
  std::lock_guard lock(mutex_);
  if (live_ <= min_ || stopping_) return false;
  --live_;
  ++summary_.shrinks;
  retired_.push_back(id);
  tracer_.line("pool: worker %u retiring, %u left", id, live_);
  return true;
}

std::vector<std::thread> ElasticThreads::take_retired_locked() {
  std::vector<std::thread> retired;
  for (const unsigned id : retired_) {
    retired.push_back(std::move(threads_.at(id)));
    threads_.erase(id);
  }
  retired_.clear();
  return retired;
}

ElasticThreads::Summary ElasticThreads::stop(const std::function<void()>& wake) {
  std::map<unsigned, std::thread> everyone;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;  // no worker starts or retires from now on
    summary_.at_stop = live_;
    everyone.swap(threads_);
    retired_.clear();
  }
  tracer_.line("pool: stopping, waking %u workers", summary_.at_stop);
  wake();
  for (auto& [id, thread] : everyone) thread.join();
  return summary_;
}

void ElasticThreads::Summary::report(std::map<std::string, std::uint64_t>& stats) const {
  stats["threads_now"] = at_stop;
  stats["threads_peak"] = peak;
  stats["pool_grows"] = grows;
  stats["pool_shrinks"] = shrinks;
}

}  // namespace muxlab
