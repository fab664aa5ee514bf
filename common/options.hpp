// The flags every server shares (docs/contract.md, "The server contract").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace muxlab {

struct Pitfall {
  std::string name;
  std::string description;  // shown in --help: the mistake and its symptom
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
  bool trace = false;
  std::string stats_json;
  std::uint32_t work_us = 0;
  std::uint32_t block_us = 0;
  std::size_t buffer_cap = 256 * 1024;
  // 0: no limit. Read only by servers whose spec offers --max-connections.
  std::size_t max_connections = 0;
  std::string pitfall;  // empty: the correct code paths

  bool pitfall_is(const std::string& name) const { return pitfall == name; }
};

struct ServerSpec {
  std::string name;     // the executable's name, used in messages and stats
  std::string summary;  // one line for --help
  std::vector<Pitfall> pitfalls;
  // Adds technique-specific flags (the pool's thread limits, say).
  std::function<void(CLI::App&)> add_options;
  // Checks values that depend on each other; returns an error message or "".
  std::function<std::string()> validate;
  // Offers --max-connections N: beyond N clients, the oldest is closed to admit
  // a newcomer. Only servers that implement the eviction set this.
  bool offers_max_connections = false;
  // Asked once the flags are parsed: true makes run_server set SO_REUSEPORT on
  // the listening socket, so the loop may bind more sockets to its address.
  std::function<bool()> reuse_port = nullptr;
};

// "" when `text` is a port number written in decimal, 0 to 65535, with nothing
// else around it (no sign, no spaces, no 0x); otherwise the reason, quoting it.
std::string check_decimal_port(const std::string& text);

// Parses argv. On --help prints usage and exits 0; on a bad flag or value prints
// the reason and a usage hint on stderr and exits 2.
ServerOptions parse_server_options(int argc, char** argv, const ServerSpec& spec);

}  // namespace muxlab
