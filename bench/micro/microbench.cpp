// muxlab_microbench: what one call of each multiplexer costs, against the
// number of descriptors it watches, with exactly one of them ready.
//
// select() and poll() walk every descriptor they are given, on every call;
// epoll_wait() only looks at the ready list that the kernel's callbacks filled.
// epoll_ctl(MOD) is the price of EPOLLONESHOT: the pool pays it once per request
// to re-arm a connection. io_uring's round is one io_uring_enter() that
// submits one request and reaps its completion, however many other requests
// are pending in the ring.
//
// The descriptors are eventfds: one descriptor each, and a poll method that
// does almost nothing, so what is measured is the multiplexer itself. A TCP
// socket's poll method costs more, so servers pay somewhat more per descriptor.
//
//   muxlab_microbench [--muxlab_min_time=SECONDS] [Google Benchmark flags...]
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fd.hpp"

namespace {

using muxlab::Fd;

// `count` eventfds; the last one holds a value, so it stays readable
// (level-triggered) for as long as the benchmark runs.
struct Watched {
  std::vector<Fd> fds;
  bool ok = true;

  explicit Watched(std::int64_t count) {
    for (std::int64_t i = 0; i < count; ++i) {
      Fd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      if (!fd) {
        ok = false;
        return;
      }
      fds.push_back(std::move(fd));
    }
    const std::uint64_t one = 1;
    ok = ::write(fds.back().get(), &one, sizeof one) == sizeof one;
  }
  int max_fd() const { return fds.back().get(); }
};

void BM_select(benchmark::State& state) {
  Watched watched(state.range(0));
  if (!watched.ok || watched.max_fd() >= FD_SETSIZE) {
    state.SkipWithError("cannot make that many descriptors below FD_SETSIZE");
    return;
  }
  fd_set wanted;
  FD_ZERO(&wanted);
  for (const Fd& fd : watched.fds) FD_SET(fd.get(), &wanted);
  for (auto _ : state) {
    // select() overwrites its sets with the answer, so every call starts from
    // a copy, exactly as a server must rebuild or copy its sets.
    fd_set ready = wanted;
    timeval zero{};
    const int n = ::select(watched.max_fd() + 1, &ready, nullptr, nullptr, &zero);
    if (n != 1) state.SkipWithError("select did not report exactly one ready descriptor");
    benchmark::DoNotOptimize(ready);
  }
  state.counters["fds"] = static_cast<double>(state.range(0));
}

void BM_poll(benchmark::State& state) {
  Watched watched(state.range(0));
  if (!watched.ok) {
    state.SkipWithError("cannot make that many descriptors (RLIMIT_NOFILE)");
    return;
  }
  std::vector<pollfd> slots;
  for (const Fd& fd : watched.fds) slots.push_back(pollfd{fd.get(), POLLIN, 0});
  for (auto _ : state) {
    const int n = ::poll(slots.data(), slots.size(), 0);
    if (n != 1) state.SkipWithError("poll did not report exactly one ready descriptor");
    benchmark::DoNotOptimize(slots.data());
  }
  state.counters["fds"] = static_cast<double>(state.range(0));
}

// Every descriptor registered level-triggered; the ready one is reported on every call.
struct EpollSet {
  Watched watched;
  Fd epoll{::epoll_create1(EPOLL_CLOEXEC)};
  bool ok;

  EpollSet(std::int64_t count, std::uint32_t events) : watched(count), ok(watched.ok && epoll) {
    for (const Fd& fd : watched.fds) {
      if (!ok) return;
      epoll_event ev{};
      ev.events = events;
      ev.data.fd = fd.get();
      ok = ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd.get(), &ev) == 0;
    }
  }
};

// Runs `body` on a set of state.range(0) descriptors registered with `events`,
// or skips the benchmark when they cannot be made.
template <class Body>
void with_epoll_set(benchmark::State& state, std::uint32_t events, Body body) {
  EpollSet set(state.range(0), events);
  if (!set.ok) {
    state.SkipWithError("cannot make that many descriptors (RLIMIT_NOFILE)");
    return;
  }
  body(set);
  state.counters["fds"] = static_cast<double>(state.range(0));
}

void BM_epoll_wait(benchmark::State& state) {
  with_epoll_set(state, EPOLLIN, [&](EpollSet& set) {
    epoll_event events[64];
    for (auto _ : state) {
      const int n = ::epoll_wait(set.epoll.get(), events, 64, 0);
      if (n != 1) state.SkipWithError("epoll_wait did not report exactly one ready descriptor");
      benchmark::DoNotOptimize(events);
    }
  });
}

// The ONESHOT re-arm alone: one epoll_ctl(MOD) on a descriptor in a set of n.
void BM_epoll_ctl_mod(benchmark::State& state) {
  with_epoll_set(state, EPOLLIN | EPOLLONESHOT, [&](EpollSet& set) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.fd = set.watched.max_fd();
    for (auto _ : state) {
      if (::epoll_ctl(set.epoll.get(), EPOLL_CTL_MOD, ev.data.fd, &ev) != 0)
        state.SkipWithError("epoll_ctl(MOD) failed");
    }
  });
}

// The whole ONESHOT cycle as the pool runs it: wait, get the one ready
// descriptor (now disarmed), re-arm it.
void BM_epoll_oneshot_cycle(benchmark::State& state) {
  with_epoll_set(state, EPOLLIN | EPOLLONESHOT, [&](EpollSet& set) {
    epoll_event events[64];
    for (auto _ : state) {
      if (::epoll_wait(set.epoll.get(), events, 64, 0) != 1) {
        state.SkipWithError("epoll_wait did not report exactly one ready descriptor");
        break;
      }
      events[0].events = EPOLLIN | EPOLLONESHOT;
      ::epoll_ctl(set.epoll.get(), EPOLL_CTL_MOD, events[0].data.fd, &events[0]);
    }
  });
}

// One submit + reap round of io_uring, the unit of io_uring_server's loop:
// a NOP submitted and its completion waited for in the same io_uring_enter(),
// while n-1 polls on quiet eventfds stay pending in the ring (as idle
// connections' receives do in the server): they cost nothing per round.
void BM_io_uring_submit_reap(benchmark::State& state) {
  Watched watched(state.range(0));
  io_uring ring{};
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int error = io_uring_queue_init_params(256, &ring, &params);
  if (error == -EINVAL) {
    params = {};
    error = io_uring_queue_init_params(256, &ring, &params);
  }
  if (!watched.ok || error < 0) {
    state.SkipWithError("cannot make the descriptors or the ring (io_uring unavailable?)");
    if (error >= 0) io_uring_queue_exit(&ring);
    return;
  }
  // The last eventfd is readable; the others are quiet and get a pending poll.
  for (std::size_t i = 0; i + 1 < watched.fds.size(); ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == nullptr) {
      io_uring_submit(&ring);
      sqe = io_uring_get_sqe(&ring);
    }
    io_uring_prep_poll_add(sqe, watched.fds[i].get(), POLLIN);
    sqe->user_data = 1;
  }
  io_uring_submit(&ring);
  for (auto _ : state) {
    io_uring_sqe* nop = io_uring_get_sqe(&ring);
    io_uring_prep_nop(nop);
    nop->user_data = 0;
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_peek_cqe(&ring, &cqe) != 0) {
      state.SkipWithError("io_uring_submit_and_wait failed");
      break;
    }
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  state.counters["fds"] = static_cast<double>(state.range(0));
}

void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  raise_descriptor_limit();
  // Our own flag, so the runner can shorten the suite the same way whatever
  // Google Benchmark version (their --benchmark_min_time changed its syntax).
  double min_time = 0.2;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    constexpr std::string_view kFlag = "--muxlab_min_time=";
    const std::string_view arg = argv[i];
    if (arg.starts_with(kFlag)) {
      min_time = std::strtod(std::string(arg.substr(kFlag.size())).c_str(), nullptr);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_count = static_cast<int>(rest.size());

  // select() cannot watch a descriptor numbered FD_SETSIZE (1024) or above.
  const std::vector<std::int64_t> select_sizes = {1, 4, 16, 64, 256, 1000};
  const std::vector<std::int64_t> sizes = {1, 4, 16, 64, 256, 1000, 4096, 10000, 16384};
  auto add = [&](const char* name, void (*fn)(benchmark::State&),
                 const std::vector<std::int64_t>& args) {
    auto* b = benchmark::RegisterBenchmark(name, fn);
    for (const auto n : args) b->Arg(n);
    b->MinTime(min_time)->Unit(benchmark::kNanosecond);
  };
  add("select", BM_select, select_sizes);
  add("poll", BM_poll, sizes);
  add("epoll_wait", BM_epoll_wait, sizes);
  add("epoll_ctl_mod", BM_epoll_ctl_mod, sizes);
  add("epoll_oneshot_cycle", BM_epoll_oneshot_cycle, sizes);
  add("io_uring_submit_reap", BM_io_uring_submit_reap, sizes);

  benchmark::Initialize(&rest_count, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_count, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
