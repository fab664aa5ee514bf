#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "server_list.hpp"  // generated: MUXLAB_DEFAULT_SERVERS

namespace muxlab::test {

std::vector<ServerUnderTest> parse_server_list(const std::string& text) {
  std::vector<ServerUnderTest> servers;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    if (entry.empty()) continue;
    ServerUnderTest server;
    std::stringstream fields(entry);
    std::string field;
    std::getline(fields, field, ',');
    const auto eq = field.find('=');
    if (eq == std::string::npos) {
      server.path = field;
      server.name = field.substr(field.find_last_of('/') + 1);
    } else {
      server.name = field.substr(0, eq);
      server.path = field.substr(eq + 1);
    }
    while (std::getline(fields, field, ',')) {
      if (field.rfind("max_clients=", 0) == 0) server.max_clients = std::stoi(field.substr(12));
    }
    // GoogleTest parameter names may hold only letters, digits and '_'.
    for (char& c : server.name) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    servers.push_back(server);
  }
  return servers;
}

std::vector<ServerUnderTest> servers_under_test() {
  if (const char* env = std::getenv("MUXLAB_SERVERS"); env != nullptr && *env != '\0') {
    return parse_server_list(env);
  }
  return parse_server_list(MUXLAB_DEFAULT_SERVERS);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string temp_path(const std::string& stem) {
  const char* dir = std::getenv("TMPDIR");
  std::string pattern = std::string(dir != nullptr ? dir : "/tmp") + "/muxlab-" + stem + "-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) throw std::runtime_error("mkstemp: " + std::string(std::strerror(errno)));
  ::close(fd);
  return pattern;
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

namespace {

ExitStatus decode(int status) {
  ExitStatus s;
  s.exited = true;
  if (WIFEXITED(status)) s.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) s.signal = WTERMSIG(status);
  return s;
}

std::optional<ExitStatus> reap(pid_t pid, bool block) {
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, block ? 0 : WNOHANG);
    if (r == pid) return decode(status);
    if (r < 0 && errno == EINTR) continue;
    return std::nullopt;
  }
}

std::optional<ExitStatus> reap_until(pid_t pid, Clock::time_point deadline) {
  auto pause = 1ms;
  for (;;) {
    if (auto s = reap(pid, false)) return s;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

// fork + exec with stdout and stderr sent to files. Everything the child needs
// is prepared before fork(): after it only async-signal-safe calls are allowed.
pid_t spawn(const std::string& path, const std::vector<std::string>& args,
            const std::string& out_path, const std::string& err_path,
            std::optional<rlim_t> max_open_files) {
  std::vector<std::string> storage{path};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int out = ::open(out_path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  const int err = ::open(err_path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || err < 0 || devnull < 0) throw std::runtime_error("cannot open output files");

  const pid_t pid = ::fork();
  if (pid == 0) {
    // A test killed by its timeout cannot stop its servers: the kernel does.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (max_open_files) {
      rlimit limit{*max_open_files, *max_open_files};
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    // Nothing of ours leaks into the server: descriptors the test (or ctest)
    // left open would count against a small RLIMIT_NOFILE and could even
    // keep the dynamic loader from opening the libraries.
    ::close_range(3, ~0U, 0);
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(err);
  ::close(devnull);
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  return pid;
}

}  // namespace

CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout) {
  const std::string out_path = temp_path("out");
  const std::string err_path = temp_path("err");
  const pid_t pid = spawn(path, args, out_path, err_path, std::nullopt);
  CommandResult result;
  if (auto s = reap_until(pid, Clock::now() + timeout)) {
    result.status = *s;
  } else {
    ::kill(pid, SIGKILL);
    reap(pid, true);
  }
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  return result;
}

ServerProcess::ServerProcess(const Launch& launch, std::chrono::milliseconds timeout)
    : out_path_(temp_path("server-out")), err_path_(temp_path("server-err")) {
  std::vector<std::string> args{"--port", "0"};
  args.insert(args.end(), launch.args.begin(), launch.args.end());
  pid_ = spawn(launch.path, args, out_path_, err_path_, launch.max_open_files);

  const auto deadline = Clock::now() + timeout;
  const std::string marker = "listening on ";
  for (auto pause = 1ms;; pause = std::min(pause * 2, std::chrono::milliseconds(20))) {
    const std::string out = stdout_text();
    if (const auto at = out.find(marker); at != std::string::npos) {
      const auto end = out.find('\n', at);
      if (end != std::string::npos) {
        const std::string address = out.substr(at + marker.size(), end - at - marker.size());
        port_ = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
        return;
      }
    }
    if (!running() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(pause);
  }
  if (!launch.require_ready && !running()) return;
  const std::string why = running() ? "no 'listening on' line in time" : "exited early";
  const std::string err = stderr_text();
  stop(SIGKILL);
  ::unlink(out_path_.c_str());
  ::unlink(err_path_.c_str());
  throw std::runtime_error(launch.path + ": " + why + "; stderr:\n" + err);
}

void flood_signal(pid_t target, int sig, int count) {
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (child == 0) {
    for (int i = 0; i < count; ++i) ::kill(target, sig);
    ::_exit(0);
  }
  reap(child, true);
}

ServerProcess::~ServerProcess() {
  if (running()) stop(SIGKILL, 5s);
  ::unlink(out_path_.c_str());
  // labs/check shows the tail of the last server's stderr when a test fails
  // (a sanitizer report, an exception): it asks for the files to be kept.
  if (std::getenv("MUXLAB_KEEP_SERVER_STDERR") == nullptr) ::unlink(err_path_.c_str());
}

bool ServerProcess::running() {
  if (exit_) return false;
  exit_ = reap(pid_, false);
  return !exit_;
}

std::string ServerProcess::stdout_text() const {
  return read_file(out_path_);
}
std::string ServerProcess::stderr_text() const {
  return read_file(err_path_);
}

ExitStatus ServerProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (running()) ::kill(pid_, sig);
  return wait(timeout);
}

ExitStatus ServerProcess::wait(std::chrono::milliseconds timeout) {
  if (!exit_) exit_ = reap_until(pid_, Clock::now() + timeout);
  if (!exit_) {
    // Still running: report that, but do not leave it behind.
    ::kill(pid_, SIGKILL);
    reap(pid_, true);
    exit_ = ExitStatus{};
  }
  return *exit_;
}

int ServerProcess::open_fd_count() const {
  std::error_code error;
  int count = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid_) + "/fd", error), end;
       !error && it != end; it.increment(error)) {
    ++count;
  }
  return count;
}

double ServerProcess::cpu_seconds() const {
  const std::string stat = read_file("/proc/" + std::to_string(pid_) + "/stat");
  // Fields after the command name, which is in parentheses and may hold spaces.
  std::stringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stol(field);  // utime, stime
  }
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double ServerProcess::runnable_seconds() const {
  std::error_code error;
  long double total_ns = 0;
  const std::string tasks = "/proc/" + std::to_string(pid_) + "/task";
  for (std::filesystem::directory_iterator it(tasks, error), end; !error && it != end;
       it.increment(error)) {
    std::stringstream fields(read_file((it->path() / "schedstat").string()));
    long double on_cpu = 0;
    long double waiting = 0;
    if (fields >> on_cpu >> waiting) total_ns += on_cpu + waiting;
  }
  return static_cast<double>(total_ns / 1e9L);
}

long ServerProcess::rss_kib() const {
  std::stringstream status(read_file("/proc/" + std::to_string(pid_) + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace muxlab::test
