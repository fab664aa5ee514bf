// pool_round_trips: a closed-loop echo client for the README's figure.
//
// Each of --clients connections sends one --size byte request, waits for the
// whole echo, and sends the next; after --seconds it prints how many round
// trips completed. With --block-us on the server every request costs a fixed
// sleep there, so the rate shows how many requests the server serves at once.
// This is a one-figure tool; the project's load generator lives in bench/.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fd.hpp"
#include "net.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Client {
  muxlab::Fd fd;
  std::size_t sent = 0;
  std::size_t received = 0;
  Clock::time_point started;
};

muxlab::Fd connect_to(const std::string& host, std::uint16_t port) {
  const muxlab::SocketAddress address = muxlab::numeric_address(host, port);
  muxlab::Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), address.get(), address.length) != 0) {
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  }
  const int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
  int clients = 16;
  std::size_t size = 64;
  double seconds = 5;
  CLI::App app{"Closed-loop echo round trips against one server", "pool_round_trips"};
  app.add_option("--host", host, "Server address (numeric IPv4 or IPv6)")->capture_default_str();
  app.add_option("--port", port, "Server port")->capture_default_str();
  app.add_option("--clients", clients, "Connections, each with one request in flight")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--size", size, "Bytes per request")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}))
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Measurement window")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<Client> all;
  std::vector<pollfd> polled;
  try {
    for (int i = 0; i < clients; ++i) {
      Client c;
      c.fd = connect_to(host, port);
      all.push_back(std::move(c));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pool_round_trips: %s\n", e.what());
    return 1;
  }
  const std::string request(size, 'r');
  std::vector<char> buffer(size);
  std::vector<double> latencies_us;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  for (auto& c : all) c.started = start;

  while (Clock::now() < end) {
    polled.clear();
    for (const auto& c : all) {
      polled.push_back({c.fd.get(), static_cast<short>(c.sent < size ? POLLOUT : POLLIN), 0});
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    const int ready = ::poll(polled.data(), polled.size(), static_cast<int>(left.count()) + 1);
    if (ready < 0 && errno != EINTR) {
      std::perror("poll");
      return 1;
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (polled[i].revents == 0) continue;
      Client& c = all[i];
      if (c.sent < size) {
        const ssize_t n = ::send(c.fd.get(), request.data() + c.sent, size - c.sent, MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<std::size_t>(n);
      } else {
        const ssize_t n = ::recv(c.fd.get(), buffer.data(), size - c.received, 0);
        if (n <= 0) {
          std::fprintf(stderr, "pool_round_trips: connection %zu ended\n", i);
          return 1;
        }
        c.received += static_cast<std::size_t>(n);
      }
      if (c.received == size) {
        const auto now = Clock::now();
        latencies_us.push_back(std::chrono::duration<double, std::micro>(now - c.started).count());
        c = Client{std::move(c.fd), 0, 0, now};
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies_us.begin(), latencies_us.end());
  const auto percentile = [&](double p) {
    if (latencies_us.empty()) return 0.0;
    return latencies_us[static_cast<std::size_t>(p * static_cast<double>(latencies_us.size() - 1))];
  };
  std::printf(
      "clients=%d size=%zu seconds=%.2f round_trips=%zu rate_per_s=%.1f "
      "p50_ms=%.2f p99_ms=%.2f\n",
      clients, size, elapsed, latencies_us.size(),
      static_cast<double>(latencies_us.size()) / elapsed, percentile(0.5) / 1000,
      percentile(0.99) / 1000);
  return 0;
}
