// Lab 07, part A: a select() echo server written the way many tutorials write
// it. It compiles, it even answers the first client now and then, and it has
// at least SIX bugs. Find them, fix them, then
//   labs/check 07
// (Hints, if you need them, are in the lab's README; answers for instructors
// are kept elsewhere. Do not look at select_server.cpp until you are done.)
#include <sys/select.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <list>

#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab07_buggy_select",
    .summary = "Lab 07: a select(2) echo server with bugs to find",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

void serve(ServerContext& ctx) {
  const int listen_fd = ctx.listener.get();
  std::list<int> fds;  // the listener, then every client
  fds.push_back(listen_fd);
  ctx.ready();

  fd_set readable;
  fd_set urgent;
  FD_ZERO(&urgent);
  timeval timeout{5, 0};

  while (!ctx.shutdown.requested()) {
    FD_ZERO(&readable);
    int maxfd = ctx.shutdown.fd();
    FD_SET(ctx.shutdown.fd(), &readable);
    for (int fd : fds) {
      FD_SET(fd, &readable);
      if (fd != listen_fd) FD_SET(fd, &urgent);
      if (fd < maxfd) maxfd = fd;
    }

    const int n = ::select(maxfd + 1, &readable, nullptr, nullptr, &timeout);
    ctx.counters.wakeups.add();
    if (n <= 0) continue;
    ctx.counters.events.add(static_cast<std::uint64_t>(n));
    ctx.tracer.line("wakeup: select returned %d", n);

    for (auto it = fds.begin(); it != fds.end(); ++it) {
      const int fd = *it;
      if (FD_ISSET(fd, &readable)) {
        if (fd == listen_fd) {
          const int client = ::accept(listen_fd, nullptr, nullptr);
          if (client < 0) continue;
          ctx.counters.accepts.add();
          ctx.counters.connection_opened();
          ctx.tracer.line("accept: new connection fd %d", client);
          fds.push_back(client);
          continue;
        }
        char buffer[4096];
        const ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
        ctx.counters.reads.add();
        if (got <= 0) {
          ctx.tracer.line("  fd %d: closed", fd);
          ::close(fd);
          ctx.counters.connection_closed();
          fds.erase(it);
          continue;
        }
        ctx.counters.bytes_in.add(static_cast<std::uint64_t>(got));
        const ssize_t sent = ::send(fd, buffer, static_cast<std::size_t>(got), 0);
        ctx.counters.writes.add();
        if (sent > 0) ctx.counters.bytes_out.add(static_cast<std::uint64_t>(sent));
      }
      if (FD_ISSET(fd, &urgent)) {
        char byte = 0;
        if (::recv(fd, &byte, 1, MSG_OOB) == 1) ::send(fd, &byte, 1, MSG_OOB);
      }
    }
  }
  for (int fd : fds) {
    if (fd != listen_fd) ::close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, serve);
}
