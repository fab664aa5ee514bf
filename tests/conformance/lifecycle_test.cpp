// Flags, exit codes, signals and the stats file of the server contract.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.hpp"
#include "kernel_view.hpp"

namespace muxlab::test {
namespace {

class LifecycleTest : public ServerTest {};

TEST_P(LifecycleTest, HelpExitsZero) {
  const auto result = run_command(GetParam().path, {"--help"});
  EXPECT_TRUE(result.status.exited);
  EXPECT_EQ(result.status.code, 0);
  EXPECT_NE(result.out.find("--port"), std::string::npos) << result.out;
}

TEST_P(LifecycleTest, UnknownFlagExitsTwoWithMessage) {
  const auto result = run_command(GetParam().path, {"--no-such-flag"});
  EXPECT_EQ(result.status.code, 2);
  EXPECT_FALSE(result.err.empty());
}

TEST_P(LifecycleTest, BadValueExitsTwoWithMessage) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--port", "70000"}, {"--port", "nine"}, {"--host", "not-an-address"}}) {
    const auto result = run_command(GetParam().path, args);
    EXPECT_EQ(result.status.code, 2) << args[0] << " " << args[1];
    EXPECT_FALSE(result.err.empty()) << args[0] << " " << args[1];
  }
}

TEST_P(LifecycleTest, PortInUseExitsOneNamingTheAddress) {
  // Hold a port, then ask the server for it.
  Fd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(holder.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(holder.get(), 1), 0);
  ::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&address), &length);
  const std::string port = std::to_string(ntohs(address.sin_port));

  const auto result = run_command(GetParam().path, {"--port", port});
  EXPECT_EQ(result.status.code, 1);
  EXPECT_NE(result.err.find("127.0.0.1:" + port), std::string::npos) << result.err;
}

TEST_P(LifecycleTest, ListensOnIpv6Loopback) {
  ServerProcess server({GetParam().path, {"--host", "::1"}, std::nullopt});
  EXPECT_NE(server.stdout_text().find("listening on [::1]:"), std::string::npos)
      << server.stdout_text();
  EXPECT_EQ(server.stop(SIGTERM).code, 0);
}

void expect_clean_stop(ServerTest& test, ServerProcess& server, int sig) {
  std::vector<Fd> clients;
  for (int i = 0; i < 10; ++i) {
    clients.push_back(connect_to(server.port()));
    ASSERT_EQ(round_trip(clients.back().get(), "ping"), "ping");
  }
  const ExitStatus status = server.stop(sig);
  EXPECT_TRUE(status.exited) << "still running 10 s after the signal";
  EXPECT_EQ(status.code, 0) << server.stderr_text();
  EXPECT_EQ(status.signal, 0);
  // Every connection was closed by the server.
  for (auto& client : clients) {
    EXPECT_NE(wait_for_end(client.get(), Clock::now() + 5s), Ending::kOpen);
  }
  (void)test;
}

TEST_P(LifecycleTest, SigtermWithOpenConnectionsExitsZeroAndWritesStats) {
  const std::string stats = temp_path("stats");
  ServerProcess& s = start({"--stats-json", stats});
  expect_clean_stop(*this, s, SIGTERM);
  const auto json = read_json(stats);
  for (const char* key : {"server", "wakeups", "events", "accepts", "reads", "writes", "ctl_calls",
                          "bytes_in", "bytes_out", "connections_total", "connections_peak"}) {
    EXPECT_TRUE(json.contains(key)) << "stats file lacks " << key;
  }
  EXPECT_GE(json.value("bytes_out", 0), 40);  // 10 clients x "ping"
  EXPECT_EQ(json.value("bytes_in", 0), json.value("bytes_out", 0));
  EXPECT_GE(json.value("connections_total", 0), 10);
  EXPECT_GE(json.value("connections_peak", 0), 10);
  ::unlink(stats.c_str());
}

// The signal ends a wait like any other wakeup and is counted as one, so that
// a trace and the stats file agree (the labs count both). A wait cut short by
// the signal (EINTR) is retried, and the shutdown pipe then answers it.
TEST_P(LifecycleTest, ShutdownOfAnIdleServerIsCountedAsAWakeup) {
  const std::string stats = temp_path("stats");
  ServerProcess& s = start({"--stats-json", stats});
  // Every thread asleep: in its wait, with nothing to do (no client came).
  ASSERT_TRUE(wait_until([&] { return !any_thread_runnable(s.pid()); }, Clock::now() + 5s));
  ASSERT_EQ(s.stop(SIGTERM).code, 0) << s.stderr_text();
  const auto json = read_json(stats);
  EXPECT_GE(json.value("wakeups", 0), 1);
  EXPECT_EQ(json.value("accepts", -1), 0);
  ::unlink(stats.c_str());
}

TEST_P(LifecycleTest, SigintExitsZero) {
  ServerProcess& s = start();
  expect_clean_stop(*this, s, SIGINT);
}

TEST_P(LifecycleTest, TraceShowsWakeupsAndEvents) {
  ServerProcess& s = start({"--trace"});
  Fd client = connect_to(s.port());
  ASSERT_EQ(round_trip(client.get(), "traced"), "traced");
  client.reset();
  ASSERT_EQ(s.stop(SIGTERM).code, 0);
  const std::string trace = s.stderr_text();
  EXPECT_NE(trace.find("wakeup"), std::string::npos) << trace;
  EXPECT_NE(trace.find("fd "), std::string::npos) << trace;
}

MUXLAB_INSTANTIATE(Conformance, LifecycleTest);

}  // namespace
}  // namespace muxlab::test
