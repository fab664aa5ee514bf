// What the kernel says about a process: CPU time and context switches of all
// its threads, read from /proc. The generator samples the server at the edges
// of the measured window, so warm-up and set-up are not charged to it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace muxlab::bench {

struct ProcessSample {
  std::int64_t cpu_ns = 0;  // user + system of the whole process, exited threads included
  std::uint64_t voluntary_switches = 0;
  std::uint64_t involuntary_switches = 0;
  unsigned threads = 0;
};

// CPU time from /proc/PID/stat (clock ticks: the process total, which keeps
// the time of threads that exited); the switch counts summed over
// /proc/PID/task/*/status (live threads only). Empty when the process is gone.
std::optional<ProcessSample> sample_process(pid_t pid);

// This process's CPU time (all threads), user + system.
std::int64_t self_cpu_ns();

}  // namespace muxlab::bench
