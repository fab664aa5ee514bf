// A reference echo server on libuv, the event loop under Node.js: what a
// production library does with the same job as the project's servers.
//
// libuv is callback-based: it owns the loop (epoll on Linux), asks us for a
// buffer before each read (alloc_cb), hands us the bytes (read_cb) and tells us
// when a write we queued has gone out (write_cb). It reads a readable socket
// until EAGAIN and tries every write at once before it waits for EPOLLOUT.
// Its per-message price on Linux shows up under strace: it keeps no record of
// the interest mask it last gave the kernel across a pass, so a connection
// that stops and restarts watching (read, write, read) costs epoll_ctl calls.
#include <signal.h>
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "echo_connection.hpp"
#include "net.hpp"
#include "reference_support.hpp"

namespace {

using muxlab::Counters;
using muxlab::ServerOptions;

constexpr const char* kName = "libuv_echo_server";

struct Server {
  ServerOptions options;
  Counters counters;
  uv_loop_t* loop = nullptr;
  uv_tcp_t listener{};
  uv_signal_t sigint{}, sigterm{};
  bool stopping = false;
};

struct Connection {
  uv_tcp_t tcp{};  // first member: a uv_handle_t* of it is a Connection*
  Server* server = nullptr;
  std::size_t pending = 0;  // bytes queued for writing, not yet written
  bool reading = false;
  bool peer_done = false;  // the peer's FIN arrived
};

// Each read gets its own buffer, which becomes the write request's buffer:
// the bytes are echoed without a copy and the buffer returns to a free list
// when the write completes (as Node.js does with its slab), so the allocator
// neither grows nor trims the heap per message.
constexpr std::size_t kChunk = 16 * 1024;  // what the project's servers read at once
std::vector<char*> free_chunks;

char* take_chunk() {
  if (free_chunks.empty()) return static_cast<char*>(std::malloc(kChunk));
  char* chunk = free_chunks.back();
  free_chunks.pop_back();
  return chunk;
}

void give_back(char* chunk) {
  if (chunk == nullptr) return;
  if (free_chunks.size() < 4096) {
    free_chunks.push_back(chunk);
  } else {
    std::free(chunk);
  }
}

struct WriteRequest {
  uv_write_t req{};
  uv_buf_t buf{};
};

Connection* connection_of(uv_handle_t* handle) {
  return reinterpret_cast<Connection*>(handle);
}

void on_closed(uv_handle_t* handle) {
  Connection* conn = connection_of(handle);
  conn->server->counters.connection_closed();
  delete conn;
}

void close_connection(Connection* conn) {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&conn->tcp)))
    uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp), on_closed);
}

void on_alloc(uv_handle_t*, std::size_t, uv_buf_t* buf) {
  buf->base = take_chunk();
  buf->len = buf->base ? kChunk : 0;
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

void start_reading(Connection* conn) {
  if (conn->reading || conn->peer_done) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp), on_alloc, on_read) == 0)
    conn->reading = true;
}

void stop_reading(Connection* conn) {
  if (!conn->reading) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&conn->tcp));
  conn->reading = false;
}

void on_written(uv_write_t* req, int status) {
  auto* write = reinterpret_cast<WriteRequest*>(req);
  auto* conn = static_cast<Connection*>(req->data);
  Server& server = *conn->server;
  server.counters.events.add();
  conn->pending -= write->buf.len;
  if (status == 0) {
    server.counters.bytes_out.add(write->buf.len);
  } else if (status != UV_ECANCELED) {
    server.counters.resets.add();
    close_connection(conn);
  }
  give_back(write->buf.base);
  delete write;
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&conn->tcp))) return;
  // Backpressure: reading resumes once the backlog is below half the cap.
  if (conn->pending <= server.options.buffer_cap / 2) start_reading(conn);
  // Half-close: everything received has been echoed; now we close our side.
  if (conn->peer_done && conn->pending == 0) close_connection(conn);
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  Connection* conn = connection_of(reinterpret_cast<uv_handle_t*>(stream));
  Server& server = *conn->server;
  server.counters.events.add();
  if (nread <= 0) {
    give_back(buf->base);
    if (nread == 0) return;  // EAGAIN, as libuv reports it
    if (nread == UV_EOF) {
      conn->peer_done = true;
      stop_reading(conn);
      if (conn->pending == 0) close_connection(conn);
    } else {
      server.counters.resets.add();
      close_connection(conn);
    }
    return;
  }
  const auto n = static_cast<std::size_t>(nread);
  server.counters.bytes_in.add(n);
  muxlab::simulate_request_cost(server.options);
  auto* write = new WriteRequest;
  write->buf = uv_buf_init(buf->base, static_cast<unsigned>(n));
  write->req.data = conn;
  conn->pending += n;
  server.counters.max_pending_bytes.raise_to(conn->pending);
  if (uv_write(&write->req, stream, &write->buf, 1, on_written) != 0) {
    conn->pending -= n;
    give_back(buf->base);
    delete write;
    close_connection(conn);
    return;
  }
  // A client that does not read must not make us hold unbounded memory.
  if (conn->pending >= server.options.buffer_cap) stop_reading(conn);
}

void on_connection(uv_stream_t* listener, int status) {
  auto* server = static_cast<Server*>(listener->data);
  if (status < 0) return;  // libuv keeps a spare descriptor for EMFILE itself
  auto* conn = new Connection;
  conn->server = server;
  uv_tcp_init(server->loop, &conn->tcp);
  conn->tcp.data = conn;
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&conn->tcp)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&conn->tcp),
             [](uv_handle_t* handle) { delete connection_of(handle); });
    return;
  }
  server->counters.accepts.add();
  server->counters.connection_opened();
  uv_tcp_nodelay(&conn->tcp, 1);
  start_reading(conn);
}

void on_signal(uv_signal_t* handle, int) {
  auto* server = static_cast<Server*>(handle->data);
  server->stopping = true;
  uv_stop(server->loop);
}

}  // namespace

int main(int argc, char** argv) {
  Server server;
  server.options = muxlab::reference::start_up(
      argc, argv, kName,
      "TCP echo server on libuv (a reference row of the benchmark, not a technique)");
  server.loop = uv_default_loop();
  try {
    // The socket is made the way every project server makes it, so a bad
    // address fails with the same message; libuv adopts it.
    muxlab::Fd socket = muxlab::listen_tcp(server.options.host, server.options.port);
    uv_tcp_init(server.loop, &server.listener);
    server.listener.data = &server;
    if (int rc = uv_tcp_open(&server.listener, socket.get()); rc != 0)
      throw muxlab::SystemError(std::string("uv_tcp_open: ") + uv_strerror(rc), 0);
    const int fd = socket.release();
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server.listener), 4096, on_connection);
        rc != 0)
      throw muxlab::SystemError(std::string("uv_listen: ") + uv_strerror(rc), 0);
    for (auto [handle, signo] : {std::pair{&server.sigint, SIGINT}, {&server.sigterm, SIGTERM}}) {
      uv_signal_init(server.loop, handle);
      handle->data = &server;
      uv_signal_start(handle, on_signal, signo);
    }
    muxlab::reference::announce(fd);
  } catch (const muxlab::SystemError& e) {
    std::fprintf(stderr, "%s: %s\n", kName, e.what());
    return 1;
  }

  // One pass of the loop per call, so the passes can be counted.
  while (!server.stopping) {
    uv_run(server.loop, UV_RUN_ONCE);
    server.counters.wakeups.add();
  }
  // Close every handle (listener, signals, connections: their pending writes
  // are cancelled first) and let the closes run.
  uv_walk(
      server.loop,
      [](uv_handle_t* handle, void* owner) {
        if (uv_is_closing(handle)) return;
        uv_close(handle, handle->data == owner ? nullptr : on_closed);
      },
      &server);
  uv_run(server.loop, UV_RUN_DEFAULT);
  uv_loop_close(server.loop);
  // Every buffer is back on the free list now (cancelled writes included).
  for (char* chunk : free_chunks) std::free(chunk);
  free_chunks.clear();
  if (!muxlab::reference::write_stats(server.options, kName, server.counters,
                                      std::string("libuv ") + uv_version_string())) {
    std::fprintf(stderr, "%s: cannot write %s\n", kName, server.options.stats_json.c_str());
    return 1;
  }
  return 0;
}
