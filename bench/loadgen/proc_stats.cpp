#include "proc_stats.hpp"

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace muxlab::bench {

namespace {

// utime + stime from a stat line; the command name in parentheses may hold spaces.
std::int64_t stat_ticks_ns(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return 0;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  std::int64_t utime = 0;
  std::int64_t stime = 0;
  // After the name: state is field 3; utime and stime are fields 14 and 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoll(field);
    if (index == 15) stime = std::stoll(field);
  }
  return (utime + stime) * (1'000'000'000 / ::sysconf(_SC_CLK_TCK));
}

}  // namespace

std::optional<ProcessSample> sample_process(pid_t pid) {
  namespace fs = std::filesystem;
  const fs::path tasks = fs::path("/proc") / std::to_string(pid) / "task";
  std::error_code error;
  ProcessSample sample;
  // The process's own utime + stime include the threads that have already
  // exited; a sum over the live tasks would lose them, and a thread that ends
  // inside the window would make the server's CPU time go backwards.
  sample.cpu_ns = stat_ticks_ns((fs::path("/proc") / std::to_string(pid) / "stat").string());
  for (fs::directory_iterator it(tasks, error), end; !error && it != end; it.increment(error)) {
    std::ifstream status(it->path() / "status");
    std::string key;
    std::uint64_t value = 0;
    std::string line;
    while (std::getline(status, line)) {
      std::istringstream words(line);
      if (!(words >> key >> value)) continue;
      if (key == "voluntary_ctxt_switches:") sample.voluntary_switches += value;
      if (key == "nonvoluntary_ctxt_switches:") sample.involuntary_switches += value;
    }
    ++sample.threads;
  }
  if (error || sample.threads == 0) return std::nullopt;
  return sample;
}

std::int64_t self_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace muxlab::bench
