#include "server_main.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace muxlab {

namespace {
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Opens --stats-json now, so a path that cannot work stops the server before
// it announces readiness: exit 2 for a bad path (a flag value like any other),
// exit 1 when the process itself is out of descriptors or memory.
int open_stats_file(StatsFile& file, const std::string& path, const std::string& name) {
  if (path.empty()) return kExitOk;
  const int error = file.open(path);
  if (error == 0) return kExitOk;
  std::fprintf(stderr, "%s: --stats-json '%s': %s\n", name.c_str(), path.c_str(),
               error == EINVAL ? "not a regular file" : std::strerror(error));
  return error == EMFILE || error == ENFILE || error == ENOMEM ? kExitFailure : kExitUsage;
}
}  // namespace

int run_server(int argc, char** argv, const ServerSpec& spec, const ServerLoop& loop) {
  const ServerOptions options = parse_server_options(argc, argv, spec);
  StatsFile stats_file;
  if (const int code = open_stats_file(stats_file, options.stats_json, spec.name); code != kExitOk)
    return code;
  Counters counters;
  Tracer tracer(spec.name, options.trace);
  std::map<std::string, std::uint64_t> extra_stats;

  try {
    ShutdownSignal shutdown;
    const bool reuse_port = spec.reuse_port && spec.reuse_port();
    Fd listener = listen_tcp(options.host, options.port, 4096, reuse_port);
    Acceptor acceptor(counters, tracer);
    bool announced = false;
    auto announce = [&] {
      if (announced) return;
      announced = true;
      std::printf("listening on %s\n", local_address(listener.get()).c_str());
      std::fflush(stdout);
      if (!options.pitfall.empty()) {
        std::fprintf(stderr, "%s: pitfall '%s' is ON: this server is broken on purpose\n",
                     spec.name.c_str(), options.pitfall.c_str());
      }
    };
    ServerContext ctx{options, listener, shutdown,    counters,
                      tracer,  acceptor, extra_stats, announce};
    loop(ctx);
  } catch (const SystemError& e) {
    std::fprintf(stderr, "%s: %s\n", spec.name.c_str(), e.what());
    return kExitFailure;
  }

  if (stats_file.is_open() &&
      !stats_file.write(spec.name, options.pitfall, counters, extra_stats)) {
    std::fprintf(stderr, "%s: cannot write %s: %s\n", spec.name.c_str(), options.stats_json.c_str(),
                 std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace muxlab
