// Lab 07, part B: a worker pool on one epoll descriptor, in the style of a
// well-known blog post: threads block in epoll_wait(fd, &one_event, 1, ...),
// connections are registered EPOLLONESHOT so that one worker owns one
// connection at a time, and the pool grows while every worker is busy.
// The design is sound. The code has at least SIX bugs, some of which only
// show under load or under ThreadSanitizer. This part is a code review: write
// down each bug, the symptom it causes and the fix. It builds as the target
// lab07_buggy_pool so you can run it (with --trace) and watch it fail.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <thread>

#include "echo_connection.hpp"
#include "epoll_util.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

const ServerSpec kSpec{
    .name = "lab07_buggy_pool",
    .summary = "Lab 07: an EPOLLONESHOT worker pool with bugs to find",
    .pitfalls = {},
    .add_options = {},
    .validate = {},
};

constexpr int kMinWorkers = 2;
constexpr int kMaxWorkers = 8;
constexpr int kIdleTimeoutMs = 2000;

struct Server;

struct WorkerParam {
  Server* server = nullptr;
  std::thread thread;
};

struct Server {
  ServerContext* ctx = nullptr;
  int epoll_fd = -1;
  pthread_spinlock_t lock{};
  int workers = 0;
  int busy = 0;
};

void worker_routine(WorkerParam* param);

void add_workers(Server* server, int how_many) {
  if (server->workers < kMinWorkers ||
      (server->busy == server->workers && server->workers < kMaxWorkers)) {
    pthread_spin_lock(&server->lock);
    for (int i = 0; i < how_many && server->workers < kMaxWorkers; ++i) {
      auto* param = new WorkerParam;
      param->thread = std::thread(worker_routine, param);
      param->server = server;
      param->thread.detach();
      ++server->workers;
    }
    pthread_spin_unlock(&server->lock);
  }
}

void on_accept(Server* server) {
  ServerContext& ctx = *server->ctx;
  auto [status, fd] = ctx.acceptor.accept_one(ctx.listener.get());
  if (status != Acceptor::Status::kAccepted) {
    epoll_control(server->epoll_fd, EPOLL_CTL_DEL, ctx.listener.get(), 0, 0, ctx.counters);
    return;
  }
  const int keepalive = 1;
  const int idle_seconds = 30 * 60;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &keepalive, sizeof keepalive) != 0 ||
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle_seconds, sizeof idle_seconds) != 0) {
    fd.release();
    return;
  }
  auto* connection = new EchoConnection(std::move(fd), ctx.options, ctx.counters);
  epoll_control(server->epoll_fd, EPOLL_CTL_ADD, connection->fd(), EPOLLIN | EPOLLET | EPOLLONESHOT,
                reinterpret_cast<std::uintptr_t>(connection), ctx.counters);
}

void worker_routine(WorkerParam* param) {
  Server* server = param->server;
  ServerContext& ctx = *server->ctx;
  delete param;
  for (;;) {
    epoll_event event{};
    const int n = ::epoll_wait(server->epoll_fd, &event, 1, kIdleTimeoutMs);
    if (n == 0) {
      if (server->busy == 0 && server->workers > kMinWorkers) {
        pthread_spin_lock(&server->lock);
        --server->workers;
        pthread_spin_unlock(&server->lock);
        return;
      }
      continue;
    }
    if (n < 0) return;
    ctx.counters.wakeups.add();
    ctx.counters.events.add();
    if (event.data.u64 == 0) {
      on_accept(server);
      continue;
    }
    auto* connection = reinterpret_cast<EchoConnection*>(event.data.u64);
    pthread_spin_lock(&server->lock);
    ++server->busy;
    pthread_spin_unlock(&server->lock);
    add_workers(server, 1);

    connection->read_once();
    connection->flush();

    pthread_spin_lock(&server->lock);
    --server->busy;
    pthread_spin_unlock(&server->lock);

    if (connection->finished()) {
      delete connection;
      continue;
    }
    epoll_control(server->epoll_fd, EPOLL_CTL_MOD, connection->fd(),
                  EPOLLIN | EPOLLET | EPOLLONESHOT, reinterpret_cast<std::uintptr_t>(connection),
                  ctx.counters);
  }
}

void serve(ServerContext& ctx) {
  Server server;
  server.ctx = &ctx;
  server.epoll_fd = epoll_create_or_throw().release();
  ctx.ready();
  pthread_spin_init(&server.lock, PTHREAD_PROCESS_PRIVATE);
  // Tag 0 marks the listener.
  epoll_control(server.epoll_fd, EPOLL_CTL_ADD, ctx.listener.get(), EPOLLIN | EPOLLET, 0,
                ctx.counters);
  add_workers(&server, kMinWorkers);
  pollfd stop{ctx.shutdown.fd(), POLLIN, 0};
  while (!ctx.shutdown.requested()) ::poll(&stop, 1, -1);
}

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, serve);
}
