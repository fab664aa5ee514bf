// Socket helpers. Failures that end the program carry the address and errno
// text (SystemError); failures of one connection are returned, not thrown.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "counters.hpp"
#include "fd.hpp"
#include "tracer.hpp"

namespace muxlab {

class SystemError : public std::runtime_error {
 public:
  SystemError(const std::string& what, int error_number);
  int error_number() const { return error_number_; }

 private:
  int error_number_;
};

// A numeric IPv4 or IPv6 socket address, ready for bind() or connect().
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // 127.0.0.0/8 or ::1: the only addresses a load loop may be pointed at.
  bool is_loopback() const;
};

// "127.0.0.1", "::1" and the like, with `port`. Names are never looked up: a
// resolver could block, or answer with an address nobody meant. Empty when
// `host` is not a numeric address; numeric_address_error(host) says why.
std::optional<SocketAddress> parse_numeric_address(const std::string& host, std::uint16_t port);
std::string numeric_address_error(const std::string& host);

// The same for a caller that cannot go on without it: throws SystemError (EINVAL).
SocketAddress numeric_address(const std::string& host, std::uint16_t port);

// A bound, listening, non-blocking, close-on-exec TCP socket. `reuse_port`
// sets SO_REUSEPORT before bind(): the kernel then lets more sockets that set
// it bind the same address, each with its own accept queue.
Fd listen_tcp(const std::string& host, std::uint16_t port, int backlog = 4096,
              bool reuse_port = false);

// "HOST:PORT" of a bound socket (IPv6 as "[ADDR]:PORT").
std::string local_address(int fd);

void set_nonblocking(int fd, bool on = true);

// Accepts connections without letting descriptor exhaustion spin the loop.
//
// When accept() fails with EMFILE/ENFILE the pending connection stays in the
// backlog, so a level-triggered listener is reported ready again at once and
// the loop burns a core. Keeping one spare descriptor lets us accept that
// connection and close it politely, which removes it from the backlog.
class Acceptor {
 public:
  // Throws SystemError when even the spare descriptor cannot be opened.
  Acceptor(Counters& counters, const Tracer& tracer);

  enum class Status { kAccepted, kWouldBlock, kDropped, kFailed };
  struct Result {
    Status status;
    Fd fd;
  };

  // One accept4(). kDropped: the connection was closed for lack of descriptors;
  // kFailed: a transient error on that one connection (e.g. ECONNABORTED).
  // Both mean "try again"; only kWouldBlock means the backlog is empty.
  Result accept_one(int listen_fd, bool nonblocking = true);

 private:
  Fd spare_;
  Counters& counters_;
  const Tracer& tracer_;
};

}  // namespace muxlab
