// muxlab_loadgen: drives one echo server with one load and reports what it saw
// as JSON. Exit codes: 0 a clean run; 1 the run could not be done (a connection
// failed to set up, a worker failed, the JSON could not be written); 2 a bad
// flag; 3 the run was done and its JSON written, but errors were counted. bench/muxbench runs it
// once per measurement; it can also be run by hand, e.g. against a server started in another
// terminal:
//
//   muxlab_loadgen --port 9000 --mode open --rate 20000 --connections 50
#include <sys/prctl.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <latch>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net.hpp"
#include "options.hpp"
#include "proc_stats.hpp"
#include "worker.hpp"

namespace muxlab::bench {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;
constexpr int kExitErrorsCounted = 3;
// Below one message a second the schedule's period no longer fits the
// nanosecond clock arithmetic, and such a load measures nothing anyway.
constexpr double kLowestRate = 1.0;
// A worker thread busier than this inside the window is saturated: its own
// lateness, not the server's, may then be what the numbers show.
constexpr double kSaturatedUtilisation = 0.90;

struct Flags {
  LoadConfig config;
  std::string mode = "closed";
  double warmup_s = 0.5;
  double duration_s = 2.0;
  double drain_timeout_s = 5.0;
  double setup_timeout_s = 30.0;
  int server_pid = 0;
  std::string json_path;
  bool quiet = false;
};

std::string check_loopback(const std::string& host) {
  const auto address = parse_numeric_address(host, 0);
  if (address && address->is_loopback()) return {};
  return "the load generator talks to loopback only (127.0.0.0/8 or ::1), not " + host;
}

// CLI::Range lets NaN through (every comparison with NaN is false), so every
// number is first checked to be one, and finite.
std::string check_finite(const std::string& text) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
    return "not a finite number: '" + text + "'";
  return {};
}

std::int64_t seconds_to_ns(double s) {
  return static_cast<std::int64_t>(s * 1e9);
}

Flags parse(int argc, char** argv) {
  Flags f;
  LoadConfig& c = f.config;
  CLI::App app{"Load generator for the muxlab echo servers (loopback only)", "muxlab_loadgen"};
  auto ranged = [&app](const std::string& name, auto& value, const std::string& help, auto low,
                       auto high) {
    app.add_option(name, value, help)
        ->check(check_finite)
        ->check(CLI::Range(low, high))
        ->capture_default_str();
  };
  app.add_option("--host", c.host, "Server address (loopback)")
      ->check(check_loopback)
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--port",
         [&c](const std::string& text) { c.port = static_cast<std::uint16_t>(std::stoul(text)); },
         "Server port (decimal)")
      ->check(check_decimal_port)
      ->required();
  app.add_option("--mode", f.mode,
                 "closed: N connections, each with --pipeline messages in flight; "
                 "open: --rate messages/s on a fixed schedule; "
                 "churn: connect, echo one message, close")
      ->check(CLI::IsMember({"closed", "open", "churn"}))
      ->capture_default_str();
  ranged("--connections", c.connections, "Active connections (churn: operations in flight)", 1u,
         100'000u);
  ranged("--idle", c.idle, "Silent connections held open alongside the active ones", 0u,
         1'000'000u);
  ranged("--pipeline", c.pipeline, "Closed loop: messages in flight per connection", 1u, 1024u);
  ranged("--msg-size", c.msg_size, "Message size in bytes", std::size_t{1}, std::size_t{16} << 20);
  app.add_option("--rate", c.rate, "Open loop: offered messages per second, all threads together")
      ->check(check_finite)
      ->check(CLI::Range(0.0, 1e8));
  ranged("--threads", c.threads, "Generator threads (connections are split among them)", 1u, 256u);
  ranged("--warmup", f.warmup_s, "Seconds of load before the measured window", 0.0, 600.0);
  ranged("--duration", f.duration_s, "Seconds in the measured window", 0.01, 3600.0);
  ranged("--drain-timeout", f.drain_timeout_s,
         "Seconds to wait for answers still owed after the window", 0.0, 600.0);
  ranged("--setup-timeout", f.setup_timeout_s, "Seconds allowed to open the connections", 0.1,
         600.0);
  ranged("--max-messages", c.max_messages,
         "Most messages (churn: operations) one thread issues in the whole run", std::uint64_t{1},
         std::uint64_t{1} << 40);
  app.add_option(
      "--server-pid", f.server_pid,
      "Read this process's CPU time and context switches from /proc at the window's edges");
  app.add_option("--json", f.json_path, "Write the result here (default: stdout)");
  app.add_flag("--spin", c.spin,
               "Poll instead of sleeping when idle (for a generator with CPUs of its own); "
               "the time spent in empty polls is reported apart, as idle");
  app.add_flag("--quiet", f.quiet, "No summary line on stderr");

  try {
    app.parse(argc, argv);
    if (f.mode == "open" && c.rate < kLowestRate) {
      char text[64];
      std::snprintf(text, sizeof text, "%g", c.rate);
      throw CLI::ValidationError("--mode open needs --rate from 1 to 1e8 messages/s, not " +
                                 std::string(text));
    }
  } catch (const CLI::Success& e) {
    std::exit(app.exit(e));
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "muxlab_loadgen: %s\nRun with --help for usage.\n", e.what());
    std::exit(kExitUsage);
  }
  c.mode = f.mode == "open" ? Mode::kOpen : f.mode == "churn" ? Mode::kChurn : Mode::kClosed;
  c.warmup_ns = seconds_to_ns(f.warmup_s);
  c.duration_ns = seconds_to_ns(f.duration_s);
  c.drain_timeout_ns = seconds_to_ns(f.drain_timeout_s);
  c.setup_timeout_ns = seconds_to_ns(f.setup_timeout_s);
  c.threads = std::min(c.threads, c.connections);
  return f;
}

// Every connection is a descriptor; ask for the hard limit before we need it.
bool ensure_descriptors(rlim_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = std::min(limit.rlim_max, wanted);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur >= wanted;
}

unsigned share(unsigned total, unsigned parts, unsigned index) {
  return total / parts + (index < total % parts ? 1 : 0);
}

nlohmann::ordered_json percentiles_us(const LatencyHistogram& h) {
  auto us = [](std::int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  nlohmann::ordered_json j;
  j["count"] = h.count();
  j["min"] = us(h.min());
  j["mean"] = h.mean() / 1000.0;
  j["p50"] = us(h.value_at_percentile(50));
  j["p90"] = us(h.value_at_percentile(90));
  j["p99"] = us(h.value_at_percentile(99));
  j["p999"] = us(h.value_at_percentile(99.9));
  j["max"] = us(h.max());
  j["clamped"] = h.clamped();
  return j;
}

// ---------------------------------------------------------------- plan

// One worker per thread, each with its share of the connections. Rates follow
// the connections, so every connection carries the same load.
std::vector<std::unique_ptr<Worker>> plan(const LoadConfig& config) {
  std::vector<std::unique_ptr<Worker>> workers;
  std::uint64_t first_id = 0;
  for (unsigned i = 0; i < config.threads; ++i) {
    const unsigned active = share(config.connections, config.threads, i);
    const unsigned idle = share(config.idle, config.threads, i);
    const double rate = config.rate * active / config.connections;
    // Thread i starts its schedule i periods of the whole load late, so the
    // threads' sends interleave instead of coinciding.
    const auto phase = static_cast<std::int64_t>(config.rate > 0 ? i * 1e9 / config.rate : 0);
    workers.push_back(std::make_unique<Worker>(config, first_id, active, idle, rate, phase));
    first_id += std::uint64_t{1} << 40;  // stream ids of different threads never meet
  }
  return workers;
}

// ---------------------------------------------------------------- measure

// The window's edges, seen from outside the workers.
struct WindowSamples {
  std::int64_t client_cpu_ns = 0;
  rusage client_usage_from{};
  rusage client_usage_until{};
  std::optional<ProcessSample> server_from;
  std::optional<ProcessSample> server_until;
};

// The common timeline, fixed once every worker has set up: warm-up, window and
// drain from a start 2 ms away, time enough for every thread to wake from the latch.
Timeline plan_timeline(const LoadConfig& config, bool setup_failed) {
  Timeline timeline;
  const std::int64_t start = now_ns() + 2'000'000;
  timeline.start = start;
  // A failed set-up makes the run worthless: an empty timeline lets every
  // worker go straight to closing its connections.
  const bool empty = setup_failed;
  timeline.measure_from = empty ? start : start + config.warmup_ns;
  timeline.measure_until = empty ? start : timeline.measure_from + config.duration_ns;
  timeline.drain_deadline = empty ? start : timeline.measure_until + config.drain_timeout_ns;
  timeline.close_deadline = timeline.drain_deadline + 5'000'000'000;
  return timeline;
}

void sleep_until(std::int64_t t) {
  // At most a second per sleep: no duration conversion can overflow.
  for (std::int64_t left = t - now_ns(); left > 0; left = t - now_ns())
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<std::int64_t>(left, 1e9)));
}

// Samples this process (and the server, if named) at both edges of the window,
// so the CPU figures cover the window alone, not set-up, warm-up or drain.
WindowSamples sample_window(const Timeline& timeline, int server_pid) {
  WindowSamples samples;
  sleep_until(timeline.measure_from);
  samples.client_cpu_ns = self_cpu_ns();
  ::getrusage(RUSAGE_SELF, &samples.client_usage_from);
  if (server_pid > 0) samples.server_from = sample_process(server_pid);
  sleep_until(timeline.measure_until);
  samples.client_cpu_ns = self_cpu_ns() - samples.client_cpu_ns;
  ::getrusage(RUSAGE_SELF, &samples.client_usage_until);
  if (server_pid > 0) samples.server_until = sample_process(server_pid);
  return samples;
}

struct Measured {
  WindowSamples samples;
  std::string failure;  // the first worker's failure, in thread order; empty: none
};

// Runs the workers: each sets up its connections, then all wait for the common
// timeline, so no thread's load starts while another is still connecting.
Measured measure(const Flags& f, std::vector<std::unique_ptr<Worker>>& workers) {
  const auto threads = static_cast<std::ptrdiff_t>(workers.size());
  std::latch ready(threads);
  std::latch go(1);
  Timeline timeline;
  std::vector<std::string> failures(workers.size());
  std::atomic<bool> setup_failed{false};
  std::vector<std::thread> pool;
  const std::int64_t setup_deadline = now_ns() + f.config.setup_timeout_ns;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    pool.emplace_back([&, i] {
      bool counted = false;
      try {
        if (!workers[i]->setup(setup_deadline)) {
          const WorkerResult& r = workers[i]->result();
          setup_failed = true;
          failures[i] = std::to_string(r.errors.connect) +
                        " connection(s) failed to set up (connect or first echo), " +
                        std::to_string(r.connections_ready) + " ready";
        }
        counted = true;
        ready.count_down();
        go.wait();
        workers[i]->run(timeline);
      } catch (const std::exception& e) {
        failures[i] = e.what();
        // A thread that throws before counting down must not leave the others waiting.
        if (!counted) ready.count_down();
      }
    });
  }
  ready.wait();
  timeline = plan_timeline(f.config, setup_failed);
  go.count_down();

  Measured measured{sample_window(timeline, f.server_pid), {}};
  for (auto& t : pool) t.join();
  const auto failed = std::find_if(failures.begin(), failures.end(),
                                   [](const std::string& failure) { return !failure.empty(); });
  if (failed != failures.end()) measured.failure = *failed;
  return measured;
}

// ---------------------------------------------------------------- merge

struct Merged {
  WorkerResult total;
  std::vector<double> utilisation;  // per thread: busy time (CPU minus empty polls) / window
  double max_utilisation = 0;
  std::int64_t busy_ns = 0;
  double window_s = 0;
  double throughput = 0;  // answers inside the window per second
};

// Sums the workers' counts and histograms into one result; keeps each
// thread's utilisation apart, since the busiest thread is the one that may
// have limited the run.
Merged merge(const LoadConfig& config, const std::vector<std::unique_ptr<Worker>>& workers) {
  Merged m;
  m.window_s = static_cast<double>(config.duration_ns) / 1e9;
  WorkerResult& total = m.total;
  for (const auto& w : workers) {
    const WorkerResult& r = w->result();
    total.latency.merge(r.latency);
    total.send_lag.merge(r.send_lag);
    total.connections_ready += r.connections_ready;
    total.messages_issued += r.messages_issued;
    total.messages_completed += r.messages_completed;
    total.window_completed += r.window_completed;
    total.window_scheduled += r.window_scheduled;
    total.window_due_answered += r.window_due_answered;
    total.bytes_sent += r.bytes_sent;
    total.bytes_received += r.bytes_received;
    total.setup_ns = std::max(total.setup_ns, r.setup_ns);
    total.errors.add(r.errors);
    // Both are CPU times, sampled at slightly different moments: never below zero.
    const std::int64_t busy = std::max<std::int64_t>(0, r.window_cpu_ns - r.window_idle_ns);
    m.busy_ns += busy;
    m.utilisation.push_back(static_cast<double>(busy) / 1e9 / m.window_s);
  }
  m.max_utilisation = *std::max_element(m.utilisation.begin(), m.utilisation.end());
  m.throughput = static_cast<double>(total.window_completed) / m.window_s;
  return m;
}

// ---------------------------------------------------------------- emit

nlohmann::ordered_json errors_json(const Errors& e) {
  return {{"total", e.total()},
          {"connect", e.connect},
          {"mismatch", e.mismatch},
          {"eof", e.eof},
          {"reset", e.reset},
          {"timeout", e.timeout},
          {"idle_lost", e.idle_lost},
          {"unsent", e.unsent},
          {"close_timeout", e.close_timeout}};
}

nlohmann::ordered_json client_json(const LoadConfig& config, const Merged& m,
                                   const WindowSamples& samples) {
  const rusage& u0 = samples.client_usage_from;
  const rusage& u1 = samples.client_usage_until;
  return {{"cpu_s", static_cast<double>(samples.client_cpu_ns) / 1e9},
          {"busy_s", static_cast<double>(m.busy_ns) / 1e9},
          {"spin", config.spin},
          {"cpu_total_s", static_cast<double>(self_cpu_ns()) / 1e9},
          {"ctx_switches", (u1.ru_nvcsw - u0.ru_nvcsw) + (u1.ru_nivcsw - u0.ru_nivcsw)},
          {"thread_utilisation", m.utilisation},
          {"max_thread_utilisation", m.max_utilisation},
          {"saturated", m.max_utilisation > kSaturatedUtilisation}};
}

// The server's share of the window; null when no --server-pid was given or
// its /proc files could not be read at both edges.
nlohmann::ordered_json server_json(int server_pid, const WindowSamples& samples) {
  if (!samples.server_from || !samples.server_until) return nullptr;
  const ProcessSample& s0 = *samples.server_from;
  const ProcessSample& s1 = *samples.server_until;
  // Switch counts are summed over the threads alive at each edge; a thread
  // that exited in between takes its count with it, so never go below 0.
  auto grew = [](std::uint64_t from, std::uint64_t until) {
    return until > from ? until - from : 0;
  };
  return {{"pid", server_pid},
          {"cpu_s", static_cast<double>(s1.cpu_ns - s0.cpu_ns) / 1e9},
          {"voluntary_switches", grew(s0.voluntary_switches, s1.voluntary_switches)},
          {"involuntary_switches", grew(s0.involuntary_switches, s1.involuntary_switches)},
          {"threads", s1.threads}};
}

// The result document; its keys are what bench/muxbench reads.
nlohmann::ordered_json report(const Flags& f, const Merged& m, const WindowSamples& samples) {
  const LoadConfig& config = f.config;
  const WorkerResult& total = m.total;
  nlohmann::ordered_json j;
  j["tool"] = "muxlab_loadgen";
  j["mode"] = f.mode;
  j["connections"] = config.connections;
  j["idle"] = config.idle;
  j["pipeline"] = config.pipeline;
  j["msg_size"] = config.msg_size;
  j["threads"] = config.threads;
  j["offered_rate"] = config.mode == Mode::kOpen ? nlohmann::ordered_json(config.rate) : nullptr;
  j["warmup_s"] = f.warmup_s;
  j["window_s"] = m.window_s;
  j["setup_s"] = static_cast<double>(total.setup_ns) / 1e9;
  j["connections_ready"] = total.connections_ready;
  j["messages"] = {{"issued", total.messages_issued},
                   {"completed", total.messages_completed},
                   {"window_completed", total.window_completed},
                   {"window_scheduled", total.window_scheduled},
                   {"window_due_answered", total.window_due_answered}};
  j["throughput_msgs"] = m.throughput;
  j["throughput_mbps"] = m.throughput * static_cast<double>(config.msg_size) / 1e6;
  // Answers that arrived inside the window: a stall at either edge moves some
  // across it, so this wanders by rate x stall around the offered rate.
  j["achieved_rate"] = m.throughput;
  // Messages due inside the window that were answered at all (before the drain
  // deadline): exactly the offered rate when the generator kept its schedule
  // and the server lost nothing.
  j["answered_rate"] =
      config.mode == Mode::kOpen
          ? nlohmann::ordered_json(static_cast<double>(total.window_due_answered) / m.window_s)
          : nullptr;
  j["latency_us"] = percentiles_us(total.latency);
  j["send_lag_us"] = percentiles_us(total.send_lag);
  nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
  for (const auto& [value, count] : total.latency.nonzero_buckets())
    buckets.push_back({value, count});
  j["latency_histogram_ns"] = buckets;
  j["bytes"] = {{"sent", total.bytes_sent}, {"received", total.bytes_received}};
  j["errors"] = errors_json(total.errors);
  j["client"] = client_json(config, m, samples);
  j["server"] = server_json(f.server_pid, samples);
  return j;
}

// To stdout, or to `path`; false (and a line on stderr) if the file could not be written.
bool write_json(const nlohmann::ordered_json& j, const std::string& path) {
  if (path.empty()) {
    std::cout << j.dump(2) << '\n';
    return true;
  }
  std::ofstream out(path, std::ios::trunc);
  out << j.dump(2) << '\n';
  if (!out.flush()) {
    std::fprintf(stderr, "muxlab_loadgen: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

// The JSON says which kind; this line says that the run was not clean.
void print_errors(const Errors& e) {
  std::fprintf(stderr,
               "muxlab_loadgen: %lu error(s) counted (connect %lu, mismatch %lu, eof %lu, "
               "reset %lu, timeout %lu, idle_lost %lu, unsent %lu, close_timeout %lu)\n",
               static_cast<unsigned long>(e.total()), static_cast<unsigned long>(e.connect),
               static_cast<unsigned long>(e.mismatch), static_cast<unsigned long>(e.eof),
               static_cast<unsigned long>(e.reset), static_cast<unsigned long>(e.timeout),
               static_cast<unsigned long>(e.idle_lost), static_cast<unsigned long>(e.unsent),
               static_cast<unsigned long>(e.close_timeout));
}

// One line for a person at a terminal: the run at a glance.
void print_summary(const Flags& f, const Merged& m, const nlohmann::ordered_json& j) {
  std::fprintf(stderr,
               "%s: %.0f msg/s, p50 %.1f us, p99 %.1f us, max %.1f us, errors %lu, "
               "generator busiest thread %.0f%%\n",
               f.mode.c_str(), m.throughput, j["latency_us"]["p50"].get<double>(),
               j["latency_us"]["p99"].get<double>(), j["latency_us"]["max"].get<double>(),
               static_cast<unsigned long>(m.total.errors.total()), 100 * m.max_utilisation);
}

// ---------------------------------------------------------------- run

int run(const Flags& f) {
  const LoadConfig& config = f.config;
  const rlim_t descriptors = config.connections + config.idle + 64;
  if (!ensure_descriptors(descriptors)) {
    std::fprintf(stderr,
                 "muxlab_loadgen: %u connections need about %lu descriptors, more than "
                 "RLIMIT_NOFILE allows (raise it with ulimit -n)\n",
                 config.connections + config.idle, static_cast<unsigned long>(descriptors));
    return kExitUsage;
  }
  // Sleeps end on time, not up to 50 µs late: the open loop's pacing needs it.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  std::vector<std::unique_ptr<Worker>> workers = plan(config);
  const Measured measured = measure(f, workers);
  if (!measured.failure.empty()) {
    std::fprintf(stderr, "muxlab_loadgen: %s; no result\n", measured.failure.c_str());
    return kExitFailure;
  }
  const Merged merged = merge(config, workers);
  const nlohmann::ordered_json j = report(f, merged, measured.samples);
  if (!write_json(j, f.json_path)) return kExitFailure;
  const std::uint64_t errors = merged.total.errors.total();
  if (errors > 0) print_errors(merged.total.errors);
  if (!f.quiet) print_summary(f, merged, j);
  return errors > 0 ? kExitErrorsCounted : 0;
}

}  // namespace
}  // namespace muxlab::bench

int main(int argc, char** argv) {
  return muxlab::bench::run(muxlab::bench::parse(argc, argv));
}
