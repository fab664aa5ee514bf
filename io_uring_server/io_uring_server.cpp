// io_uring_server: the echo service on io_uring(7), completion-based.
//
// The readiness servers ask "which descriptor would not block?" and then pay
// one system call per read and per write. Here the server hands the kernel the
// operations themselves, as submission queue entries (SQEs) in a ring shared
// with the kernel, and later reaps their results, as completion queue entries
// (CQEs) in a second ring. One io_uring_enter() both submits everything queued
// since the last pass and waits for at least one completion. The rules this
// file is built on:
//  * multishot requests: one accept SQE keeps accepting, one receive SQE
//    keeps receiving; each result is a CQE with IORING_CQE_F_MORE set. A CQE
//    *without* F_MORE says the request is over (an error, -ENOBUFS, EOF, a
//    cancel, or the kernel simply stopping it) and nothing more will come
//    until the server submits it again;
//  * provided buffers: the kernel picks a buffer for each receive from a ring
//    the server fills (buffer_ring.hpp); the buffer is the server's until it
//    is given back, and must not be given back while its bytes are unused;
//  * memory named in an SQE (a send's bytes) must stay put until its CQE; and
//    at most one send per connection is in flight, because the kernel does
//    not order two sends on one socket (nor the rest of a short one);
//  * a request refers to its descriptor by number until its CQE: the server
//    closes a descriptor only after the last CQE of every request on it
//    (cancelling them first), or a new connection given the same number could
//    be hit by an old request.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include <CLI/CLI.hpp>

#include "buffer_ring.hpp"
#include "byte_queue.hpp"
#include "echo_connection.hpp"
#include "server_main.hpp"

namespace muxlab {
namespace {

unsigned g_buffers = 256;   // --ring-buffers
bool g_plain_ring = false;  // --plain-ring
int g_send_buffer = 0;      // --send-buffer (0: the kernel's autotuning)

const ServerSpec kSpec{
    .name = "io_uring_server",
    .summary = "TCP echo server on io_uring: multishot accept and receive, provided buffers",
    .pitfalls =
        {{"two-sends",
          "a send submitted for every receive, without waiting for the previous one: when the "
          "socket is full, the sends wait for room together and go out in any order"},
         {"no-rearm",
          "a multishot receive that ends without IORING_CQE_F_MORE (say -ENOBUFS when the "
          "buffer ring runs dry) is not submitted again: the connection silently stalls"},
         {"early-recycle",
          "bytes over --buffer-cap wait in their provided buffer, but that buffer is given back "
          "to the ring at once: the kernel refills it with newer bytes before they are echoed"}},
    .add_options =
        [](CLI::App& app) {
          app.add_option("--ring-buffers", g_buffers,
                         "provided receive buffers of 16 KiB (a power of two, 1..32768)");
          app.add_flag("--plain-ring", g_plain_ring,
                       "set the ring up without SINGLE_ISSUER|DEFER_TASKRUN, as on a kernel "
                       "older than 6.1");
          app.add_option("--send-buffer", g_send_buffer,
                         "SO_SNDBUF of each connection in bytes (0: autotuned; with a small one "
                         "every send waits for room, as the two-sends pitfall test uses)");
        },
    .validate =
        [] {
          if (g_buffers == 0 || g_buffers > 32768 || (g_buffers & (g_buffers - 1)) != 0)
            return "--ring-buffers " + std::to_string(g_buffers) +
                   ": must be a power of two between 1 and 32768";
          if (g_send_buffer != 0 && (g_send_buffer < 4096 || g_send_buffer > (1 << 26)))
            return "--send-buffer " + std::to_string(g_send_buffer) +
                   ": must be 0 or between 4096 and 67108864";
          return std::string();
        },
    .offers_max_connections = false,
};

constexpr unsigned kQueueDepth = 1024;
constexpr std::uint16_t kBufferGroup = 0;

// What a CQE is the answer to. user_data carries (op, sequence, fd); the fd
// names the connection, which is safe because a descriptor stays open (and
// so its number unused by anyone else) until its requests have all ended.
enum Op : std::uint8_t { kAccept = 1, kListenerReady, kRecv, kSend, kCancel, kStop };

std::uint64_t tag(Op op, int fd, std::uint32_t sequence = 0) {
  return std::uint64_t{op} << 56 | std::uint64_t{sequence & 0xff'ffffu} << 32 |
         static_cast<std::uint32_t>(fd);
}
Op op_of(std::uint64_t t) {
  return static_cast<Op>(t >> 56);
}
std::uint32_t sequence_of(std::uint64_t t) {
  return (t >> 32) & 0xff'ffffu;
}
int fd_of(std::uint64_t t) {
  return static_cast<int>(t & 0xffff'ffffu);
}

struct Held {            // received bytes that did not fit under the cap yet
  std::uint16_t id;      // the provided buffer they were received into,
  std::uint32_t offset;  // where they start in it,
  std::uint32_t length;  // and how many are left
  std::string spilled;   // or, if the ring ran short, a copy (the buffer given back)
  bool in_ring() const { return spilled.empty(); }
};

struct Client {
  explicit Client(Fd socket) : fd(std::move(socket)) {}
  Fd fd;
  // Sends in flight, by sequence number: their bytes may not move until their
  // CQE, so each owns its queue and new input goes to `outbox` meanwhile.
  // (One at most, except with the two-sends pitfall.)
  std::map<std::uint32_t, ByteQueue> sends;
  std::uint32_t next_send = 0;
  ByteQueue outbox;
  // The memory of the last finished send, kept for the next one: without it
  // every send would allocate its queue and free it on completion, and at
  // 64 KiB messages malloc hands the heap top back to the kernel and takes
  // it again each time (a brk() pair per message).
  ByteQueue spare;
  std::deque<Held> held;
  bool receiving = false;       // the multishot receive is armed (no final CQE yet)
  bool recv_cancelled = false;  // a cancel for it is on its way
  bool abandoned = false;       // pitfall no-rearm: never armed again
  int cancels = 0;              // cancel requests in flight: they name the fd too
  bool peer_closed = false;
  bool failed = false;
  bool closing = false;

  std::size_t queued() const {
    std::size_t n = outbox.size();
    for (const auto& [sequence, bytes] : sends) n += bytes.size();
    return n;
  }
  bool busy() const { return receiving || !sends.empty() || cancels > 0; }
};

class IoUringServer {
 public:
  explicit IoUringServer(ServerContext& ctx) : ctx_(ctx) {
    setup_ring();
    buffers_ = std::make_unique<BufferRing>(
        ring_, g_buffers, static_cast<unsigned>(EchoConnection::kReadChunk), kBufferGroup);
  }

  ~IoUringServer() {
    // Tearing the ring down cancels every request and waits for them; only
    // then may the buffers they write into go away, and the sockets close.
    io_uring_queue_exit(&ring_);
    buffers_.reset();
    for (std::size_t n = clients_.size(); n > 0; --n) ctx_.counters.connection_closed();
  }

  void run() {
    // The shutdown pipe is read through the ring too: a signal that arrives
    // between two waits has made it readable, so this poll completes and the
    // next wait returns at once. Nothing is ever missed.
    io_uring_prep_poll_add(sqe(), ctx_.shutdown.fd(), POLLIN);
    last_sqe_->user_data = tag(kStop, ctx_.shutdown.fd());
    arm_accept();
    ctx_.ready();  // the ring and its buffers exist: now clients may come
    while (!stopping_ && !ctx_.shutdown.requested()) {
      submit_and_wait();
      reap();
    }
    auto& stats = ctx_.extra_stats;
    stats["enters"] = enters_;
    stats["submissions"] = submissions_;
    stats["completions"] = completions_;
    stats["buffers_recycled"] = buffers_recycled_;
    stats["enobufs"] = enobufs_;
    stats["defer_taskrun"] = defer_taskrun_ ? 1 : 0;
    stats["sends_in_flight_peak"] = sends_in_flight_peak_;
    stats["short_sends"] = short_sends_;
    stats["recv_rearms"] = recv_rearms_;
    stats["accept_rearms"] = accept_rearms_;
    stats["held_buffers_peak"] = held_buffers_peak_;
    stats["spilled_buffers"] = spilled_buffers_;
  }

 private:
  void setup_ring() {
    io_uring_params params{};
    // SINGLE_ISSUER: only this thread submits. DEFER_TASKRUN: the kernel
    // finishes our requests' work (copying received bytes, posting CQEs) only
    // when we enter the kernel to wait, in one go, instead of interrupting the
    // thread whenever a packet lands. Kernels before 6.1 refuse it (EINVAL).
    params.flags = g_plain_ring ? 0 : IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int error = io_uring_queue_init_params(kQueueDepth, &ring_, &params);
    if (error == -EINVAL && params.flags != 0) {
      ctx_.tracer.line("ring: SINGLE_ISSUER|DEFER_TASKRUN refused, plain ring instead");
      params = {};
      error = io_uring_queue_init_params(kQueueDepth, &ring_, &params);
    }
    if (error == -ENOSYS || error == -EPERM) {
      // No io_uring in this kernel, or /proc/sys/kernel/io_uring_disabled, or
      // a seccomp filter (containers) forbids it.
      throw SystemError("io_uring is not available here (io_uring_setup)", -error);
    }
    if (error < 0) throw SystemError("io_uring_queue_init", -error);
    defer_taskrun_ = (params.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  }

  // The next free SQE. A full submission queue is flushed to the kernel
  // (io_uring_submit, one more enter) rather than dropping the request.
  io_uring_sqe* sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    while (entry == nullptr) {
      const int submitted = io_uring_submit(&ring_);
      ++enters_;
      if (submitted > 0) submissions_ += static_cast<std::uint64_t>(submitted);
      entry = io_uring_get_sqe(&ring_);
    }
    last_sqe_ = entry;
    return entry;
  }

  void submit_and_wait() {
    // The one system call of a pass: io_uring_enter(to_submit, min_complete 1,
    // IORING_ENTER_GETEVENTS). It submits what this pass prepared, then sleeps
    // until a CQE is there. With DEFER_TASKRUN this is also where the kernel
    // does the deferred work and posts the CQEs.
    const unsigned prepared = io_uring_sq_ready(&ring_);
    const int result = io_uring_submit_and_wait(&ring_, 1);
    ++enters_;
    ctx_.counters.wakeups.add();
    if (result >= 0) {
      submissions_ += static_cast<std::uint64_t>(result);
    } else if (result != -EINTR && result != -EBUSY && result != -EAGAIN) {
      // EINTR: a signal (or SIGSTOP/SIGCONT) ended the wait, the SQEs went in
      // anyway. EBUSY/EAGAIN: the CQ ring is full; reaping makes room.
      throw SystemError("io_uring_submit_and_wait", -result);
    }
    ctx_.tracer.line("wakeup: io_uring_enter(submit %u, wait 1) -> %u completions", prepared,
                     io_uring_cq_ready(&ring_));
  }

  void reap() {
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      complete(*cqe);
    }
    // Marks the CQEs consumed: the kernel may reuse their slots.
    io_uring_cq_advance(&ring_, seen);
    completions_ += seen;
    ctx_.counters.events.add(seen);
  }

  void complete(const io_uring_cqe& cqe) {
    const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
    switch (op_of(cqe.user_data)) {
      case kAccept:
        return on_accept(cqe.res, more);
      case kListenerReady:
        ctx_.tracer.line("  fd %d: listener readable", fd_of(cqe.user_data));
        return on_listener_ready();
      case kRecv:
        return on_recv(fd_of(cqe.user_data), cqe.res, cqe.flags);
      case kSend:
        return on_send(fd_of(cqe.user_data), sequence_of(cqe.user_data), cqe.res);
      case kCancel:
        return on_cancelled(fd_of(cqe.user_data), cqe.res);
      case kStop:
        ctx_.tracer.line("  fd %d: shutdown pipe readable", fd_of(cqe.user_data));
        stopping_ = true;
        return;
    }
  }

  // --- accepting -----------------------------------------------------------

  void arm_accept() {
    io_uring_prep_multishot_accept(sqe(), ctx_.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    last_sqe_->user_data = tag(kAccept, ctx_.listener.get());
  }

  void on_accept(int result, bool more) {
    if (result >= 0) {
      ctx_.counters.accepts.add();
      admit(Fd(result));
    } else {
      ctx_.tracer.line("  fd %d: accept failed: %s", ctx_.listener.get(), std::strerror(-result));
    }
    if (more) return;
    ++accept_rearms_;
    if (result != -EMFILE && result != -ENFILE) return arm_accept();
    // Out of descriptors. An io_uring accept reserves the new descriptor
    // *before* it looks at the backlog, so while the table is full a re-armed
    // accept fails at once, forever: a spin through the ring. Instead, wait
    // for a connection to arrive with a poll on the listener (which needs no
    // descriptor), and meet it with the readiness servers' trick.
    ctx_.tracer.line("accept: out of descriptors, polling the listener instead");
    io_uring_prep_poll_add(sqe(), ctx_.listener.get(), POLLIN);
    last_sqe_->user_data = tag(kListenerReady, ctx_.listener.get());
  }

  void on_listener_ready() {
    // Give up the spare descriptor, accept4() the newcomer and close it (or
    // keep it, if a descriptor was freed meanwhile), until the backlog is
    // empty. Then the multishot accept again: if the table is still full it
    // fails at once and we are back here, but only when someone connects.
    for (;;) {
      auto [status, fd] = ctx_.acceptor.accept_one(ctx_.listener.get(), false);
      if (status == Acceptor::Status::kWouldBlock) break;
      if (status == Acceptor::Status::kAccepted) admit(std::move(fd));
    }
    arm_accept();
  }

  void admit(Fd fd) {
    const int number = fd.get();
    ctx_.tracer.line("accept: new connection fd %d", number);
    // Echo traffic is many small writes; Nagle would hold them for the ACK.
    const int one = 1;
    ::setsockopt(number, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g_send_buffer > 0) {
      ::setsockopt(number, SOL_SOCKET, SO_SNDBUF, &g_send_buffer, sizeof g_send_buffer);
    }
    ctx_.counters.connection_opened();
    Client& client = clients_.try_emplace(number, std::move(fd)).first->second;
    arm_recv(number, client);
  }

  // --- receiving -----------------------------------------------------------

  void arm_recv(int fd, Client& client) {
    // No buffer of our own: IOSQE_BUFFER_SELECT lets the kernel take one from
    // group kBufferGroup each time bytes arrive, so an idle connection pins no
    // memory at all.
    io_uring_prep_recv_multishot(sqe(), fd, nullptr, 0, 0);
    last_sqe_->flags |= IOSQE_BUFFER_SELECT;
    last_sqe_->buf_group = kBufferGroup;
    last_sqe_->user_data = tag(kRecv, fd);
    client.receiving = true;
    client.recv_cancelled = false;
  }

  void on_recv(int fd, int result, std::uint32_t flags) {
    Client& client = clients_.at(fd);
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (!more) client.receiving = false;
    if (result > 0) {
      const auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      ctx_.counters.reads.add();
      ctx_.counters.bytes_in.add(static_cast<std::uint64_t>(result));
      ctx_.tracer.line("  fd %d: recv %d bytes in buffer %u%s", fd, result, id,
                       more ? ", F_MORE" : ", final");
      take(client, {id, 0, static_cast<std::uint32_t>(result), {}});
      simulate_request_cost(ctx_.options);
    } else if (result == 0) {
      ctx_.tracer.line("  fd %d: recv 0: the peer sent FIN", fd);
      client.peer_closed = true;
    } else if (result == -ENOBUFS) {
      // The ring ran dry while bytes were waiting. Those bytes are still in
      // the socket; the buffers handed out so far came back in this batch.
      ++enobufs_;
      ctx_.tracer.line("  fd %d: recv -ENOBUFS: no provided buffer left, final", fd);
    } else if (result == -ECANCELED) {
      ctx_.tracer.line("  fd %d: recv cancelled, final", fd);
    } else {
      ctx_.tracer.line("  fd %d: recv failed: %s", fd, std::strerror(-result));
      // The recv and the send in flight can both meet the reset: count it once.
      if (result == -ECONNRESET && !client.failed) ctx_.counters.resets.add();
      client.failed = true;
    }
    if (!more && !client.peer_closed && !client.failed && ctx_.options.pitfall_is("no-rearm")) {
      // PITFALL no-rearm: the CQE without F_MORE was the last word of this
      // request. Without a new SQE, bytes already in the socket and all that
      // follow are never read, and nothing in the kernel will say so.
      ctx_.tracer.line("  fd %d: receive ended and not re-armed (pitfall no-rearm)", fd);
      client.abandoned = true;
    }
    settle(fd, client);
  }

  // Copies a received buffer's bytes into the outbox as far as the cap
  // allows. Whatever does not fit stays in its buffer (held, not given back)
  // until sends make room: the outbox never holds more than --buffer-cap.
  void take(Client& client, Held buffer) {
    if (client.held.empty()) buffer = copy_out(client, buffer);
    // All bytes used: only now may the kernel have the buffer back.
    if (buffer.length == 0) return recycle(buffer.id);
    if (ctx_.options.pitfall_is("early-recycle")) {
      // PITFALL early-recycle: the buffer goes back to the ring while its
      // bytes still wait to be copied. The next receives that pick it up
      // overwrite them, and what is echoed later is someone else's data.
      client.held.push_back(buffer);
      return recycle(buffer.id);
    }
    if (held_buffers_ >= buffers_->entries() / 2) {
      // The cancel of a receive lands only at the next enter: until then the
      // kernel may fill every free buffer for this one connection. Held for
      // peers that do not read, they would leave nothing for the others, whose
      // receives would end with -ENOBUFS until those peers read: one client
      // stalling all. So at most half the ring is ever held; past that, the
      // bytes are copied aside (at most one receive's burst per connection,
      // since the receive is not armed again while anything is held).
      const char* bytes = buffers_->buffer(buffer.id) + buffer.offset;
      buffer.spilled.assign(bytes, buffer.length);
      buffer.offset = 0;
      recycle(buffer.id);
      ++spilled_buffers_;
      client.held.push_back(std::move(buffer));
      return;
    }
    client.held.push_back(buffer);
    held_buffers_peak_ = std::max(held_buffers_peak_, ++held_buffers_);
  }

  Held copy_out(Client& client, Held buffer) {
    const std::size_t room =
        ctx_.options.buffer_cap - std::min(ctx_.options.buffer_cap, client.queued());
    const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(room, buffer.length));
    if (n > 0) {
      const char* from = buffer.in_ring() ? buffers_->buffer(buffer.id) : buffer.spilled.data();
      std::memcpy(client.outbox.reserve(n).data(), from + buffer.offset, n);
      client.outbox.commit(n);
      ctx_.counters.max_pending_bytes.raise_to(client.queued());
    }
    buffer.offset += n;
    buffer.length -= n;
    return buffer;
  }

  void recycle(std::uint16_t id) {
    buffers_->give_back(id);
    ++buffers_recycled_;
  }

  // Decides what a connection needs next after any completion: drain held
  // buffers, send, read again or stop reading, close.
  void settle(int fd, Client& client) {
    while (!client.held.empty()) {
      client.held.front() = copy_out(client, std::move(client.held.front()));
      if (client.held.front().length > 0) break;
      const Held used = std::move(client.held.front());
      client.held.pop_front();
      // Given back already: a copy, or the pitfall.
      if (!used.in_ring() || ctx_.options.pitfall_is("early-recycle")) continue;
      recycle(used.id);
      --held_buffers_;
    }
    if (!client.failed) send_next(fd, client);
    const bool room = client.held.empty() && client.queued() < ctx_.options.buffer_cap;
    const bool done = client.failed || (client.peer_closed && client.queued() == 0);
    if (done || client.closing) return close(fd, client, client.failed ? "failed" : "all echoed");
    if (!room && client.receiving && !client.recv_cancelled) {
      // Backpressure: the output is full, so the multishot receive must stop;
      // left armed, it would keep filling buffers. Cancelling it ends it with
      // a final CQE (-ECANCELED, or the bytes that beat the cancel).
      ctx_.tracer.line("  fd %d: output full, cancelling the receive", fd);
      cancel(fd, client, tag(kRecv, fd), 0);
      client.recv_cancelled = true;
    } else if (room && !client.receiving && !client.peer_closed && !client.abandoned) {
      // The multishot receive ended (a CQE without F_MORE: -ENOBUFS, our
      // cancel, or the kernel stopping it): nothing is read until it is
      // submitted again. The kernel sees this SQE at the next enter, when
      // this batch is reaped and half the ring at least is free (take()
      // holds no more): it cannot meet an empty ring and spin on -ENOBUFS.
      ++recv_rearms_;
      ctx_.tracer.line("  fd %d: receive re-armed", fd);
      arm_recv(fd, client);
    }
  }

  // --- sending -------------------------------------------------------------

  void send_next(int fd, Client& client) {
    if (client.outbox.empty()) return;
    if (!client.sends.empty() && !ctx_.options.pitfall_is("two-sends")) return;
    // PITFALL two-sends (the condition above): a second send before the first
    // completed. In a full socket both wait for room and nothing orders them:
    // the newer may go first, or the older completes short and its rest
    // follows the newer.
    const std::uint32_t sequence = client.next_send++ & 0xff'ffffu;
    ByteQueue& bytes = client.sends.emplace(sequence, std::move(client.spare)).first->second;
    std::swap(bytes, client.outbox);
    submit_send(fd, sequence, bytes);
    sends_in_flight_peak_ = std::max<std::uint64_t>(sends_in_flight_peak_, client.sends.size());
  }

  void submit_send(int fd, std::uint32_t sequence, const ByteQueue& bytes) {
    const auto data = bytes.readable();
    // MSG_NOSIGNAL: EPIPE instead of SIGPIPE. The bytes stay where they are,
    // untouched, until this send's CQE.
    io_uring_prep_send(sqe(), fd, data.data(), data.size(), MSG_NOSIGNAL);
    last_sqe_->user_data = tag(kSend, fd, sequence);
  }

  void on_send(int fd, std::uint32_t sequence, int result) {
    Client& client = clients_.at(fd);
    auto in_flight = client.sends.find(sequence);
    ByteQueue& bytes = in_flight->second;
    ctx_.counters.writes.add();
    if (result >= 0) {
      ctx_.tracer.line("  fd %d: send %d of %zu bytes", fd, result, bytes.size());
      if (static_cast<std::size_t>(result) < bytes.size()) ++short_sends_;
      bytes.consume(static_cast<std::size_t>(result));
      ctx_.counters.bytes_out.add(static_cast<std::uint64_t>(result));
    } else {
      ctx_.tracer.line("  fd %d: send failed: %s", fd, std::strerror(-result));
      if ((result == -EPIPE || result == -ECONNRESET) && !client.failed) {
        ctx_.counters.resets.add();
      }
      client.failed = true;
    }
    // A short send (the socket buffer filled up) leaves the rest in flight:
    // it is submitted again before anything newer, keeping the byte order.
    if (!client.failed && !client.closing && !bytes.empty()) {
      submit_send(fd, sequence, bytes);
    } else {
      if (bytes.empty()) client.spare = std::move(bytes);
      client.sends.erase(in_flight);
    }
    settle(fd, client);
  }

  // --- closing ---------------------------------------------------------------

  // Asks the kernel to end requests on `fd`: by user_data, or all of them.
  void cancel(int fd, Client& client, std::uint64_t which, int flags) {
    if (flags & IORING_ASYNC_CANCEL_FD) {
      io_uring_prep_cancel_fd(sqe(), fd, static_cast<unsigned>(flags));
    } else {
      io_uring_prep_cancel64(sqe(), which, flags);
    }
    last_sqe_->user_data = tag(kCancel, fd);
    ++client.cancels;
  }

  void on_cancelled(int fd, int result) {
    Client& client = clients_.at(fd);
    --client.cancels;
    ctx_.tracer.line("  fd %d: cancel done: %s", fd,
                     result >= 0 ? "found" : std::strerror(-result));
    settle(fd, client);
  }

  void close(int fd, Client& client, const char* why) {
    if (!client.closing) {
      client.closing = true;
      // Every request on this fd must end before the number can be freed.
      // An (EOF'd or failed) receive has ended already; a send may be stuck
      // on a peer that never reads, a receive armed on one that never sends.
      if (client.receiving || !client.sends.empty()) {
        cancel(fd, client, 0, IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL);
      }
    }
    if (client.busy()) return;  // the last CQE comes back here through settle()
    for (const Held& buffer : client.held) {
      if (!buffer.in_ring() || ctx_.options.pitfall_is("early-recycle")) continue;
      recycle(buffer.id);
      --held_buffers_;
    }
    ctx_.tracer.line("  fd %d: closed (%s)", fd, why);
    clients_.erase(fd);
    ctx_.counters.connection_closed();
  }

  ServerContext& ctx_;
  io_uring ring_{};
  std::unique_ptr<BufferRing> buffers_;
  std::unordered_map<int, Client> clients_;
  io_uring_sqe* last_sqe_ = nullptr;
  bool defer_taskrun_ = false;
  bool stopping_ = false;
  std::uint64_t enters_ = 0;
  std::uint64_t submissions_ = 0;
  std::uint64_t completions_ = 0;
  std::uint64_t buffers_recycled_ = 0;
  std::uint64_t enobufs_ = 0;
  std::uint64_t sends_in_flight_peak_ = 0;
  std::uint64_t short_sends_ = 0;
  std::uint64_t recv_rearms_ = 0;
  std::uint64_t accept_rearms_ = 0;
  unsigned held_buffers_ = 0;  // provided buffers kept back for bytes over the cap
  unsigned held_buffers_peak_ = 0;
  std::uint64_t spilled_buffers_ = 0;  // buffers copied aside to keep half the ring free
};

}  // namespace
}  // namespace muxlab

int main(int argc, char** argv) {
  return muxlab::run_server(argc, argv, muxlab::kSpec,
                            [](muxlab::ServerContext& ctx) { muxlab::IoUringServer(ctx).run(); });
}
