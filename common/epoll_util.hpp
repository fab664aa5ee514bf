// Thin epoll helpers shared by the epoll servers: every epoll_ctl() goes
// through here so the `ctl_calls` counter is exact.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "counters.hpp"
#include "fd.hpp"

namespace muxlab {

Fd epoll_create_or_throw();

// epoll_ctl(op, fd) with `data.u64 = tag`. Returns 0 or the errno value: the
// failure of one connection's registration is the caller's to judge.
int epoll_control(int epoll_fd, int op, int fd, std::uint32_t events, std::uint64_t tag,
                  Counters& counters);

}  // namespace muxlab
