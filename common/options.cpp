#include "options.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "net.hpp"

namespace muxlab {

namespace {

constexpr int kExitUsage = 2;

std::string check_numeric_host(const std::string& host) {
  return parse_numeric_address(host, 0) ? std::string() : numeric_address_error(host);
}

}  // namespace

std::string check_decimal_port(const std::string& text) {
  const bool digits_only = !text.empty() && text.size() <= 5 &&
                           text.find_first_not_of("0123456789") == std::string::npos;
  if (digits_only && std::stoul(text) <= 65535) return {};
  return "not a decimal port number from 0 to 65535: '" + text + "'";
}

ServerOptions parse_server_options(int argc, char** argv, const ServerSpec& spec) {
  ServerOptions options;
  CLI::App app{spec.summary, spec.name};

  app.add_option("--host", options.host, "Address to listen on (numeric IPv4 or IPv6)")
      ->check(check_numeric_host)
      ->capture_default_str();
  // Read as text and checked here: a general number parser would take "" as
  // 0 and "0x10" as 16, and a server would listen somewhere nobody asked for.
  app.add_option_function<std::string>(
         "--port",
         [&options](const std::string& text) {
           options.port = static_cast<std::uint16_t>(std::stoul(text));
         },
         "TCP port in decimal, 0 to 65535; 0 picks a free one (default 9000)")
      ->check(check_decimal_port);
  app.add_flag("--trace", options.trace, "One stderr line per wakeup and per event");
  app.add_option("--stats-json", options.stats_json, "Write counters to FILE at exit");
  app.add_option("--work-us", options.work_us, "Burn N microseconds of CPU per read chunk")
      ->check(CLI::Range(0u, 10'000'000u))
      ->capture_default_str();
  app.add_option("--block-us", options.block_us, "Sleep N microseconds per read chunk")
      ->check(CLI::Range(0u, 10'000'000u))
      ->capture_default_str();
  app.add_option("--buffer-cap", options.buffer_cap,
                 "Most bytes one connection may hold before the server stops reading it")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
      ->capture_default_str();

  if (spec.offers_max_connections) {
    app.add_option("--max-connections", options.max_connections,
                   "Hold at most N clients; a newcomer beyond that closes the oldest (0: no limit)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 24))
        ->capture_default_str();
  }

  std::vector<std::string> names;
  std::string pitfall_help = "Switch on one deliberate mistake:";
  for (const auto& p : spec.pitfalls) {
    names.push_back(p.name);
    pitfall_help += "\n  " + p.name + ": " + p.description;
  }
  if (!spec.pitfalls.empty()) {
    app.add_option("--pitfall", options.pitfall, pitfall_help)->check(CLI::IsMember(names));
  }
  if (spec.add_options) spec.add_options(app);

  try {
    app.parse(argc, argv);
    if (spec.validate) {
      if (std::string problem = spec.validate(); !problem.empty())
        throw CLI::ValidationError(problem);
    }
  } catch (const CLI::Success& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun with --help for usage.\n", spec.name.c_str(), e.what());
    std::exit(kExitUsage);
  }
  return options;
}

}  // namespace muxlab
