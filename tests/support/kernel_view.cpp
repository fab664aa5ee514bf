#include "kernel_view.hpp"

#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client.hpp"
#include "trace_text.hpp"

namespace muxlab::test {

bool wait_until(const std::function<bool()>& condition, Clock::time_point deadline) {
  for (auto pause = 1ms;; pause = std::min(pause * 2, std::chrono::milliseconds(10))) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
  }
}

bool ThreadState::asleep_in_epoll_wait() const {
  return state == 'S' && wchan.find("epoll") != std::string::npos;
}

bool ThreadState::asleep_elsewhere() const {
  return state == 'S' && !wchan.empty() && wchan != "0" && wchan.find("epoll") == std::string::npos;
}

bool ThreadState::asleep_in_ring_wait() const {
  return state == 'S' && wchan.find("io_cqring_wait") != std::string::npos;
}

namespace {

// The state and wait channel of /proc/PID or /proc/PID/task/TID (`dir` ends in '/').
ThreadState state_in(const std::string& dir) {
  ThreadState result;
  // The state follows the command name, which is in parentheses and may hold spaces.
  const std::string stat = read_file(dir + "stat");
  if (const auto close = stat.rfind(')'); close != std::string::npos && close + 2 < stat.size()) {
    result.state = stat[close + 2];
  }
  std::getline(std::ifstream(dir + "wchan"), result.wchan);
  return result;
}

// Everything but the name, which tasks_of() has read already to filter on it.
void read_task(const std::string& dir, TaskView& task) {
  task.state = state_in(dir);
  std::istringstream(read_file(dir + "syscall")) >> task.syscall;  // "running": stays -1
  std::istringstream status(read_file(dir + "status"));
  for (std::string line; std::getline(status, line);) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "voluntary_ctxt_switches:") fields >> task.voluntary_switches;
    if (key == "nonvoluntary_ctxt_switches:") fields >> task.involuntary_switches;
  }
}

}  // namespace

ThreadState main_thread_state(pid_t pid) {
  return state_in("/proc/" + std::to_string(pid) + "/");
}

bool wait_until_idle(pid_t pid, Clock::time_point deadline) {
  return wait_until([pid] { return main_thread_state(pid).asleep_in_epoll_wait(); }, deadline);
}

bool wait_until_ring_idle(pid_t pid, Clock::time_point deadline) {
  return wait_until([pid] { return main_thread_state(pid).asleep_in_ring_wait(); }, deadline);
}

std::string io_uring_unavailable() {
  io_uring_params params{};
  const long fd = ::syscall(__NR_io_uring_setup, 1, &params);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return "";
  }
  return std::string("io_uring is not available here: io_uring_setup: ") + std::strerror(errno);
}

std::vector<TaskView> tasks_of(pid_t pid, std::string_view prefix) {
  std::vector<TaskView> tasks;
  const std::string root = "/proc/" + std::to_string(pid) + "/task/";
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(root, ignored)) {
    TaskView task;
    task.tid = static_cast<pid_t>(std::stol(entry.path().filename().string()));
    const std::string dir = entry.path().string() + "/";
    std::getline(std::ifstream(dir + "comm"), task.name);
    if (task.name.compare(0, prefix.size(), prefix) != 0) continue;
    read_task(dir, task);
    tasks.push_back(std::move(task));
  }
  std::sort(tasks.begin(), tasks.end(),
            [](const TaskView& a, const TaskView& b) { return a.tid < b.tid; });
  return tasks;
}

TaskView task_view(pid_t pid, pid_t tid) {
  TaskView task;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/";
  if (!std::getline(std::ifstream(dir + "comm"), task.name)) return task;
  task.tid = tid;
  read_task(dir, task);
  return task;
}

int thread_count(pid_t pid) {
  return static_cast<int>(tasks_of(pid).size());
}

int threads_in_epoll_wait(pid_t pid) {
  const auto tasks = tasks_of(pid);
  return static_cast<int>(std::count_if(tasks.begin(), tasks.end(), [](const TaskView& t) {
    return t.state.asleep_in_epoll_wait();
  }));
}

bool every_thread_stopped(pid_t pid) {
  const auto tasks = tasks_of(pid);
  return std::all_of(tasks.begin(), tasks.end(),
                     [](const TaskView& t) { return t.state.state == 'T'; });
}

bool any_thread_runnable(pid_t pid) {
  const auto tasks = tasks_of(pid);
  return std::any_of(tasks.begin(), tasks.end(),
                     [](const TaskView& t) { return t.state.state == 'R'; });
}

long context_switches(pid_t pid) {
  long total = 0;
  for (const TaskView& t : tasks_of(pid)) {
    total += static_cast<long>(t.voluntary_switches + t.involuntary_switches);
  }
  return total;
}

bool freeze(pid_t pid, Clock::time_point deadline) {
  if (::kill(pid, SIGSTOP) != 0) return false;
  return wait_until([pid] { return main_thread_state(pid).state == 'T'; }, deadline);
}

void thaw(pid_t pid) {
  ::kill(pid, SIGCONT);
}

namespace {

constexpr int kListen = 0x0A;  // TCP_LISTEN in the kernel's numbering

// One row of /proc/net/tcp{,6}: the ports (hex after ':'), the state and the receive queue.
struct Row {
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  int state = 0;
  std::size_t rx_queue = 0;
};

std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
}

std::optional<Row> find_row(const std::function<bool(const Row&)>& wanted) {
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream table(path);
    std::string line;
    std::getline(table, line);  // the header
    while (std::getline(table, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues;
      if (!(fields >> slot >> local >> remote >> state >> queues)) continue;
      Row row;
      row.local_port = port_of(local);
      row.remote_port = port_of(remote);
      row.state = std::stoi(state, nullptr, 16);
      row.rx_queue = std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
      if (wanted(row)) return row;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::size_t> listener_backlog(std::uint16_t port) {
  const auto row =
      find_row([port](const Row& r) { return r.state == kListen && r.local_port == port; });
  if (!row) return std::nullopt;
  return row->rx_queue;
}

std::size_t accept_queue_total(std::uint16_t port) {
  std::size_t total = 0;
  find_row([&](const Row& r) {
    if (r.state == kListen && r.local_port == port) total += r.rx_queue;
    return false;  // visit every row
  });
  return total;
}

int threads_woken_by_a_connection(const ServerProcess& server, Fd* client,
                                  Clock::time_point deadline) {
  const pid_t pid = server.pid();
  auto all_asleep = [](const std::vector<TaskView>& tasks) {
    return !tasks.empty() && std::all_of(tasks.begin(), tasks.end(),
                                         [](const TaskView& t) { return t.state.state == 'S'; });
  };
  std::vector<TaskView> before;
  if (!wait_until([&] { return all_asleep(before = tasks_of(pid)); }, deadline)) return -1;
  *client = connect_to(server.port());
  // Every wake-up a new connection causes happens when the kernel queues it,
  // before anyone can accept it; so once the queue is empty again and every
  // thread sleeps, all the woken threads have run and gone back to sleep.
  int woken = -1;
  const bool settled = wait_until(
      [&] {
        pollfd p{client->get(), POLLOUT, 0};
        if (::poll(&p, 1, 0) != 1 || accept_queue_total(server.port()) != 0) return false;
        const auto after = tasks_of(pid);
        if (!all_asleep(after) || after.size() != before.size()) return false;
        // Only the loops count: threads seen asleep in epoll_wait. The main
        // thread (in join) and a sanitizer's background thread never are, and
        // wake for reasons of their own.
        woken = 0;
        for (std::size_t i = 0; i < after.size(); ++i) {
          const bool loop =
              before[i].state.asleep_in_epoll_wait() || after[i].state.asleep_in_epoll_wait();
          if (loop && after[i].voluntary_switches != before[i].voluntary_switches) {
            ++woken;
          }
        }
        return woken > 0;  // 0: the connection has not reached the server yet
      },
      deadline);
  return settled ? woken : -1;
}

std::optional<std::size_t> unread_by_server(std::uint16_t server_port, int client_fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(client_fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return std::nullopt;
  }
  const std::uint16_t client_port =
      address.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port)
          : ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
  const auto row = find_row([&](const Row& r) {
    return r.state != kListen && r.local_port == server_port && r.remote_port == client_port;
  });
  if (!row) return std::nullopt;
  return row->rx_queue;
}

std::size_t send_until_server_stops_reading(pid_t server, std::uint16_t port, int fd,
                                            std::string_view data, Clock::time_point deadline) {
  std::size_t sent = 0;
  while (sent < data.size() && Clock::now() < deadline) {
    const std::size_t n = std::min<std::size_t>(64 * 1024, data.size() - sent);
    const ssize_t w = ::send(fd, data.data() + sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return 0;
    // Unread bytes first, then the sleep, then the same bytes again: had the
    // server wanted input, their arrival would have woken it.
    const auto unread = unread_by_server(port, fd);
    if (unread > 0u && main_thread_state(server).asleep_in_epoll_wait() &&
        unread_by_server(port, fd) == unread) {
      return sent;
    }
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, 5);
  }
  return 0;
}

bool arrive_at_once(const ServerProcess& server, int fd, std::string_view data,
                    Clock::time_point deadline) {
  if (!freeze(server.pid(), deadline)) return false;
  const bool queued =
      send_all(fd, data, deadline) &&
      wait_until([&] { return unread_by_server(server.port(), fd) == data.size(); }, deadline);
  thaw(server.pid());
  return queued;
}

bool echo_through_backpressure(const ServerProcess& server, Clock::time_point deadline) {
  Fd client = connect_to(server.port());
  const std::string payload = pattern(16 << 20, 6);
  const std::size_t sent =
      send_until_server_stops_reading(server.pid(), server.port(), client.get(), payload, deadline);
  return sent > 0 && receive(client.get(), sent, deadline) == payload.substr(0, sent);
}

std::vector<Fd> listener_then_data(const ServerProcess& server, int newcomers, int old_fd,
                                   std::string_view data, Clock::time_point deadline) {
  std::vector<Fd> clients;
  if (!freeze(server.pid(), deadline)) return clients;
  for (int i = 0; i < newcomers; ++i) clients.push_back(connect_to(server.port()));
  const auto waiting = static_cast<std::size_t>(newcomers);
  const bool queued =
      wait_until([&] { return listener_backlog(server.port()) == waiting; }, deadline) &&
      send_all(old_fd, data, deadline) &&
      wait_until([&] { return unread_by_server(server.port(), old_fd) == data.size(); }, deadline);
  thaw(server.pid());
  if (!queued) clients.clear();
  return clients;
}

TracedSession run_traced_session(const std::string& server_path,
                                 const std::vector<std::string>& extra_args) {
  const std::string stats = temp_path("stats");
  TracedSession session;
  {
    std::vector<std::string> args{"--trace", "--stats-json", stats};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    ServerProcess server({server_path, args, std::nullopt});
    Fd client = connect_to(server.port());
    const std::string message = pattern(40 * 1024, 4);
    session.ok = round_trip(client.get(), "hi") == "hi" &&
                 wait_until_idle(server.pid(), Clock::now() + 5s) &&
                 arrive_at_once(server, client.get(), message, Clock::now() + 5s) &&
                 receive(client.get(), message.size(), Clock::now() + 10s) == message;
    session.ok = server.stop(SIGTERM).code == 0 && session.ok;
    session.trace = server.stderr_text();
  }
  session.stats = read_json(stats);
  ::unlink(stats.c_str());
  if (const auto fds = accepted_fds(session.trace); !fds.empty()) session.server_fd = fds[0];
  return session;
}

std::optional<std::chrono::milliseconds> stop_in_a_busy_batch(ServerProcess& server, int clients,
                                                              std::size_t bytes,
                                                              std::chrono::milliseconds limit) {
  std::vector<Fd> fds;
  for (int i = 0; i < clients; ++i) fds.push_back(connect_to(server.port()));
  const auto deadline = Clock::now() + 10s;
  if (!wait_until_idle(server.pid(), deadline) || !freeze(server.pid(), deadline)) return {};
  const std::string request = pattern(bytes, 3);
  bool queued = true;
  for (const Fd& fd : fds) {
    queued =
        queued && send_all(fd.get(), request, deadline) &&
        wait_until([&] { return unread_by_server(server.port(), fd.get()) == bytes; }, deadline);
  }
  thaw(server.pid());
  if (!queued) return {};
  std::vector<pollfd> watched;
  for (const Fd& fd : fds) watched.push_back({fd.get(), POLLIN, 0});
  const bool busy =
      wait_until([&] { return ::poll(watched.data(), watched.size(), 0) > 0; }, deadline);
  if (!busy) return {};
  const auto signalled = Clock::now();
  const ExitStatus status = server.stop(SIGTERM, limit);
  if (!status.exited || status.code != 0) return {};
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - signalled);
}

}  // namespace muxlab::test
