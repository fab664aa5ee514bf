// Reading a server's --trace output (its stderr) in tests.
#pragma once

#include <string>
#include <vector>

namespace muxlab::test {

inline int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The server-side descriptor numbers, in accept order, from the
// "accept: new connection fd N" lines.
inline std::vector<int> accepted_fds(const std::string& trace) {
  std::vector<int> fds;
  const std::string marker = "accept: new connection fd ";
  for (auto at = trace.find(marker); at != std::string::npos; at = trace.find(marker, at + 1)) {
    fds.push_back(std::stoi(trace.substr(at + marker.size())));
  }
  return fds;
}

}  // namespace muxlab::test
