// Lab 05 starter: worker threads sharing one epoll descriptor, one connection
// per worker at a time thanks to EPOLLONESHOT. Complete the TODOs, then
//   labs/check 05
#include <sys/epoll.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "echo_connection.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"
#include "tsan_handoff.hpp"  // unseen_by_tsan(): see the lab text, "ThreadSanitizer"

namespace {

using namespace muxlab;

struct PoolOptions {
  unsigned min_threads = 2;
  unsigned max_threads = 16;
};
PoolOptions pool_options;

const ServerSpec kSpec{
    .name = "lab05_pool",
    .summary = "Lab 05: TCP echo server, EPOLLONESHOT worker pool",
    .pitfalls = {},
    .add_options =
        [](CLI::App& app) {
          app.add_option("--min-threads", pool_options.min_threads, "Workers always running")
              ->check(CLI::Range(1u, 1024u))
              ->capture_default_str();
          app.add_option("--max-threads", pool_options.max_threads, "Most workers at once")
              ->check(CLI::Range(1u, 1024u))
              ->capture_default_str();
        },
    .validate =
        [] {
          return pool_options.min_threads <= pool_options.max_threads
                     ? std::string()
                     : std::string("--min-threads must not exceed --max-threads");
        },
};

class Pool {
 public:
  explicit Pool(ServerContext& ctx) : ctx_(ctx), epoll_(epoll_create_or_throw()) {
    // TODO(1): register the shutdown descriptor and the listener. The listener
    // is shared by every worker: make sure a burst of connections is accepted
    // in full (accept until kWouldBlock, or keep the listener level-triggered).
    // ctx_.acceptor keeps a spare descriptor for EMFILE: it is not thread-safe,
    // so only one worker at a time may call accept_one() (a mutex).
  }

  void run() {
    ctx_.ready();  // given: prints "listening on"; your descriptors exist by now
    // TODO(2): start pool_options.min_threads workers running worker(). Hand
    // each thread everything it needs BEFORE it starts: a thread that reads a
    // field its creator sets after std::thread's constructor has a data race.
    // Start more workers (up to max_threads) while every worker is busy.
    // TODO(3): wait for shutdown, then stop and join every worker; close
    // every connection that is still open.
  }

 private:
  void worker() {
    // TODO(4): each worker calls epoll_wait(epoll, &event, 1, timeout) on the
    // shared descriptor. Clients are registered with EPOLLIN | EPOLLONESHOT, so
    // the kernel reports a connection to ONE worker and then disarms it.
    // Serve it (read_once, flush; --block-us makes a read slow on purpose),
    // then re-arm it with EPOLL_CTL_MOD, asking for EPOLLOUT too while output
    // is queued. Without the re-arm the connection is never reported again.
    // Write the re-arm as unseen_by_tsan([&] { return ::epoll_ctl(...); }):
    // ThreadSanitizer cannot see that the MOD hands the connection over.
    // When finished(): delete it. No other worker can hold it: why?
  }

  ServerContext& ctx_;
  Fd epoll_;
  std::mutex mutex_;  // guards the connection table and the worker list
  std::vector<std::thread> workers_;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Pool(ctx).run(); });
}
