#include "counters.hpp"

#include <fstream>
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

bool write_stats_json(const std::string& path, const std::string& server,
                      const std::string& pitfall, const Counters& c,
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

  std::ofstream out(path, std::ios::trunc);
  if (!out) return false;
  out << j.dump(2) << '\n';
  return static_cast<bool>(out.flush());
}

}  // namespace muxlab
