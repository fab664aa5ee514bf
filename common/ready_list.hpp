// ReadyList: the clients a single-threaded epoll loop serves next, in the
// order they became ready, each at most once. The servers decide what goes
// on it and when (that is the technique); this is the bookkeeping.
//
// Tags, not pointers, are queued (see connection_table.hpp): a client closed
// while it waited is simply not found when its turn comes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>

namespace muxlab {

// Client needs a `bool queued`, set while it is on the list.
template <typename Client>
class ReadyList {
 public:
  void push(Client& client, std::uint64_t tag) {
    if (client.queued) return;
    client.queued = true;
    tags_.push_back(tag);
    peak_ = std::max<std::uint64_t>(peak_, tags_.size());
  }

  bool empty() const { return tags_.empty(); }
  std::uint64_t peak() const { return peak_; }  // the longest the list has been

  // One pass: serve(client, tag) once for each client on the list when the
  // pass began (one pushed again meanwhile waits for the next pass), stopping
  // early as soon as stop() is true. `table.find(tag)` finds a live client.
  template <typename Table, typename Stop, typename Serve>
  void take_turns(Table& table, Stop stop, Serve serve) {
    for (std::size_t turns = tags_.size(); turns > 0 && !stop(); --turns) {
      const std::uint64_t tag = tags_.front();
      tags_.pop_front();
      Client* client = table.find(tag);
      if (client == nullptr) continue;
      client->queued = false;
      serve(*client, tag);
    }
  }

 private:
  std::deque<std::uint64_t> tags_;
  std::uint64_t peak_ = 0;
};

}  // namespace muxlab
