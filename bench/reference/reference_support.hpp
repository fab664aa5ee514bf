// What the two library-based reference servers share with each other and with
// the project's servers: the flags, the listening socket, the readiness line,
// the stats file. The libraries own everything in between (the loop, the
// buffers, the system calls), which is the point of measuring them.
#pragma once

#include <cstdint>
#include <string>

#include "counters.hpp"
#include "options.hpp"

namespace muxlab::reference {

// What every reference server does first: parse the shared flags (--trace is
// refused with exit 2: the loop is the library's, not ours to annotate; there
// are no pitfalls to switch on) and ignore SIGPIPE, so that a write to a
// vanished peer fails with EPIPE instead of killing the server.
ServerOptions start_up(int argc, char** argv, const std::string& name, const std::string& summary);

// The stats file. The counters a library hides from us are written as null,
// never as a made-up number: `reads`, `writes` and `ctl_calls` count system
// calls in the project's servers, and only strace can count them here.
// `wakeups` is the number of passes of the library's loop (one epoll_wait
// each, as a rule); `events` the I/O callbacks it ran.
bool write_stats(const ServerOptions& options, const std::string& name, const Counters& counters,
                 const std::string& library_version);

// Prints "listening on HOST:PORT" for the bound socket and flushes.
void announce(int listen_fd);

}  // namespace muxlab::reference
