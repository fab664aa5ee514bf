#include "reference_support.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "net.hpp"

namespace muxlab::reference {

ServerOptions start_up(int argc, char** argv, const std::string& name, const std::string& summary) {
  ServerSpec spec;
  spec.name = name;
  spec.summary = summary;
  ServerOptions options = parse_server_options(argc, argv, spec);
  if (options.trace) {
    std::fprintf(stderr, "%s: --trace: not available, the event loop is the library's\n",
                 name.c_str());
    std::exit(2);
  }
  std::signal(SIGPIPE, SIG_IGN);
  return options;
}

bool write_stats(const ServerOptions& options, const std::string& name, const Counters& c,
                 const std::string& library_version) {
  if (options.stats_json.empty()) return true;
  nlohmann::ordered_json j;
  j["server"] = name;
  j["library"] = library_version;
  j["pitfall"] = "none";
  j["wakeups"] = c.wakeups.get();
  j["events"] = c.events.get();
  j["accepts"] = c.accepts.get();
  j["reads"] = nullptr;
  j["writes"] = nullptr;
  j["ctl_calls"] = nullptr;
  j["bytes_in"] = c.bytes_in.get();
  j["bytes_out"] = c.bytes_out.get();
  j["connections_total"] = c.connections_total.get();
  j["connections_peak"] = c.connections_peak.get();
  j["resets"] = c.resets.get();
  j["max_pending_bytes"] = c.max_pending_bytes.get();
  std::ofstream out(options.stats_json, std::ios::trunc);
  if (!out) return false;
  out << j.dump(2) << '\n';
  return static_cast<bool>(out.flush());
}

void announce(int listen_fd) {
  std::printf("listening on %s\n", local_address(listen_fd).c_str());
  std::fflush(stdout);
}

}  // namespace muxlab::reference
