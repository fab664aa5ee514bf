// io_uring_server's own behaviour: one wait reaps many completions, a
// multishot receive that ends is re-armed, the ring set-up fallback and the
// "no io_uring here" exit, and the two-sends, no-rearm and early-recycle
// pitfalls. The server sleeps in io_uring_enter(), which /proc shows as the
// wait channel io_cqring_wait (kernel_view.hpp).
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include "client.hpp"
#include "kernel_view.hpp"
#include "process.hpp"
#include "trace_text.hpp"

namespace muxlab::test {
namespace {

constexpr std::size_t kBuffer = 16 * 1024;  // one provided buffer

#define SKIP_WITHOUT_IO_URING()                                                            \
  do {                                                                                     \
    if (const std::string why = io_uring_unavailable(); !why.empty()) GTEST_SKIP() << why; \
  } while (0)

struct Run {
  std::unique_ptr<ServerProcess> server;
  std::string stats = temp_path("stats");
  ~Run() { ::unlink(stats.c_str()); }
  nlohmann::json stop() {
    EXPECT_EQ(server->stop(SIGTERM).code, 0) << server->stderr_text();
    return read_json(stats);
  }
};

std::unique_ptr<Run> start(std::vector<std::string> args) {
  auto run = std::make_unique<Run>();
  args.insert(args.end(), {"--stats-json", run->stats});
  run->server =
      std::make_unique<ServerProcess>(ServerProcess::Launch{IO_URING_SERVER_PATH, args, {}});
  return run;
}

// "hi" and its echo, then `message` arriving all at once while the server sleeps.
void send_at_once(Run& run, int fd, const std::string& message) {
  ASSERT_EQ(round_trip(fd, "hi"), "hi");
  ASSERT_TRUE(wait_until_ring_idle(run.server->pid(), Clock::now() + 5s));
  ASSERT_TRUE(arrive_at_once(*run.server, fd, message, Clock::now() + 5s));
}

TEST(Completion, OneWaitReapsManyCompletions) {
  SKIP_WITHOUT_IO_URING();
  auto run = start({"--trace"});
  Fd client = connect_to(run->server->port());
  const std::string message = pattern(40 * 1024, 4);
  ASSERT_EQ(round_trip(client.get(), "hi"), "hi");
  ASSERT_TRUE(wait_until_ring_idle(run->server->pid(), Clock::now() + 5s));
  const std::size_t mark = run->server->stderr_text().size();
  ASSERT_TRUE(arrive_at_once(*run->server, client.get(), message, Clock::now() + 5s));
  ASSERT_TRUE(receive(client.get(), message.size(), Clock::now() + 10s) == message);
  ASSERT_TRUE(wait_until_ring_idle(run->server->pid(), Clock::now() + 5s));
  const std::string trace = run->server->stderr_text().substr(mark);
  // 40 KiB at once: the multishot receive fills three buffers (16+16+8 KiB)
  // and all three completions come back from a single wait, with F_MORE: the
  // request goes on, nothing was submitted again.
  // (The wait that SIGCONT interrupted returns with nothing: skipped.)
  const auto first_wakeup = trace.rfind("wakeup:", trace.find("bytes in buffer"));
  ASSERT_NE(first_wakeup, std::string::npos) << trace;
  const auto second_wakeup = trace.find("wakeup:", first_wakeup + 1);
  const std::string batch = trace.substr(first_wakeup, second_wakeup - first_wakeup);
  EXPECT_EQ(count_occurrences(batch, "bytes in buffer"), 3) << trace;
  EXPECT_EQ(count_occurrences(batch, ", F_MORE"), 3) << trace;
  EXPECT_EQ(count_occurrences(trace, "receive re-armed"), 0) << trace;
  const auto stats = run->stop();
  EXPECT_EQ(stats.value("ctl_calls", -1), 0);
  EXPECT_EQ(stats.value("buffers_recycled", 0), stats.value("reads", -1));
  EXPECT_EQ(stats.value("defer_taskrun", 0), 1);
}

// Two provided buffers for 64 KiB arriving at once: the receive fills both,
// then meets an empty ring and ends with -ENOBUFS, no F_MORE. The buffers come
// back as their bytes are copied, the receive is submitted again, and so on
// until all of it is echoed.
TEST(Completion, ReceiveEndedByEnobufsIsRearmed) {
  SKIP_WITHOUT_IO_URING();
  auto run = start({"--ring-buffers", "2"});
  Fd client = connect_to(run->server->port());
  const std::string message = pattern(64 * 1024, 9);
  send_at_once(*run, client.get(), message);
  EXPECT_TRUE(receive(client.get(), message.size(), Clock::now() + 10s) == message);
  const auto stats = run->stop();
  EXPECT_GE(stats.value("enobufs", 0), 1);
  EXPECT_GE(stats.value("recv_rearms", 0), 1);
}

TEST(Completion, PlainRingFallbackStillEchoes) {
  SKIP_WITHOUT_IO_URING();
  auto run = start({"--plain-ring"});
  Fd client = connect_to(run->server->port());
  const std::string message = pattern(1 << 20, 2);
  const auto result = pump(client.get(), message, message.size(), Clock::now() + 20s);
  EXPECT_TRUE(result.received == message);
  EXPECT_EQ(run->stop().value("defer_taskrun", -1), 0);
}

TEST(Completion, BadBufferValuesExitTwo) {
  for (const char* value : {"0", "3", "65536", "many"}) {
    const auto result = run_command(IO_URING_SERVER_PATH, {"--ring-buffers", value});
    EXPECT_EQ(result.status.code, 2) << value;
    EXPECT_NE(result.err.find(value), std::string::npos) << result.err;
  }
  for (const char* value : {"-1", "100", "67108865", "big"}) {
    const auto result = run_command(IO_URING_SERVER_PATH, {"--send-buffer", value});
    EXPECT_EQ(result.status.code, 2) << value;
    EXPECT_NE(result.err.find(value), std::string::npos) << result.err;
  }
}

// Without io_uring (a container's seccomp filter, io_uring_disabled) the
// server must say so in one line and exit 1 before announcing itself. A
// seccomp filter in the child makes io_uring_setup fail with EPERM.
TEST(Completion, WithoutIoUringExitsOneWithOneClearLine) {
  int out[2], err[2];
  ASSERT_EQ(::pipe(out), 0);
  ASSERT_EQ(::pipe(err), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
      ::_exit(99);
    }
    ::execl(IO_URING_SERVER_PATH, IO_URING_SERVER_PATH, "--port", "0", nullptr);
    ::_exit(98);
  }
  ::close(out[1]);
  ::close(err[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto drain = [](int fd) {
    std::string text;
    char chunk[4096];
    for (ssize_t n; (n = ::read(fd, chunk, sizeof chunk)) > 0;) text.append(chunk, n);
    ::close(fd);
    return text;
  };
  const std::string stdout_text = drain(out[0]);
  const std::string stderr_text = drain(err[0]);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << stderr_text;
  EXPECT_EQ(stdout_text.find("listening on"), std::string::npos) << stdout_text;
  EXPECT_EQ(count_occurrences(stderr_text, "\n"), 1) << stderr_text;
  EXPECT_NE(stderr_text.find("io_uring is not available"), std::string::npos) << stderr_text;
  EXPECT_NE(stderr_text.find("Operation not permitted"), std::string::npos) << stderr_text;
}

// --- pitfalls ----------------------------------------------------------------

// With a cap far above the volume, the server reads everything while the
// client reads nothing, so its socket fills. Both socket buffers are fixed
// small: left to autotuning (tcp_rmem may allow 32 MiB) the client's could
// swallow the whole flood, and with the server's at 8 KiB (16 KiB of room,
// as Linux doubles it) every send waits for room, again and again: sends in
// flight together always meet, not only when one straddles the moment the
// socket fills up.
struct Flood {
  std::string payload = pattern(4 << 20, 21);
  std::string echoed;
  nlohmann::json stats;
};

Flood flood(const std::vector<std::string>& args) {
  Flood result;
  auto run = start(args);
  Fd client = connect_to(run->server->port());
  const int small = 64 * 1024;
  EXPECT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  EXPECT_TRUE(send_all(client.get(), result.payload, Clock::now() + 20s));
  result.echoed = receive(client.get(), result.payload.size(), Clock::now() + 20s);
  result.stats = run->stop();
  return result;
}

TEST(PitfallTwoSends, SendsWaitingTogetherReorderTheEcho) {
  SKIP_WITHOUT_IO_URING();
  const Flood run = flood({"--buffer-cap", std::to_string(64 << 20), "--send-buffer", "8192",
                           "--pitfall", "two-sends"});
  EXPECT_GE(run.stats.value("sends_in_flight_peak", 0), 2);
  // Every byte came back, but not in the order it was sent.
  EXPECT_EQ(run.echoed.size(), run.payload.size());
  EXPECT_FALSE(run.echoed == run.payload) << "the echo came back in order";
  std::string sorted_echo = run.echoed, sorted_payload = run.payload;
  std::sort(sorted_echo.begin(), sorted_echo.end());
  std::sort(sorted_payload.begin(), sorted_payload.end());
  EXPECT_TRUE(sorted_echo == sorted_payload) << "bytes were lost, not reordered";
}

TEST(PitfallTwoSends, DefaultModeKeepsOneSendInFlight) {
  SKIP_WITHOUT_IO_URING();
  const Flood run = flood({"--buffer-cap", std::to_string(64 << 20), "--send-buffer", "8192"});
  EXPECT_EQ(run.stats.value("sends_in_flight_peak", 0), 1);
  // Short sends did happen, and their rest went out first.
  EXPECT_GE(run.stats.value("short_sends", 0), 1);
  EXPECT_TRUE(run.echoed == run.payload);
}

TEST(PitfallNoRearm, ReceiveEndedByEnobufsStallsTheConnection) {
  SKIP_WITHOUT_IO_URING();
  auto run = start({"--ring-buffers", "2", "--pitfall", "no-rearm"});
  Fd client = connect_to(run->server->port());
  const std::string message = pattern(64 * 1024, 9);
  send_at_once(*run, client.get(), message);
  // Two buffers' worth comes back; then -ENOBUFS ended the receive, nobody
  // submitted it again, and the rest waits in the socket while the server
  // sleeps in the ring, for ever: not even new bytes wake it for this client.
  EXPECT_TRUE(receive(client.get(), 2 * kBuffer, Clock::now() + 5s) ==
              message.substr(0, 2 * kBuffer));
  ASSERT_TRUE(send_all(client.get(), "!", Clock::now() + 5s));
  EXPECT_TRUE(wait_until(
      [&] {
        return unread_by_server(run->server->port(), client.get()) ==
                   message.size() - 2 * kBuffer + 1 &&
               main_thread_state(run->server->pid()).asleep_in_ring_wait();
      },
      Clock::now() + 5s));
  EXPECT_EQ(receive(client.get(), 1, Clock::now() + 200ms), "");
  EXPECT_GE(run->stop().value("enobufs", 0), 1);
}

// Client A sends without reading until the server holds bytes over the cap in
// their provided buffers; then client B's messages go through the ring.
struct Overwrite {
  bool a_exact = false;
  bool b_exact = true;
  std::size_t sent = 0;
  nlohmann::json stats;
};

Overwrite hold_then_reuse(const std::vector<std::string>& args) {
  Overwrite result;
  auto run = start(args);
  Fd a = connect_to(run->server->port());
  Fd b = connect_to(run->server->port());
  EXPECT_EQ(round_trip(b.get(), "b"), "b");
  const std::string payload = pattern(64 << 20, 31);
  // Until nothing more goes in: the server's output is full and it holds the
  // rest, and every socket buffer on the way is full too.
  for (auto quiet = Clock::now() + 300ms; Clock::now() < quiet && result.sent < payload.size();) {
    const ssize_t n = ::send(a.get(), payload.data() + result.sent,
                             std::min<std::size_t>(64 * 1024, payload.size() - result.sent),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      result.sent += static_cast<std::size_t>(n);
      quiet = Clock::now() + 300ms;
    } else {
      pollfd p{a.get(), POLLOUT, 0};
      ::poll(&p, 1, 10);
    }
  }
  // Whole buffers from B, twice round the ring: each one of them is refilled.
  for (int i = 0; i < 16; ++i) {
    const std::string message = pattern(kBuffer, 100 + i);
    result.b_exact = round_trip(b.get(), message) == message && result.b_exact;
  }
  result.a_exact =
      receive(a.get(), result.sent, Clock::now() + 20s) == payload.substr(0, result.sent);
  result.stats = run->stop();
  return result;
}

TEST(PitfallEarlyRecycle, HeldBytesAreOverwrittenByAnotherClient) {
  SKIP_WITHOUT_IO_URING();
  const Overwrite run = hold_then_reuse(
      {"--ring-buffers", "8", "--buffer-cap", "20000", "--pitfall", "early-recycle"});
  EXPECT_GT(run.sent, 0u);
  EXPECT_TRUE(run.b_exact);
  EXPECT_FALSE(run.a_exact) << "the held bytes survived";
}

// The same small ring without the pitfall: A's bytes over the cap wait, B is
// echoed meanwhile. A may keep at most half the ring: the multishot receive
// can fill every free buffer before its cancel lands, and a reader that never
// reads would then stall everyone else.
TEST(PitfallEarlyRecycle, DefaultModeKeepsHeldBuffersUntilTheirBytesAreCopied) {
  SKIP_WITHOUT_IO_URING();
  const Overwrite run = hold_then_reuse({"--ring-buffers", "8", "--buffer-cap", "20000"});
  EXPECT_TRUE(run.b_exact);
  EXPECT_TRUE(run.a_exact);
  // A's bursts fill the ring (8 buffers before the cancel lands): the rule,
  // not luck, kept half of it free.
  EXPECT_GE(run.stats.value("held_buffers_peak", 0), 1);
  EXPECT_LE(run.stats.value("held_buffers_peak", 99), 4);
  EXPECT_GE(run.stats.value("spilled_buffers", 0), 1);
}

}  // namespace
}  // namespace muxlab::test
