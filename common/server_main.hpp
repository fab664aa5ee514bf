// run_server(): everything around a readiness loop that is the same for every
// server — flags, the listening socket, the "listening on" line, signals,
// stats at exit, exit codes. The technique's own file supplies the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "counters.hpp"
#include "fd.hpp"
#include "net.hpp"
#include "options.hpp"
#include "shutdown_signal.hpp"
#include "tracer.hpp"

namespace muxlab {

struct ServerContext {
  const ServerOptions& options;
  const Fd& listener;  // non-blocking, already listening
  ShutdownSignal& shutdown;
  Counters& counters;
  const Tracer& tracer;
  Acceptor& acceptor;
  // Technique-specific numbers for the stats file (e.g. select's FD_SETSIZE rejects).
  std::map<std::string, std::uint64_t>& extra_stats;
  // Prints "listening on HOST:PORT" (once, however often it is called). A loop
  // calls it when its own kernel objects exist (the epoll instance, the worker
  // threads): a server that cannot create them exits 1 before anyone was told
  // it is ready, and no client connects to a server that is about to die.
  std::function<void()> ready;
};

// The loop returns when ctx.shutdown.requested(); it throws SystemError only for
// failures of the whole server (epoll_create failing, say), which exit 1.
using ServerLoop = std::function<void(ServerContext&)>;

int run_server(int argc, char** argv, const ServerSpec& spec, const ServerLoop& loop);

}  // namespace muxlab
