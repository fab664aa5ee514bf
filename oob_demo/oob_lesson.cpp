#include "oob_lesson.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <stdexcept>

#include "fd.hpp"
#include "net.hpp"

namespace muxlab::oob {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPatience = std::chrono::seconds(5);

struct Link {
  Fd sender;
  Fd receiver;
};

// A connected loopback pair. Nagle is off so each send() is its own segment,
// which keeps the urgent pointer of each experiment unambiguous.
Link connect_pair() {
  Fd listener = listen_tcp("127.0.0.1", 0, 1);
  set_nonblocking(listener.get(), false);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length);
  Link link;
  link.sender.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(link.sender.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    throw SystemError("connect", errno);
  }
  link.receiver.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!link.receiver) throw SystemError("accept", errno);
  const int one = 1;
  ::setsockopt(link.sender.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return link;
}

void send_bytes(int fd, const std::string& bytes, int flags = 0) {
  if (::send(fd, bytes.data(), bytes.size(), flags) != static_cast<ssize_t>(bytes.size())) {
    throw SystemError("send", errno);
  }
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits until normal data can be read. TCP delivers in order, so once a later
// byte is readable every earlier segment (and its urgent pointer) is in.
bool wait_readable(int fd, std::chrono::milliseconds patience = kPatience) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(patience.count())) > 0;
}

// Waits until the urgent pointer has arrived (select's exception condition).
bool wait_exception(int fd, std::chrono::milliseconds patience) {
  const auto deadline = Clock::now() + patience;
  do {
    fd_set except;
    FD_ZERO(&except);
    FD_SET(fd, &except);
    timeval tick{0, std::min(remaining_ms(deadline), 10) * 1000};
    if (::select(fd + 1, nullptr, nullptr, &except, &tick) > 0) return true;
  } while (Clock::now() < deadline);
  return false;
}

std::string read_some(int fd) {
  wait_readable(fd);
  char buffer[256];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
  return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
}

std::optional<char> read_urgent(int fd) {
  char byte = 0;
  if (::recv(fd, &byte, 1, MSG_OOB | MSG_DONTWAIT) == 1) return byte;
  return std::nullopt;
}

std::atomic<int> g_sigurg_count{0};
void on_sigurg(int) {
  g_sigurg_count.fetch_add(1);
}

}  // namespace

LastByteResult only_last_byte_is_urgent() {
  Link link = connect_pair();
  send_bytes(link.sender.get(), "abc", MSG_OOB);
  wait_exception(link.receiver.get(), kPatience);
  LastByteResult result;
  result.normal = read_some(link.receiver.get());
  result.urgent = read_urgent(link.receiver.get());
  return result;
}

MarkResult read_stops_at_the_mark() {
  Link link = connect_pair();
  send_bytes(link.sender.get(), "xy");
  send_bytes(link.sender.get(), "Z", MSG_OOB);
  send_bytes(link.sender.get(), "w");
  wait_exception(link.receiver.get(), kPatience);
  const int fd = link.receiver.get();
  MarkResult result;
  result.at_mark_before_reading = ::sockatmark(fd) == 1;
  result.first_read = read_some(fd);
  result.at_mark_after_first_read = ::sockatmark(fd) == 1;
  result.urgent = read_urgent(fd);
  result.second_read = read_some(fd);
  return result;
}

InlineResult oobinline_keeps_the_byte_in_the_stream() {
  Link link = connect_pair();
  const int one = 1;
  ::setsockopt(link.receiver.get(), SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
  send_bytes(link.sender.get(), "ab");
  send_bytes(link.sender.get(), "c", MSG_OOB);
  send_bytes(link.sender.get(), "d");
  InlineResult result;
  char byte = 0;
  if (::recv(link.receiver.get(), &byte, 1, MSG_OOB | MSG_DONTWAIT) < 0) {
    result.oob_recv_errno = errno;
  }
  // Reads stop at the mark here too, so collect until all four bytes are in.
  for (int i = 0; i < 4 && result.normal.size() < 4; ++i)
    result.normal += read_some(link.receiver.get());
  return result;
}

ReplaceResult second_urgent_byte_replaces_the_first() {
  Link link = connect_pair();
  send_bytes(link.sender.get(), "1", MSG_OOB);
  wait_exception(link.receiver.get(), kPatience);
  send_bytes(link.sender.get(), "2", MSG_OOB);
  send_bytes(link.sender.get(), "end");
  // "end" readable means '2' has arrived too. A lone unread urgent byte does
  // not make the socket readable, so this cannot return early.
  wait_readable(link.receiver.get());
  ReplaceResult result;
  result.urgent = read_urgent(link.receiver.get());
  // "end" is the last thing sent: once it is in, the stream holds nothing more.
  for (int i = 0; i < 4 && !result.normal.ends_with("end"); ++i) {
    result.normal += read_some(link.receiver.get());
  }
  return result;
}

SelectResult select_reports_urgent_data_as_exception() {
  Link link = connect_pair();
  SelectResult result;
  send_bytes(link.sender.get(), "plain");
  wait_readable(link.receiver.get());
  // Ordinary data never raises the exception condition: a short look is enough
  // because the data is already queued.
  result.exception_before = wait_exception(link.receiver.get(), std::chrono::milliseconds(50));
  send_bytes(link.sender.get(), "!", MSG_OOB);
  result.exception_while_pending = wait_exception(link.receiver.get(), kPatience);
  read_urgent(link.receiver.get());
  result.exception_after_reading =
      wait_exception(link.receiver.get(), std::chrono::milliseconds(50));
  return result;
}

SigurgResult sigurg_reaches_the_owner() {
  struct sigaction action {};
  action.sa_handler = on_sigurg;
  sigemptyset(&action.sa_mask);
  struct sigaction previous {};
  ::sigaction(SIGURG, &action, &previous);

  Link link = connect_pair();
  // Without an owner the kernel has nobody to signal.
  ::fcntl(link.receiver.get(), F_SETOWN, ::getpid());
  SigurgResult result;
  result.signals_before = g_sigurg_count.load();
  send_bytes(link.sender.get(), "!", MSG_OOB);
  const auto deadline = Clock::now() + kPatience;
  while (g_sigurg_count.load() == result.signals_before && Clock::now() < deadline) {
    wait_exception(link.receiver.get(), std::chrono::milliseconds(10));
  }
  result.signals_after = g_sigurg_count.load();
  ::sigaction(SIGURG, &previous, nullptr);
  return result;
}

}  // namespace muxlab::oob
