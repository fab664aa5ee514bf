// The pool's own flags (thread counts, idle timeout, TCP keepalive), its
// pitfalls, and the keepalive set-up of an accepted socket. Nothing here is
// about epoll; the technique is in epoll_oneshot_pool.cpp.
#pragma once

#include <vector>

#include "server_main.hpp"

namespace muxlab {

struct PoolOptions {
  unsigned min_threads = 2;
  unsigned max_threads = 32;
  unsigned idle_timeout_ms = 5000;
  std::vector<int> keepalive;  // IDLE (s), INTVL (s), CNT (probes); empty: off
};

// The server's name, flags, validation and pitfalls, filled into `pool`.
ServerSpec make_pool_spec(PoolOptions& pool);

// SO_KEEPALIVE with the three timings of --keepalive. A failure is traced, not
// fatal: the connection still works, it is only not probed.
void enable_keepalive(int fd, const PoolOptions& pool, const Tracer& tracer);

}  // namespace muxlab
