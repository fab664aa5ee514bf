// Test-side helpers: start a server executable, wait for its "listening on"
// line, signal it, and read what /proc says about it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace muxlab::test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A server the conformance suite runs against.
struct ServerUnderTest {
  std::string name;
  std::string path;
  int max_clients = 1000;
};

// From the MUXLAB_SERVERS environment variable when set (how a student's
// server is graded), else the servers this build registered:
//   name=/path/to/exe[,max_clients=N];name2=...
std::vector<ServerUnderTest> servers_under_test();
std::vector<ServerUnderTest> parse_server_list(const std::string& text);

struct ExitStatus {
  bool exited = false;  // false: still running when the deadline passed
  int code = -1;        // exit code when it exited normally
  int signal = 0;       // terminating signal otherwise
};

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

// Runs a command to completion (killing it after `timeout`).
CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = 10s);

class ServerProcess {
 public:
  struct Launch {
    std::string path;
    std::vector<std::string> args;
    std::optional<rlim_t> max_open_files;  // RLIMIT_NOFILE for the child
    // false: a server that exits before "listening on" is not an error; the
    // constructor returns with port() == 0 and the exit status in wait().
    bool require_ready = true;
  };

  // Starts the server with --port 0 (plus `args`) and waits up to `timeout` for
  // "listening on HOST:PORT". Throws std::runtime_error with its stderr if the
  // line never comes.
  explicit ServerProcess(const Launch& launch, std::chrono::milliseconds timeout = 15s);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  std::uint16_t port() const { return port_; }  // 0: it never announced readiness
  pid_t pid() const { return pid_; }
  bool running();
  std::string stdout_text() const;
  std::string stderr_text() const;

  // Sends `sig` and waits for the process to end.
  ExitStatus stop(int sig = 15, std::chrono::milliseconds timeout = 10s);
  ExitStatus wait(std::chrono::milliseconds timeout);

  // From /proc/PID.
  int open_fd_count() const;
  double cpu_seconds() const;  // user + system
  // Time its threads spent on a CPU or waiting in a run queue for one (from
  // /proc/PID/task/*/schedstat). A spinning thread adds about one second per
  // second of wall time however loaded the machine is; a sleeping one almost
  // nothing. CPU time alone cannot tell a spin apart on a busy machine.
  double runnable_seconds() const;
  long rss_kib() const;

 private:
  pid_t pid_ = -1;
  std::optional<ExitStatus> exit_;
  std::uint16_t port_ = 0;
  std::string out_path_;
  std::string err_path_;
};

// Sends `sig` to `target` `count` times as fast as a child process can, and
// waits for that child. The target must be our own unreaped child: until we
// reap it, its PID cannot be reused, so no other process is ever hit.
void flood_signal(pid_t target, int sig, int count);

std::string read_file(const std::string& path);
std::string temp_path(const std::string& stem);
nlohmann::json read_json(const std::string& path);

}  // namespace muxlab::test
