// Occupancy: how many workers are inside one handler right now, and the most
// ever seen (the max_workers_per_connection and max_workers_in_accept stats:
// with EPOLLONESHOT both must stay 1).
//
// The atomic is also the hand-off that ThreadSanitizer can see. The kernel
// orders "worker A re-arms the connection" before "worker B receives its
// event", but TSan does not model EPOLL_CTL_MOD, so A's release in leave() and
// B's acquire in enter() state that order in C++ terms. (tsan_handoff.hpp
// hides the MOD's own read of the descriptor from TSan.)
#pragma once

#include <atomic>
#include <cstdint>

#include "counters.hpp"

namespace muxlab {

class Occupancy {
 public:
  void enter(Counter& most) { most.raise_to(inside_.fetch_add(1, std::memory_order_acq_rel) + 1); }
  void leave() { inside_.fetch_sub(1, std::memory_order_release); }

 private:
  std::atomic<std::uint64_t> inside_{0};
};

}  // namespace muxlab
