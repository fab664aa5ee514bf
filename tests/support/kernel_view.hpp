// What the kernel can tell a test about a server process without asking the
// server: where its main thread sleeps, and what waits unread in its sockets.
// With these, "the server is stuck", "both events are queued" or "the burst is
// in the backlog" become conditions a test waits for with a deadline, instead
// of sleeping and hoping.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd.hpp"
#include "process.hpp"

namespace muxlab::test {

// Polls `condition` until it holds (true) or the deadline passes (false).
bool wait_until(const std::function<bool()>& condition, Clock::time_point deadline);

// The main thread's scheduler state (R, S, D, T...) and the kernel function it
// sleeps in, e.g. "do_epoll_wait" or, blocked in a socket read, "wait_woken".
struct ThreadState {
  char state = '?';
  std::string wchan;
  bool asleep_in_epoll_wait() const;
  bool asleep_elsewhere() const;  // sleeping, but not in epoll_wait
  // Sleeping in io_uring_enter(), waiting for a completion.
  bool asleep_in_ring_wait() const;
};
ThreadState main_thread_state(pid_t pid);
// True once the server sleeps in epoll_wait: it has handled everything so far.
bool wait_until_idle(pid_t pid, Clock::time_point deadline);
// The same for a completion-based server: it sleeps in io_uring_enter().
bool wait_until_ring_idle(pid_t pid, Clock::time_point deadline);

// Empty when this process may create an io_uring instance; otherwise why not
// (ENOSYS: no io_uring in the kernel; EPERM: io_uring_disabled or seccomp).
// Tests that need io_uring skip with this text.
std::string io_uring_unavailable();

// Every thread of a process, from /proc/PID/task/TID: its name (comm), where it
// sleeps, the system call it is in, and how often it gave up the CPU to wait.
// A thread woken for nothing still costs one voluntary switch: that is how a
// test counts the threads one event woke, whether user space saw it or not.
struct TaskView {
  pid_t tid = 0;
  std::string name;
  ThreadState state;
  long syscall = -1;  // the number it is blocked in; -1 when running
  std::uint64_t voluntary_switches = 0;
  std::uint64_t involuntary_switches = 0;
};
// The threads whose name starts with `prefix` (all of them for ""), by tid.
std::vector<TaskView> tasks_of(pid_t pid, std::string_view prefix = "");
// One thread; tid 0 when it is gone.
TaskView task_view(pid_t pid, pid_t tid);

// Questions about all the threads of a process at once.
int thread_count(pid_t pid);
int threads_in_epoll_wait(pid_t pid);  // a pool's idle workers
// SIGSTOP reaches every thread, but not at the same instant: freeze() waits for
// the main thread only, this for all of them.
bool every_thread_stopped(pid_t pid);
bool any_thread_runnable(pid_t pid);
long context_switches(pid_t pid);  // voluntary and involuntary, all threads

// Connections waiting to be accepted on `port`, summed over every listening
// socket bound to it (with SO_REUSEPORT there is one per loop).
std::size_t accept_queue_total(std::uint16_t port);

// The thundering herd, counted: connects one client (which sends nothing) to
// a server whose threads all sleep, waits until it has been accepted and every
// thread sleeps again, and returns how many threads were woken on the way
// (their voluntary switch count moved). -1 if that did not settle by the
// deadline. The connection is left open in *client.
int threads_woken_by_a_connection(const ServerProcess& server, Fd* client,
                                  Clock::time_point deadline);

// SIGSTOP, then wait until the process is stopped. While it is frozen, what the
// test does piles up in the kernel (the accept queue, socket buffers, epoll's
// ready list, in the order it happened) and the next epoll_wait after thaw()
// collects all of it in one batch. A stopped epoll_wait fails with EINTR on
// SIGCONT, which every server retries.
bool freeze(pid_t pid, Clock::time_point deadline);
void thaw(pid_t pid);

// From /proc/net/tcp and tcp6. For the listening socket on `port`: how many
// connections wait in its accept queue.
std::optional<std::size_t> listener_backlog(std::uint16_t port);
// For the server's end of the connection `client_fd` has to `server_port`:
// how many bytes have arrived that the server has not read.
std::optional<std::size_t> unread_by_server(std::uint16_t server_port, int client_fd);

// Sends `data` from its start, without reading the echo, until the server has
// stopped reading this connection: it sleeps in epoll_wait although bytes wait
// unread in its socket, which an echo server does only once its output buffer
// is full. Returns the bytes sent, or 0 if that did not happen by the deadline
// or before `data` ran out.
std::size_t send_until_server_stops_reading(pid_t server, std::uint16_t port, int fd,
                                            std::string_view data, Clock::time_point deadline);

// Freezes the server, sends `data` on `fd`, waits until all of it sits unread
// in the server's socket, and thaws the server: its next epoll_wait finds the
// whole message there at once, however the kernel cut it into segments.
bool arrive_at_once(const ServerProcess& server, int fd, std::string_view data,
                    Clock::time_point deadline);

// A client that sends without reading until the server stops reading it (see
// above), then reads the echo of everything it sent. True when that echo came
// back complete and exact: the server went through backpressure and out of it.
bool echo_through_backpressure(const ServerProcess& server, Clock::time_point deadline);

// A close inside a batch, set up: while the server is frozen, `newcomers` clients
// connect (the kernel completes their handshakes alone), and only then does
// the open connection `old_fd` send `data`. The next epoll_wait batch is
// therefore [listener, old connection], in that order. Returns the newcomers,
// or none if the queues did not fill by the deadline.
std::vector<Fd> listener_then_data(const ServerProcess& server, int newcomers, int old_fd,
                                   std::string_view data, Clock::time_point deadline);

// The session the epoll servers' tests (and READMEs) compare: "hi" and its
// echo, then 40 KiB that reach the server at once (arrive_at_once), run with
// --trace and --stats-json and ended with SIGTERM.
struct TracedSession {
  bool ok = false;  // both echoes came back exact and the server exited 0
  std::string trace;
  nlohmann::json stats;
  int server_fd = -1;  // the client's descriptor number inside the server
};
TracedSession run_traced_session(const std::string& server_path,
                                 const std::vector<std::string>& extra_args = {});

// SIGTERM to a server in the middle of a long batch: while it is frozen,
// `clients` connections each send `bytes`; it is thawed, and once it has
// echoed something (it is now working through that batch) it is sent SIGTERM.
// Returns how long it took to exit, or nothing if it did not exit 0 within
// `limit` (it is killed then) or the set-up failed.
std::optional<std::chrono::milliseconds> stop_in_a_busy_batch(ServerProcess& server, int clients,
                                                              std::size_t bytes,
                                                              std::chrono::milliseconds limit);

}  // namespace muxlab::test
