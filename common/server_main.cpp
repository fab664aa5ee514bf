#include "server_main.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace muxlab {

namespace {
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
}  // namespace

int run_server(int argc, char** argv, const ServerSpec& spec, const ServerLoop& loop) {
  const ServerOptions options = parse_server_options(argc, argv, spec);
  ShutdownSignal shutdown;
  Counters counters;
  Tracer tracer(spec.name, options.trace);
  std::map<std::string, std::uint64_t> extra_stats;

  try {
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
    ServerContext ctx{options, listener, shutdown, counters, tracer, acceptor, extra_stats,
                      announce};
    loop(ctx);
  } catch (const SystemError& e) {
    std::fprintf(stderr, "%s: %s\n", spec.name.c_str(), e.what());
    return kExitFailure;
  }

  if (!options.stats_json.empty() &&
      !write_stats_json(options.stats_json, spec.name, options.pitfall, counters, extra_stats)) {
    std::fprintf(stderr, "%s: cannot write %s: %s\n", spec.name.c_str(), options.stats_json.c_str(),
                 std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace muxlab
