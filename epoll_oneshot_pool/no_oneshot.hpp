// PITFALL no-oneshot: what a pool without EPOLLONESHOT has to add, and why it
// still cannot be made right.
//
// Without ONESHOT the kernel may report a connection again while a worker is
// still inside its handler, and a second worker receives the same pointer.
// Two things follow. Two workers in one EchoConnection would corrupt it, so
// people reach for a per-connection lock: it keeps this demonstration from
// corrupting memory, but it parks the second worker on a connection that
// someone else is already serving. And no worker can ever know that no other
// one is about to use the pointer, so a connection can never be freed before
// exit: bury() says goodbye to the peer, drops the interest and keeps the
// object until the pool is destroyed.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <mutex>

#include "counters.hpp"

namespace muxlab {

class NoOneshotBandAid {
 public:
  // Held for the whole handler. A connection buried meanwhile is not served.
  std::unique_lock<std::mutex> lock() { return std::unique_lock(mutex_); }
  bool buried() const { return buried_; }

  // Called with lock() held, instead of freeing the connection.
  void bury(int epoll_fd, int fd, Counters& counters) {
    counters.ctl_calls.add();
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    ::shutdown(fd, SHUT_RDWR);
    buried_ = true;
  }

 private:
  std::mutex mutex_;
  bool buried_ = false;
};

}  // namespace muxlab
