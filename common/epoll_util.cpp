#include "epoll_util.hpp"

#include <cerrno>

#include "net.hpp"

namespace muxlab {

Fd epoll_create_or_throw() {
  Fd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) throw SystemError("epoll_create1", errno);
  return fd;
}

int epoll_control(int epoll_fd, int op, int fd, std::uint32_t events, std::uint64_t tag,
                  Counters& counters) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = tag;
  counters.ctl_calls.add();
  return ::epoll_ctl(epoll_fd, op, fd, op == EPOLL_CTL_DEL ? nullptr : &event) == 0 ? 0 : errno;
}

}  // namespace muxlab
