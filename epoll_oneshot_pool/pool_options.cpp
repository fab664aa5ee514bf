#include "pool_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <string>

namespace muxlab {

namespace {
constexpr unsigned kMostThreads = 1024;
}  // namespace

ServerSpec make_pool_spec(PoolOptions& pool) {
  return ServerSpec{
      .name = "epoll_oneshot_pool",
      .summary = "TCP echo server: worker threads share one epoll fd, one EPOLLONESHOT event each",
      .pitfalls = {{"no-oneshot",
                    "register clients without EPOLLONESHOT: a second event for a connection "
                    "reaches another worker while the first is still inside it (see the "
                    "max_workers_per_connection stat), and nothing can ever be freed safely"},
                   {"no-rearm",
                    "forget the EPOLL_CTL_MOD after handling an event: the connection is never "
                    "reported again and stalls after its first message"},
                   {"listen-accept-once",
                    "register the listener edge-triggered without EPOLLONESHOT and accept one "
                    "connection per event: connections that arrive together make one edge and "
                    "all but one wait in the backlog"}},
      .add_options =
          [&pool](CLI::App& app) {
            app.add_option("--min-threads", pool.min_threads, "Workers kept even when idle")
                ->check(CLI::Range(1u, kMostThreads))
                ->capture_default_str();
            app.add_option("--max-threads", pool.max_threads,
                           "Most workers; one more starts whenever every worker is busy")
                ->check(CLI::Range(1u, kMostThreads))
                ->capture_default_str();
            app.add_option("--idle-timeout-ms", pool.idle_timeout_ms,
                           "A worker idle this long exits while more than the minimum remain")
                ->check(CLI::Range(1u, 86'400'000u))
                ->capture_default_str();
            app.add_option("--keepalive", pool.keepalive,
                           "TCP keepalive on accepted sockets: IDLE,INTVL,CNT "
                           "(seconds before the first probe, seconds between probes, probes)")
                ->delimiter(',')
                ->expected(3);
          },
      .validate = [&pool]() -> std::string {
        if (pool.max_threads < pool.min_threads) {
          return "--max-threads must be at least --min-threads";
        }
        if (!pool.keepalive.empty()) {
          // The kernel's own limits for TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
          const int most[] = {32767, 32767, 127};
          for (std::size_t i = 0; i < 3; ++i) {
            if (pool.keepalive[i] < 1 || pool.keepalive[i] > most[i]) {
              return "--keepalive IDLE,INTVL,CNT: each must be from 1 to " +
                     std::to_string(most[i]) + " (got " + std::to_string(pool.keepalive[i]) + ")";
            }
          }
        }
        return {};
      },
  };
}

void enable_keepalive(int fd, const PoolOptions& pool, const Tracer& tracer) {
  // The kernel probes a peer that has been silent for IDLE seconds and resets
  // the connection when it has vanished, so a dead client does not hold its
  // connection for ever, and the pool needs no list of connections to scan.
  const int on = 1;
  const auto& k = pool.keepalive;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k[0], sizeof k[0]) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k[1], sizeof k[1]) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k[2], sizeof k[2]) != 0) {
    tracer.line("fd %d: keepalive not set: %s", fd, std::strerror(errno));
  }
}

}  // namespace muxlab
