// Lab 00 starter: the smallest program that honours the lifecycle half of the
// server contract. It listens, but serves nobody: it only waits for SIGINT or
// SIGTERM. Complete the TODO, then
//   labs/check 00
#include <poll.h>

#include <cerrno>

#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab00_setup",
    .summary = "Lab 00: listens, waits for a signal, writes its stats, exits 0",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

void wait_for_shutdown(ServerContext& ctx) {
  // run_server() has parsed the flags, bound the listener and turned
  // SIGINT/SIGTERM into a readable descriptor, ctx.shutdown.fd(). ctx.ready()
  // prints "listening on HOST:PORT": a loop calls it once everything it needs
  // exists, so a server that cannot start says so before anyone connects.
  // When this function returns, run_server() writes the --stats-json file and
  // exits 0.
  ctx.ready();

  // TODO: sleep until ctx.shutdown.fd() is readable, without burning CPU:
  // poll() it with no timeout (retry when poll fails with EINTR). Then count
  // the wakeup (ctx.counters.wakeups.add()) and trace it with
  // ctx.tracer.line("wakeup: shutdown requested").
  (void)ctx;
}

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, wait_for_shutdown);
}
