// ConnectionTable: the clients of a single-threaded epoll server, found again
// from the 64 bits that epoll_event.data carries back.
//
// Why neither the bare fd nor a pointer will do: epoll_wait() hands back a
// *batch*. While handling one event the server may close the connection a
// later event in the same batch is about (evicting it, say: eviction.hpp), and an accept()
// in between may be given the very same descriptor number. That later event
// then names freed memory (data.ptr) or an innocent newcomer (data.fd). So
// every connection gets a generation number of its own, and the tag given to
// epoll is (generation, fd): an event whose generation is no longer the one in
// the table is a leftover of a closed connection and is skipped.
//
// Closing needs no EPOLL_CTL_DEL: the kernel drops a descriptor from every
// interest list when the last reference to its open file goes away, and these
// sockets are never dup'ed or inherited (they are close-on-exec).
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tracer.hpp"

namespace muxlab {

template <typename Connection>
class ConnectionTable {
 public:
  explicit ConnectionTable(const Tracer& tracer) : tracer_(tracer) {}

  // Generation 0 is never given to a connection: it marks the server's own
  // descriptors (the listener, the shutdown pipe), which outlive every batch.
  static std::uint64_t make_tag(int fd, std::uint32_t generation = 0) {
    return (std::uint64_t{generation} << 32) | static_cast<std::uint32_t>(fd);
  }
  static int fd_of(std::uint64_t tag) { return static_cast<int>(tag & 0xffff'ffffu); }

  std::size_t size() const { return live_; }

  // Stores a new connection under its descriptor; returns the tag to register.
  std::uint64_t insert(int fd, std::unique_ptr<Connection> connection) {
    const auto index = static_cast<std::size_t>(fd);
    if (index >= slots_.size()) slots_.resize(index + 1);
    Slot& slot = slots_[index];
    // Wrapping after 2^32 connections is harmless: a leftover event would have
    // to survive four billion accepts inside one batch to be mistaken.
    if (++last_generation_ == 0) ++last_generation_;
    slot.generation = last_generation_;
    slot.connection = std::move(connection);
    ++live_;
    return make_tag(fd, slot.generation);
  }

  // The connection `tag` was registered for, or nullptr if it has been closed.
  Connection* find(std::uint64_t tag) const {
    const auto index = static_cast<std::size_t>(fd_of(tag));
    if (index >= slots_.size()) return nullptr;
    const Slot& slot = slots_[index];
    if (!slot.connection || tag != make_tag(fd_of(tag), slot.generation)) return nullptr;
    return slot.connection.get();
  }

  // Destroys the connection, which closes its descriptor.
  void close(int fd, const char* why) {
    tracer_.line("  fd %d: closed (%s)", fd, why);
    slots_[static_cast<std::size_t>(fd)].connection.reset();
    --live_;
  }

  // One --trace line per event: which descriptor, which flags.
  void trace_event(const epoll_event& event) const {
    if (!tracer_.enabled()) return;
    tracer_.line("  fd %d: %s", fd_of(event.data.u64), epoll_flags_text(event.events).c_str());
  }

  // find() for an event's tag: nullptr also for the server's own descriptors
  // (generation 0), and for a stale event, which is counted and traced,
  // saying whether its number already belongs to someone else.
  Connection* find_live(std::uint64_t tag) {
    if (Connection* connection = find(tag)) return connection;
    if ((tag >> 32) == 0) return nullptr;
    ++stale_events_;
    const int fd = fd_of(tag);
    const auto index = static_cast<std::size_t>(fd);
    const bool reused = index < slots_.size() && slots_[index].connection != nullptr;
    tracer_.line("  fd %d: stale event of a connection closed earlier in this batch (%s), skipped",
                 fd, reused ? "fd reused by a newer connection" : "fd now free");
    return nullptr;
  }

  void add_stats(std::map<std::string, std::uint64_t>& extra_stats) const {
    extra_stats["stale_events_skipped"] = stale_events_;
  }

 private:
  struct Slot {
    std::unique_ptr<Connection> connection;
    std::uint32_t generation = 0;
  };

  // Indexed by descriptor: the kernel hands out the lowest free number, so
  // the vector stays about as long as the number of open descriptors.
  const Tracer& tracer_;
  std::vector<Slot> slots_;
  std::size_t live_ = 0;
  std::uint32_t last_generation_ = 0;
  std::uint64_t stale_events_ = 0;
};

}  // namespace muxlab
