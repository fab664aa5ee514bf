// Shared set-up for the kernel-rule tests: connected socket pairs over loopback
// TCP or AF_UNIX, small epoll and readiness helpers, and a group of threads
// that each block in epoll_wait() so wake-ups can be counted.
//
// Every wait in here has a deadline. "Nothing happened" is always asserted over
// a short quiet window (kQuiet) after every byte the test sent is known to have
// arrived, so an event still in flight cannot make a negative check pass.
#pragma once

#include <sys/epoll.h>
#include <sys/types.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fd.hpp"

namespace muxlab::rules {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Long enough for anything the kernel does on loopback; only reached on failure.
inline constexpr auto kDeadline = 5s;
// How long "nothing more is reported" is watched for.
inline constexpr auto kQuiet = 50ms;

enum class Transport { kTcp, kUnix };

// How GoogleTest prints a parameter in failure messages.
void PrintTo(Transport transport, std::ostream* out);

// For INSTANTIATE_TEST_SUITE_P: names the variants ".../tcp" and ".../unix".
std::string transport_name(const ::testing::TestParamInfo<Transport>& info);

// Both ends of one connected stream, both non-blocking. Over TCP, `a` is the
// connecting side and `b` the accepted one (TCP_NODELAY on both).
struct Pair {
  Fd a;
  Fd b;
};
Pair connected_pair(Transport transport);

// A socket of the transport's family that was never connected.
Fd unconnected_socket(Transport transport);

// A non-blocking loopback TCP listener on an ephemeral port.
Fd tcp_listener(std::uint16_t* port);
// Starts a non-blocking connect to 127.0.0.1:port; returns the socket and
// stores connect()'s errno (0, or EINPROGRESS normally) in *error.
Fd tcp_connect_nonblocking(std::uint16_t port, int* error);
// A loopback port on which nothing listens (bound, never listening, so no
// other process can take it while the test runs).
Fd tcp_port_without_listener(std::uint16_t* port);

// send() all of `data` on a socket whose buffer has room; false on a short send.
bool send_now(int fd, std::string_view data, int flags = 0);
// Reads what is there now (at most `limit` bytes); empty on EAGAIN or EOF.
std::string read_now(int fd, std::size_t limit = 65536);
// Reads until `size` bytes came or the deadline passed.
std::string read_exactly(int fd, std::size_t size);
// Bytes waiting in the receive queue (FIONREAD).
int bytes_queued(int fd);
// Waits until at least `size` bytes are queued for reading on fd.
bool wait_for_bytes(int fd, int size);
// Waits until poll() reports every bit of `want` on fd; returns the last
// revents seen (so the caller can check which other bits came with them).
short wait_for_poll(int fd, short want);

// Sends on `fd` until its send buffer is full: send() says EAGAIN and poll()
// has not reported it writable for a quiet window (over TCP, acknowledgements
// keep freeing space for a moment after the first EAGAIN). Returns the bytes
// sent, which the peer can read back to drain it.
std::size_t fill_send_buffer(int fd);

// epoll in one line each.
Fd make_epoll();
// epoll_ctl(op) with data.u64 = tag; returns 0 or the errno value.
int ctl(int epoll_fd, int op, int fd, std::uint32_t events, std::uint64_t tag = 0);
// One epoll_wait() of up to `max` events (EINTR retried within the timeout).
std::vector<epoll_event> wait_events(int epoll_fd, std::chrono::milliseconds timeout, int max = 16);
// Waits up to kDeadline for the first report, then returns that batch.
std::vector<epoll_event> wait_reported(int epoll_fd, int max = 16);

// "IN|OUT|HUP" for assertion messages.
std::string event_names(std::uint32_t events);

// Threads that each call epoll_wait() once, with room for one event, on their
// own epoll fd (several threads may share one). Used to count how many threads
// one event wakes.
//
// Determinism: block_all() returns only once every thread is provably asleep
// inside epoll_wait (its /proc task state is 'S', its current system call is
// epoll_wait/epoll_pwait, and its wait channel, when the kernel shows it, is in
// the epoll code), so the event the test triggers afterwards finds all of them
// on the wait queue. settle(expected) then waits (up to kDeadline) until
// `expected` threads have returned and keeps watching for a quiet window in
// case more do; the count, taken at the end of that window, is what the kernel
// woke for that one event. Only then are the threads still asleep released
// with a signal. (They must not be counted after that: a level-triggered item
// still on the ready list would be handed to a thread woken by the signal.)
class WaiterGroup {
 public:
  explicit WaiterGroup(std::vector<int> epoll_fds);
  ~WaiterGroup();
  WaiterGroup(const WaiterGroup&) = delete;
  WaiterGroup& operator=(const WaiterGroup&) = delete;

  // True once every thread is blocked in epoll_wait (false at the deadline).
  bool block_all();
  // Number of threads that returned with an event, counted as described above.
  int settle(int expected, std::chrono::milliseconds quiet = 200ms);
  // True if no thread returned during `window` and all still sleep in
  // epoll_wait at its end: the negative form of settle().
  bool all_still_asleep_after(std::chrono::milliseconds window);
  // The event thread i returned (valid when it returned one).
  epoll_event event(std::size_t i) const { return waiters_[i].event; }
  bool woke(std::size_t i) const { return waiters_[i].result.load() > 0; }

 private:
  struct Waiter {
    std::thread thread;
    std::atomic<pid_t> tid{0};
    std::atomic<int> result{kPending};
    epoll_event event{};
  };
  static constexpr int kPending = -1000;

  void release();

  std::vector<int> epoll_fds_;
  std::vector<Waiter> waiters_;
};

// True when thread `tid` of this process is asleep ('S') inside one of the
// system calls `numbers` and, when the kernel shows a wait channel, the
// channel's name contains one of `channels`.
bool blocked_in(pid_t tid, std::initializer_list<long> numbers,
                std::initializer_list<std::string_view> channels);
bool blocked_in_epoll_wait(pid_t tid);
bool blocked_in_select_or_poll(pid_t tid);

}  // namespace muxlab::rules
