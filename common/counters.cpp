#include "counters.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

namespace muxlab {

void Counter::raise_to(std::uint64_t candidate) {
  std::uint64_t seen = value_.load(std::memory_order_relaxed);
  while (seen < candidate &&
         !value_.compare_exchange_weak(seen, candidate, std::memory_order_relaxed)) {
  }
}

void Counters::connection_opened() {
  connections_total.add();
  connections_now.add();
  connections_peak.raise_to(connections_now.get());
}

int StatsFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO nobody reads fails (ENXIO) instead of waiting
  // for a reader. O_NOCTTY: a terminal named here must not become ours.
  Fd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644));
  if (!fd) return errno;
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return errno;
  // /dev/full, a FIFO with a reader, a socket: they open, but cannot hold stats.
  if (!S_ISREG(info.st_mode)) return EINVAL;
  fd_ = std::move(fd);
  return 0;
}

bool StatsFile::write(const std::string& server, const std::string& pitfall, const Counters& c,
                      const std::map<std::string, std::uint64_t>& extra) {
  nlohmann::ordered_json j;
  j["server"] = server;
  j["pitfall"] = pitfall.empty() ? "none" : pitfall;
  j["wakeups"] = c.wakeups.get();
  j["events"] = c.events.get();
  j["accepts"] = c.accepts.get();
  j["reads"] = c.reads.get();
  j["writes"] = c.writes.get();
  j["ctl_calls"] = c.ctl_calls.get();
  j["bytes_in"] = c.bytes_in.get();
  j["bytes_out"] = c.bytes_out.get();
  j["connections_total"] = c.connections_total.get();
  j["connections_peak"] = c.connections_peak.get();
  j["resets"] = c.resets.get();
  j["accept_dropped"] = c.accept_dropped.get();
  j["max_pending_bytes"] = c.max_pending_bytes.get();
  for (const auto& [key, value] : extra) j[key] = value;

  const std::string text = j.dump(2) + '\n';
  if (::ftruncate(fd_.get(), 0) != 0) return false;
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n =
        ::pwrite(fd_.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace muxlab
