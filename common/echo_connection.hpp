// EchoConnection: one client of the echo service, the part that is the same in
// every server. The server decides *when* to read and write (that is the
// technique); this class does the reading, the writing and the bookkeeping.
//
// Backpressure: bytes read are queued for writing back; once `buffer_cap` bytes
// are queued, can_read() is false and the server must stop watching for input
// until flush() makes room. Half-close: after the peer's FIN (read returns 0)
// everything queued is still written, then finished() becomes true.
#pragma once

#include <cstddef>
#include <cstdint>

#include "byte_queue.hpp"
#include "counters.hpp"
#include "fd.hpp"
#include "options.hpp"

namespace muxlab {

// The request cost model of --work-us / --block-us, applied once per read chunk.
// A stop request cuts it short: the contract promises an exit within 3 s of
// SIGTERM whatever a request costs, so the cost is treated as cancellable work.
void simulate_request_cost(const ServerOptions& options);

class EchoConnection {
 public:
  static constexpr std::size_t kReadChunk = 16 * 1024;

  enum class Io {
    kProgress,    // moved at least one byte
    kWouldBlock,  // EAGAIN, or (read) no room under the cap
    kPeerClosed,  // read returned 0: the peer sent FIN
    kFailed,      // ECONNRESET, EPIPE...: the connection is dead
  };

  EchoConnection(Fd fd, const ServerOptions& options, Counters& counters);
  ~EchoConnection();
  EchoConnection(const EchoConnection&) = delete;
  EchoConnection& operator=(const EchoConnection&) = delete;

  int fd() const { return fd_.get(); }

  // One read() of at most one chunk (less when the cap is near).
  Io read_once();
  // write() until the queue is empty or the socket says EAGAIN.
  Io flush();

  bool can_read() const { return !peer_closed_ && !failed_ && pending() < cap_; }
  bool wants_write() const { return !failed_ && pending() > 0; }
  bool finished() const { return failed_ || (peer_closed_ && pending() == 0); }
  bool peer_closed() const { return peer_closed_; }
  // The last read_once() that made progress got fewer bytes than it asked for.
  bool last_read_short() const { return last_read_short_; }
  std::size_t pending() const { return outbox_.size(); }

 private:
  // Marks the connection dead. A reset is counted once, by whichever call met
  // it first: read() says ECONNRESET, and a later send() would say EPIPE.
  Io fail(int error);

  Fd fd_;
  const ServerOptions& options_;
  Counters& counters_;
  std::size_t cap_;
  ByteQueue outbox_;
  bool peer_closed_ = false;
  bool failed_ = false;
  bool last_read_short_ = false;
};

}  // namespace muxlab
