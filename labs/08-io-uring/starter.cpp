// Lab 08 starter: an echo server on io_uring, completion-based. Complete the
// TODOs, then
//   labs/check 08
// You no longer ask "which socket is ready?": you hand the kernel the accept
// and the receives themselves and reap their results. A multishot request
// keeps producing completions (IORING_CQE_F_MORE) until one arrives without
// that flag: then it is over, and nothing happens until you submit it again.
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <deque>
#include <map>
#include <memory>

#include <CLI/CLI.hpp>

#include "buffer_ring.hpp"  // given: maps and registers the provided buffers
#include "byte_queue.hpp"
#include "echo_connection.hpp"
#include "server_main.hpp"

namespace {

using namespace muxlab;

unsigned g_buffers = 256;

const ServerSpec kSpec{
    .name = "lab08_io_uring",
    .summary = "Lab 08: TCP echo server on io_uring",
    .pitfalls = {},
    .add_options =
        [](CLI::App& app) {
          app.add_option("--ring-buffers", g_buffers, "provided 16 KiB receive buffers")
              ->check(CLI::IsMember({1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u, 256u, 512u, 1024u}));
        },
    .validate = {},
};

// user_data: what the completion answers (high byte) and for which fd.
enum Op : std::uint8_t { kAccept = 1, kRecv, kSend, kStop };
[[maybe_unused]] std::uint64_t tag(Op op, int fd) {
  return std::uint64_t{op} << 56 | static_cast<std::uint32_t>(fd);
}

struct Client {
  explicit Client(Fd socket) : fd(std::move(socket)) {}
  Fd fd;
  ByteQueue sending;  // handed to the send in flight: must not move until its CQE
  ByteQueue outbox;   // received since
  bool receiving = false;
};

class Loop {
 public:
  explicit Loop(ServerContext& ctx) : ctx_(ctx) {
    io_uring_params params{};
    // TODO(1): ask for IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
    // and fall back to no flags when the kernel says -EINVAL.
    if (const int error = io_uring_queue_init_params(1024, &ring_, &params); error < 0) {
      throw SystemError("io_uring_queue_init", -error);
    }
    buffers_ = std::make_unique<BufferRing>(ring_, g_buffers, 16 * 1024, 0);
  }
  ~Loop() {
    io_uring_queue_exit(&ring_);  // first: the kernel may still write into the buffers
    buffers_.reset();
  }

  void run() {
    // TODO(2): a poll SQE on ctx_.shutdown.fd() (tag kStop) and a multishot
    // accept on ctx_.listener (tag kAccept).
    ctx_.ready();  // given: prints "listening on"; the ring exists by now
    while (!ctx_.shutdown.requested()) {
      // TODO(3): ONE io_uring_submit_and_wait(&ring_, 1) per pass: it submits
      // what you prepared and sleeps until a completion is there. Count it
      // (enters_, ctx_.counters.wakeups); -EINTR is not an error.
      return;  // remove this line once the loop waits in the ring

      // TODO(4): reap every CQE (io_uring_for_each_cqe, then
      // io_uring_cq_advance) and count completions_:
      //  - kAccept: res is the new socket; a CQE without F_MORE means the
      //    accept must be submitted again. (-EMFILE: see the README.)
      //  - kRecv (multishot, IOSQE_BUFFER_SELECT, buf_group 0): res bytes in
      //    buffer cqe->flags >> IORING_CQE_BUFFER_SHIFT. Copy them into the
      //    outbox, then give the buffer back (buffers_->give_back). res 0:
      //    FIN. -ENOBUFS: the ring was empty. No F_MORE: submit it again
      //    (unless the peer is gone). Stop at --buffer-cap: how?
      //  - kSend: at most ONE in flight per connection. A short send: submit
      //    the rest before anything newer.
      //  - close a socket only when no request on it is still in flight.
      // --trace: one line per wakeup and per completion ("fd N: ...").
    }
    ctx_.extra_stats["enters"] = enters_;
    ctx_.extra_stats["submissions"] = submissions_;
    ctx_.extra_stats["completions"] = completions_;
    ctx_.extra_stats["buffers_recycled"] = buffers_recycled_;
    ctx_.extra_stats["enobufs"] = enobufs_;
  }

 private:
  ServerContext& ctx_;
  io_uring ring_{};
  std::unique_ptr<BufferRing> buffers_;
  std::map<int, Client> clients_;
  std::uint64_t enters_ = 0;
  std::uint64_t submissions_ = 0;
  std::uint64_t completions_ = 0;
  std::uint64_t buffers_recycled_ = 0;
  std::uint64_t enobufs_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  return run_server(argc, argv, kSpec, [](ServerContext& ctx) { Loop(ctx).run(); });
}
