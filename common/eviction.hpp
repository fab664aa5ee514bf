// --max-connections for the servers that offer it: when one more client would
// pass the limit, the connection open the longest makes room for it.
//
// A policy beside the ConnectionTable rather than inside it: most servers do
// not offer the flag. Connections close in many places (a peer's FIN, an
// error, eviction), so the queue is not told of each close: it keeps the tags
// in the order they were admitted and skips the ones the table no longer
// knows, which the generation in every tag makes exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace muxlab {

template <typename Table>
class OldestFirstEviction {
 public:
  // `limit` 0: no limit, and nothing is remembered.
  OldestFirstEviction(Table& table, std::size_t limit) : table_(table), limit_(limit) {}

  // Before an accept: if the table is full, closes its oldest live connection.
  void make_room() {
    if (limit_ == 0 || table_.size() < limit_) return;
    while (!by_age_.empty() && table_.find(by_age_.front()) == nullptr) by_age_.pop_front();
    if (by_age_.empty()) return;
    ++evictions_;
    table_.close(Table::fd_of(by_age_.front()), "evicted: --max-connections reached");
    by_age_.pop_front();
  }

  // After ConnectionTable::insert(): the newcomer joins the end of the line.
  void admitted(std::uint64_t tag) {
    if (limit_ == 0) return;
    by_age_.push_back(tag);
    // Tags of connections closed by their peers stay behind a long-lived
    // oldest one; sweeping them once they outnumber the live ones keeps the
    // queue about as long as the table.
    if (by_age_.size() > 2 * table_.size() + 16) {
      std::erase_if(by_age_, [this](std::uint64_t t) { return table_.find(t) == nullptr; });
    }
  }

  void add_stats(std::map<std::string, std::uint64_t>& extra_stats) const {
    extra_stats["evictions"] = evictions_;
  }

 private:
  Table& table_;
  std::size_t limit_;
  std::deque<std::uint64_t> by_age_;  // tags, oldest first; some may be closed
  std::uint64_t evictions_ = 0;
};

}  // namespace muxlab
