#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace muxlab {

SystemError::SystemError(const std::string& what, int error_number)
    : std::runtime_error(what + ": " + std::strerror(error_number)), error_number_(error_number) {}

namespace {

std::string format_address(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a.sin6_port));
  }
  const auto& a = reinterpret_cast<const sockaddr_in&>(address);
  inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a.sin_port));
}

std::string format_request(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

}  // namespace

std::optional<SocketAddress> parse_numeric_address(const std::string& host, std::uint16_t port) {
  SocketAddress address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    address.length = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    address.length = sizeof *v6;
  } else {
    return std::nullopt;
  }
  return address;
}

std::string numeric_address_error(const std::string& host) {
  return "not a numeric IPv4 or IPv6 address: " + host;
}

SocketAddress numeric_address(const std::string& host, std::uint16_t port) {
  if (auto address = parse_numeric_address(host, port)) return *address;
  throw SystemError(numeric_address_error(host), EINVAL);
}

bool SocketAddress::is_loopback() const {
  if (family() == AF_INET) {
    // 127.0.0.0/8: the whole block is loopback, not only 127.0.0.1.
    const auto& a = reinterpret_cast<const sockaddr_in&>(storage);
    return (ntohl(a.sin_addr.s_addr) >> 24) == 127;
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(storage);
  return family() == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a.sin6_addr);
}

Fd listen_tcp(const std::string& host, std::uint16_t port, int backlog, bool reuse_port) {
  const SocketAddress address = numeric_address(host, port);
  const std::string where = format_request(host, port);
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw SystemError("socket for " + where, errno);
  // Lets a restarted server bind while old connections sit in TIME_WAIT.
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw SystemError("setsockopt(SO_REUSEPORT) for " + where, errno);
  }
  if (::bind(fd.get(), address.get(), address.length) != 0) {
    throw SystemError("cannot bind " + where, errno);
  }
  if (::listen(fd.get(), backlog) != 0) throw SystemError("cannot listen on " + where, errno);
  return fd;
}

std::string local_address(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw SystemError("getsockname", errno);
  }
  return format_address(address);
}

void set_nonblocking(int fd, bool on) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw SystemError("fcntl(F_GETFL)", errno);
  const int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) != 0) {
    throw SystemError("fcntl(F_SETFL)", errno);
  }
}

Acceptor::Acceptor(Counters& counters, const Tracer& tracer)
    : spare_(::open("/dev/null", O_RDONLY | O_CLOEXEC)), counters_(counters), tracer_(tracer) {
  // Without the spare, EMFILE would look like "nothing to accept" while the
  // listener stays readable: a level-triggered loop would spin. Better to
  // refuse to start, before anyone is told the server is ready.
  if (!spare_) throw SystemError("cannot open the spare descriptor kept for EMFILE", errno);
}

Acceptor::Result Acceptor::accept_one(int listen_fd, bool nonblocking) {
  const int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, flags);
    if (fd >= 0) {
      counters_.accepts.add();
      // Echo traffic is many small writes; Nagle would hold them for the ACK.
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return {Status::kAccepted, Fd(fd)};
    }
    switch (errno) {
      case EINTR:
        continue;
      case EAGAIN:
        return {Status::kWouldBlock, Fd()};
      case EMFILE:
      case ENFILE: {
        const int reason = errno;
        if (!spare_) spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!spare_) return {Status::kWouldBlock, Fd()};  // nothing left to trade
        spare_.reset();
        Fd doomed(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
        const bool dropped = doomed.valid();
        doomed.reset();
        spare_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!dropped) return {Status::kWouldBlock, Fd()};
        counters_.accept_dropped.add();
        tracer_.line("accept: %s, connection closed to keep the loop alive", std::strerror(reason));
        return {Status::kDropped, Fd()};
      }
      default:
        // ECONNABORTED, EPROTO, ENOBUFS...: that one connection failed.
        tracer_.line("accept: %s", std::strerror(errno));
        return {Status::kFailed, Fd()};
    }
  }
}

}  // namespace muxlab
