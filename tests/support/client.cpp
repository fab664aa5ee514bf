#include "client.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace muxlab::test {

namespace {

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<long>(0, left.count()));
}

bool wait_ready(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

Fd connect_to(std::uint16_t port, const std::string& host) {
  const SocketAddress address = numeric_address(host, port);
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  // A blocking connect to loopback completes at once (the kernel finishes the
  // handshake even before the server calls accept).
  if (::connect(fd.get(), address.get(), address.length) != 0) {
    throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
  }
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_nonblocking(fd.get());
  return fd;
}

std::string pattern(std::size_t size, std::uint32_t salt) {
  std::string bytes(size, '\0');
  std::uint32_t x = salt * 2654435761u + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    bytes[i] = static_cast<char>(x);
  }
  return bytes;
}

bool send_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      if (!wait_ready(fd, POLLOUT, deadline)) return false;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

std::string receive(int fd, std::size_t size, Clock::time_point deadline) {
  std::string got;
  char buffer[64 * 1024];
  while (got.size() < size) {
    const ssize_t n = ::recv(fd, buffer, std::min(sizeof buffer, size - got.size()), 0);
    if (n > 0) {
      got.append(buffer, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      if (!wait_ready(fd, POLLIN, deadline)) break;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  return got;
}

Ending wait_for_end(int fd, Clock::time_point deadline, std::string* tail) {
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      if (tail != nullptr) tail->append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return Ending::kEof;
    } else if (errno == EAGAIN) {
      if (!wait_ready(fd, POLLIN, deadline)) return Ending::kOpen;
    } else if (errno != EINTR) {
      return Ending::kReset;
    }
  }
}

PumpResult pump(int fd, std::string_view payload, std::size_t expect, Clock::time_point deadline,
                std::size_t chunk, bool shutdown_after_send) {
  PumpResult result;
  result.received.reserve(expect);
  char buffer[64 * 1024];
  bool shut = false;
  while (result.received.size() < expect ||
         (shutdown_after_send && result.ending == Ending::kOpen)) {
    if (shutdown_after_send && !shut && result.sent == payload.size()) {
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
    short events = POLLIN;
    if (result.sent < payload.size()) events |= POLLOUT;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if ((p.revents & POLLOUT) && result.sent < payload.size()) {
      const std::size_t n = std::min(chunk, payload.size() - result.sent);
      const ssize_t w = ::send(fd, payload.data() + result.sent, n, MSG_NOSIGNAL);
      if (w > 0) result.sent += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        result.ending = Ending::kReset;
        break;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        result.received.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0) {
        result.ending = Ending::kEof;
        break;
      } else if (errno != EAGAIN && errno != EINTR) {
        result.ending = Ending::kReset;
        break;
      }
    }
  }
  return result;
}

std::string round_trip(int fd, std::string_view message, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (!send_all(fd, message, deadline)) return {};
  return receive(fd, message.size(), deadline);
}

void raise_fd_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace muxlab::test
