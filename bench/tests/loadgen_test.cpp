// The generator checks every echoed byte, counts what goes wrong, and keeps
// its open-loop schedule through a stall: one worker against a small
// in-process echo server that misbehaves on purpose.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "fd.hpp"
#include "load.hpp"
#include "net.hpp"
#include "proc_stats.hpp"
#include "process.hpp"
#include "worker.hpp"

namespace muxlab::bench {
namespace {

enum class Fault { kNone, kFlipByte, kExtraByte, kCloseEarly, kResetEarly, kStall };

constexpr std::uint64_t kFaultAt = 200;  // stream offset where a fault strikes
constexpr std::size_t kMessage = 64;
// The stall strikes at message 200: 100 ms into an open loop at 2000 msg/s.
constexpr std::uint64_t kStallAt = 1 + 200 * kMessage;
constexpr auto kStall = std::chrono::milliseconds(100);

// Echoes one connection, with `fault` at kFaultAt, until the peer closes.
class FaultyEchoServer {
 public:
  explicit FaultyEchoServer(Fault fault)
      : listener_(listen_tcp("127.0.0.1", 0)), thread_([this, fault] { serve(fault); }) {}
  ~FaultyEchoServer() {
    stop_ = true;
    thread_.join();
  }
  std::uint16_t port() const {
    const std::string address = local_address(listener_.get());
    return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }
  std::uint64_t bytes_out() const { return bytes_out_; }

 private:
  bool wait_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    while (!stop_) {
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void serve(Fault fault) {
    if (!wait_readable(listener_.get())) return;
    Fd conn(::accept(listener_.get(), nullptr, nullptr));
    std::vector<char> buffer(4097);  // room for the extra byte
    std::uint64_t offset = 0;
    while (wait_readable(conn.get())) {
      const ssize_t n = ::recv(conn.get(), buffer.data(), buffer.size() - 1, 0);
      if (n <= 0) return;
      auto size = static_cast<std::size_t>(n);
      if (fault == Fault::kStall && offset <= kStallAt && kStallAt < offset + size) {
        std::this_thread::sleep_for(kStall);
      }
      const bool strikes = offset <= kFaultAt && kFaultAt < offset + size;
      if (strikes && fault == Fault::kFlipByte) buffer[kFaultAt - offset] ^= 0x20;
      if (strikes && fault == Fault::kExtraByte) buffer[size++] = 'x';
      if (strikes && (fault == Fault::kCloseEarly || fault == Fault::kResetEarly)) {
        if (fault == Fault::kResetEarly) {
          const linger abort{1, 0};  // close() now sends RST instead of FIN
          ::setsockopt(conn.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
        }
        return;
      }
      offset += static_cast<std::uint64_t>(n);
      bytes_out_ += static_cast<std::uint64_t>(::send(conn.get(), buffer.data(), size, 0));
    }
  }

  Fd listener_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> bytes_out_{0};
  std::thread thread_;
};

// `late_ns`: the worker starts that long after the schedule did, as a generator
// thread that was descheduled would.
WorkerResult run_against(Fault fault, std::uint64_t* server_bytes_out = nullptr,
                         Mode mode = Mode::kClosed, std::int64_t window_ns = 100'000'000,
                         std::int64_t late_ns = 0) {
  FaultyEchoServer server(fault);
  LoadConfig config;
  config.port = server.port();
  config.msg_size = kMessage;
  config.mode = mode;
  const double rate = mode == Mode::kOpen ? 2000 : 0;
  Worker worker(config, 0, 1, 0, rate, 0);
  EXPECT_TRUE(worker.setup(now_ns() + 5'000'000'000));
  Timeline t;
  t.start = now_ns() + 1'000'000;
  t.measure_from = t.start;
  t.measure_until = t.start + window_ns;
  t.drain_deadline = t.measure_until + 1'000'000'000;
  t.close_deadline = t.drain_deadline + 1'000'000'000;
  if (late_ns > 0)
    std::this_thread::sleep_for(std::chrono::nanoseconds(t.start + late_ns - now_ns()));
  worker.run(t);
  if (server_bytes_out != nullptr) *server_bytes_out = server.bytes_out();
  return worker.result();
}

TEST(LoadgenErrors, ACorrectEchoHasNoErrorsAndEveryByteCounted) {
  std::uint64_t server_out = 0;
  const WorkerResult r = run_against(Fault::kNone, &server_out);
  EXPECT_EQ(r.errors.total(), 0u);
  EXPECT_GT(r.messages_completed, 10u);
  EXPECT_EQ(r.bytes_received, r.bytes_sent);
  EXPECT_EQ(r.bytes_received, server_out);
  EXPECT_EQ(r.latency.count(), r.window_completed);
}

struct FaultCase {
  const char* name;
  Fault fault;
  std::uint64_t Errors::*kind;  // the one counter the fault must raise, once
};

class LoadgenFaults : public ::testing::TestWithParam<FaultCase> {};

TEST_P(LoadgenFaults, AreCountedOnceAsTheirKind) {
  const WorkerResult r = run_against(GetParam().fault);
  EXPECT_EQ(r.errors.*(GetParam().kind), 1u);
  EXPECT_EQ(r.errors.total(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    LoadgenErrors, LoadgenFaults,
    ::testing::Values(FaultCase{"FlippedByteIsAMismatch", Fault::kFlipByte, &Errors::mismatch},
                      FaultCase{"ExtraByteIsAMismatch", Fault::kExtraByte, &Errors::mismatch},
                      FaultCase{"EarlyHangUpIsAShortRead", Fault::kCloseEarly, &Errors::eof},
                      FaultCase{"ResetIsAReset", Fault::kResetEarly, &Errors::reset}),
    [](const ::testing::TestParamInfo<FaultCase>& param) { return param.param.name; });

// Messages answered at least this late.
std::uint64_t slower_than(const LatencyHistogram& h, std::int64_t ns) {
  std::uint64_t count = 0;
  for (const auto& [value, n] : h.nonzero_buckets()) count += value >= ns ? n : 0;
  return count;
}

// Coordinated omission: a closed loop stops sending while the server stalls,
// so one slow answer is all it records. The open loop keeps its schedule and
// charges every message that fell due during the stall.
TEST(LoadgenLatency, TheOpenLoopChargesAStallToEveryMessageDueDuringIt) {
  constexpr std::int64_t kWindow = 500'000'000;
  const WorkerResult open = run_against(Fault::kStall, nullptr, Mode::kOpen, kWindow);
  EXPECT_EQ(open.errors.total(), 0u);
  EXPECT_EQ(open.window_scheduled, 1000u);  // 2000 msg/s for 0.5 s, exactly
  EXPECT_EQ(open.latency.count(), 1000u);
  // About 200 messages fell due during the 100 ms stall; half waited 50 ms or more.
  EXPECT_GE(slower_than(open.latency, 40'000'000), 80u);
  EXPECT_GE(open.latency.value_at_percentile(90), 20'000'000);

  const WorkerResult closed = run_against(Fault::kStall, nullptr, Mode::kClosed, kWindow);
  EXPECT_EQ(closed.errors.total(), 0u);
  EXPECT_GE(closed.latency.max(), 90'000'000);
  EXPECT_LE(slower_than(closed.latency, 40'000'000), 3u);
}

// A generator that wakes up after the whole window has passed still owes its
// schedule: every message due in the window is sent, and charged from the time
// it was due.
TEST(LoadgenLatency, ALateGeneratorStillSendsTheWholeSchedule) {
  constexpr std::int64_t kWindow = 50'000'000;
  constexpr std::int64_t kLate = 80'000'000;
  const WorkerResult r = run_against(Fault::kNone, nullptr, Mode::kOpen, kWindow, kLate);
  EXPECT_EQ(r.errors.total(), 0u);
  EXPECT_EQ(r.window_scheduled, 100u);  // 2000 msg/s for 50 ms
  EXPECT_EQ(r.window_due_answered, 100u);
  EXPECT_EQ(r.latency.count(), 100u);
  // The first message was due 80 ms before anything was sent.
  EXPECT_GE(r.latency.max(), kLate);
}

// The command line: every numeric flag is checked before anything runs, and a
// run where something failed says so in its exit code.
// MUXLAB_LOADGEN overrides the generator under test (to try another build).
test::CommandResult loadgen(std::vector<std::string> args) {
  const char* other = std::getenv("MUXLAB_LOADGEN");
  const std::string path = other != nullptr && *other != '\0' ? other : MUXLAB_LOADGEN_PATH;
  return test::run_command(path, args, std::chrono::seconds(10));
}

TEST(LoadgenCommandLine, AbsurdNumbersExitTwoNamingTheValue) {
  const std::vector<std::vector<std::string>> cases{{"--duration", "nan"},
                                                    {"--duration", "inf"},
                                                    {"--duration", "-1"},
                                                    {"--warmup", "nan"},
                                                    {"--drain-timeout", "inf"},
                                                    {"--setup-timeout", "nan"},
                                                    {"--mode", "open", "--rate", "nan"},
                                                    {"--mode", "open", "--rate", "inf"},
                                                    {"--mode", "open", "--rate", "-5"},
                                                    {"--mode", "open", "--rate", "1e-300"},
                                                    {"--mode", "open", "--rate", "0.001"},
                                                    {"--port", "0x10"},
                                                    {"--port", ""},
                                                    {"--port", "-1"}};
  for (auto args : cases) {
    const std::string value = args.back();
    if (args[0] != "--port") args.insert(args.begin(), {"--port", "1"});
    const auto r = loadgen(args);
    EXPECT_TRUE(r.status.exited) << args[args.size() - 2] << " " << value << ": hung";
    EXPECT_EQ(r.status.code, 2) << args[args.size() - 2] << " " << value << "\n" << r.err;
    EXPECT_NE(r.err.find(value), std::string::npos) << r.err;
  }
}

// A port where nothing listens: nothing worked, so the exit code says so.
TEST(LoadgenCommandLine, NothingListeningExitsNonZeroSayingWhy) {
  std::uint16_t port = 0;
  {
    Fd probe = listen_tcp("127.0.0.1", 0);
    const std::string address = local_address(probe.get());
    port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }  // closed: the port is free, connections to it are refused
  const auto r = loadgen({"--port", std::to_string(port), "--duration", "0.05", "--warmup", "0",
                          "--setup-timeout", "2", "--json", "/dev/null"});
  EXPECT_TRUE(r.status.exited);
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_NE(r.err.find("connect"), std::string::npos) << r.err;
}

// Errors counted during a run that did start (here: the server hangs up
// early) make the exit code 3, with the reason on stderr.
TEST(LoadgenCommandLine, CountedErrorsExitNonZero) {
  FaultyEchoServer server(Fault::kCloseEarly);
  const auto r = loadgen({"--port", std::to_string(server.port()), "--duration", "0.2", "--warmup",
                          "0", "--drain-timeout", "1", "--json", "/dev/null"});
  EXPECT_TRUE(r.status.exited);
  EXPECT_EQ(r.status.code, 3) << r.err;  // ran to the end, but not cleanly
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
}

// CPU time of threads that have exited still counts: the process total, not a
// sum over the threads alive at the moment of sampling.
TEST(LoadgenProcStats, CpuOfExitedThreadsIsKept) {
  const auto before = sample_process(::getpid());
  ASSERT_TRUE(before);
  std::thread([] {
    const std::int64_t until = self_cpu_ns() + 300'000'000;
    while (self_cpu_ns() < until) {
    }
  }).join();
  const auto after = sample_process(::getpid());
  ASSERT_TRUE(after);
  EXPECT_GE(after->cpu_ns - before->cpu_ns, 200'000'000) << "the exited thread's CPU time vanished";
}

}  // namespace
}  // namespace muxlab::bench
