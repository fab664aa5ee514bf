// A reference echo server on libevent 2.1 (the loop of memcached and tmux):
// what a production library does with the same job as the project's servers.
//
// libevent's bufferevent owns a connection's two buffers. When the socket is
// readable it reads into the input buffer (readv into its chunks); our read
// callback moves those chunks to the output buffer without copying; libevent
// writes them out with writev when the socket is writable. It switches
// EPOLLOUT on while output is queued and off when it has drained, and it
// re-enables reading after each callback, so one message can cost it interest
// changes (epoll_ctl) on top of the read and the write: strace counts them.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>
#include <unordered_set>

#include "echo_connection.hpp"
#include "net.hpp"
#include "reference_support.hpp"

namespace {

using muxlab::Counters;
using muxlab::ServerOptions;

constexpr const char* kName = "libevent_echo_server";

struct Server {
  ServerOptions options;
  Counters counters;
  event_base* base = nullptr;
  std::unordered_set<bufferevent*> connections;
  int spare_fd = -1;  // given up to accept-and-close a connection when out of descriptors
  bool stopping = false;
};

struct Connection {
  Server* server;
  bool peer_done = false;
};

void close_connection(bufferevent* bev, Connection* conn) {
  conn->server->connections.erase(bev);
  conn->server->counters.connection_closed();
  bufferevent_free(bev);  // closes the socket (BEV_OPT_CLOSE_ON_FREE)
  delete conn;
}

// Called whenever libevent removes bytes from the output buffer, i.e. wrote them.
void on_output_drained(evbuffer*, const evbuffer_cb_info* info, void* arg) {
  if (info->n_deleted > 0) static_cast<Server*>(arg)->counters.bytes_out.add(info->n_deleted);
}

void on_read(bufferevent* bev, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  Server& server = *conn->server;
  server.counters.events.add();
  evbuffer* input = bufferevent_get_input(bev);
  evbuffer* output = bufferevent_get_output(bev);
  const std::size_t n = evbuffer_get_length(input);
  server.counters.bytes_in.add(n);
  muxlab::simulate_request_cost(server.options);
  evbuffer_add_buffer(output, input);  // moves the chunks, copies nothing
  const std::size_t pending = evbuffer_get_length(output);
  server.counters.max_pending_bytes.raise_to(pending);
  // Backpressure: stop reading while the backlog is at the cap; the write
  // callback (output down to half the cap) turns reading back on.
  if (pending >= server.options.buffer_cap) bufferevent_disable(bev, EV_READ);
}

void on_write(bufferevent* bev, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  conn->server->counters.events.add();
  const std::size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
  if (conn->peer_done) {
    // Half-close: the peer is done; close once everything has been echoed.
    if (pending == 0) close_connection(bev, conn);
    return;
  }
  if (!(bufferevent_get_enabled(bev) & EV_READ)) bufferevent_enable(bev, EV_READ);
}

void on_event(bufferevent* bev, short what, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  conn->server->counters.events.add();
  if (what & BEV_EVENT_EOF) {
    conn->peer_done = true;
    bufferevent_disable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) close_connection(bev, conn);
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    conn->server->counters.resets.add();
    close_connection(bev, conn);
  }
}

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  auto* server = static_cast<Server*>(arg);
  server->counters.accepts.add();
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent* bev = bufferevent_socket_new(server->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    close(fd);
    return;
  }
  auto* conn = new Connection{server};
  server->connections.insert(bev);
  server->counters.connection_opened();
  bufferevent_setcb(bev, on_read, on_write, on_event, conn);
  // The input buffer holds at most a cap's worth; the write callback runs
  // when the output is down to half the cap.
  bufferevent_setwatermark(bev, EV_READ, 0, server->options.buffer_cap);
  bufferevent_setwatermark(bev, EV_WRITE, server->options.buffer_cap / 2, 0);
  evbuffer_add_cb(bufferevent_get_output(bev), on_output_drained, server);
  bufferevent_enable(bev, EV_READ);
}

// Out of descriptors: the pending connection would keep the listener readable
// (and the loop spinning). Free the spare, accept it, close it, take the spare back.
void on_accept_error(evconnlistener* listener, void* arg) {
  auto* server = static_cast<Server*>(arg);
  const int error = EVUTIL_SOCKET_ERROR();
  if (error != EMFILE && error != ENFILE) return;
  if (server->spare_fd >= 0) close(server->spare_fd);
  int fd = accept(evconnlistener_get_fd(listener), nullptr, nullptr);
  if (fd >= 0) close(fd);
  server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void on_signal(evutil_socket_t, short, void* arg) {
  auto* server = static_cast<Server*>(arg);
  server->stopping = true;
  event_base_loopbreak(server->base);
}

}  // namespace

int main(int argc, char** argv) {
  Server server;
  server.options = muxlab::reference::start_up(
      argc, argv, kName,
      "TCP echo server on libevent (a reference row of the benchmark, not a technique)");
  server.base = event_base_new();
  if (server.base == nullptr) {
    std::fprintf(stderr, "%s: event_base_new failed\n", kName);
    return 1;
  }
  evconnlistener* listener = nullptr;
  event* signals[2] = {};
  try {
    // The socket is made the way every project server makes it, so a bad
    // address fails with the same message; libevent adopts it.
    muxlab::Fd socket = muxlab::listen_tcp(server.options.host, server.options.port);
    listener = evconnlistener_new(server.base, on_accept, &server,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, socket.get());
    if (listener == nullptr) throw muxlab::SystemError("evconnlistener_new", errno);
    const int fd = socket.release();
    evconnlistener_set_error_cb(listener, on_accept_error);
    server.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int signos[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; ++i) {
      signals[i] = evsignal_new(server.base, signos[i], on_signal, &server);
      event_add(signals[i], nullptr);
    }
    muxlab::reference::announce(fd);
  } catch (const muxlab::SystemError& e) {
    std::fprintf(stderr, "%s: %s\n", kName, e.what());
    return 1;
  }

  // One pass of the loop per call, so the passes can be counted.
  while (!server.stopping) {
    if (event_base_loop(server.base, EVLOOP_ONCE) < 0) break;
    server.counters.wakeups.add();
  }
  evconnlistener_free(listener);
  for (event* e : signals) event_free(e);
  while (!server.connections.empty()) {
    bufferevent* bev = *server.connections.begin();
    void* arg = nullptr;
    bufferevent_getcb(bev, nullptr, nullptr, nullptr, &arg);
    close_connection(bev, static_cast<Connection*>(arg));
  }
  event_base_free(server.base);
  if (server.spare_fd >= 0) close(server.spare_fd);
  if (!muxlab::reference::write_stats(server.options, kName, server.counters,
                                      std::string("libevent ") + event_get_version())) {
    std::fprintf(stderr, "%s: cannot write %s\n", kName, server.options.stats_json.c_str());
    return 1;
  }
  return 0;
}
