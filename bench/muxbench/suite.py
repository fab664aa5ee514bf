"""What the benchmark measures: scenarios, their load points, and the presets.

A Point is one load, told identically to every server. A Scenario is a sweep
of points along one axis (connections, offered rate, idle connections, message
size, request cost). A Preset picks the sweeps, the repetitions and the window
lengths: `smoke` (the ctest, seconds), `quick` (about a minute), `default`
(about five minutes on two cores) and `full` (longer, finer).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass

from .build import Server

# select() cannot watch a descriptor numbered 1024 or above (FD_SETSIZE); the
# charts draw this line where the idle and connection sweeps pass it.
FD_SETSIZE = 1024


@dataclass(frozen=True)
class Point:
    """One load: what the generator does and what the server is asked to cost."""

    mode: str = "closed"  # closed | open | churn
    connections: int = 1  # active connections (churn: operations in flight)
    idle: int = 0  # silent connections held open alongside
    pipeline: int = 1  # closed loop: messages in flight per connection
    msg_size: int = 64  # bytes
    rate: float | None = None  # open loop: offered messages per second
    rate_fraction: float | None = None  # open loop: a fraction of the measured capacity
    work_us: int = 0  # server burns this much CPU per read chunk
    block_us: int = 0  # server sleeps this long per read chunk

    def sockets(self) -> int:
        """Client connections the server must hold at once."""
        return self.connections + self.idle

    def label(self) -> str:
        parts = [self.mode, f"c{self.connections}"]
        if self.idle:
            parts.append(f"idle{self.idle}")
        if self.pipeline != 1:
            parts.append(f"p{self.pipeline}")
        parts.append(f"{self.msg_size}B")
        if self.rate is not None:
            parts.append(f"r{self.rate:.0f}")
        if self.work_us:
            parts.append(f"work{self.work_us}")
        if self.block_us:
            parts.append(f"block{self.block_us}")
        return "-".join(parts)

    def with_rate(self, rate: float) -> Point:
        return dataclasses.replace(self, rate=round(rate))


@dataclass
class Scenario:
    name: str  # the `scenario` column of results.csv
    title: str  # the chart's title
    points: list[Point]
    # Fewer repetitions than the preset's, for a scenario whose every run is
    # long (c10k sets up ten thousand connections per run). None: the preset's.
    repetitions: int | None = None
    # When set, the scenario runs these variants of each server instead of
    # the server itself (the same executable with other flags, named apart).
    variants: Callable[[Server], list[Server]] | None = None

    def servers(self, servers: list[Server]) -> list[Server]:
        if self.variants is None:
            return servers
        return [variant for server in servers for variant in self.variants(server)]


# The server the cores scenario sweeps, and how new connections reach its loops.
LOOP_PER_THREAD = "epoll_loop_per_thread"
LISTENER_MODES = ("reuseport", "exclusive", "shared")


def core_counts(cpus: int) -> list[int]:
    """--threads values for the cores scenario: 1, powers of two and the CPU
    count itself, up to the number of CPUs; and 4 even on smaller machines, so
    a herd of more than two shows."""
    counts = {1, cpus, 4}
    counts.update(2 ** k for k in range(1, cpus.bit_length()) if 2 ** k <= cpus)
    return sorted(c for c in counts if c <= max(cpus, 4))


def loop_per_thread_variants(server: Server, cpus: int | None = None) -> list[Server]:
    """epoll_loop_per_thread once per listener mode and thread count, named
    NAME:MODE:tN; no variant of any other server."""
    if server.name != LOOP_PER_THREAD:
        return []
    cpus = cpus or len(os.sched_getaffinity(0))
    return [Server(f"{server.name}:{mode}:t{threads}", server.path, server.max_clients,
                   server.args + ("--threads", str(threads), "--listener", mode))
            for mode in LISTENER_MODES for threads in core_counts(cpus)]


@dataclass
class Preset:
    name: str
    repetitions: int
    warmup_s: float
    duration_s: float
    scenarios: list[Scenario]
    micro_min_time_s: float
    drain_timeout_s: float = 5.0


# ---------------------------------------------------------------- the sweeps
# Each builds a scenario's chart title and load points from a preset's arguments.


def _pingpong(connections: list[int]) -> tuple[str, list[Point]]:
    points = [Point(connections=c) for c in connections]
    return "Ping-pong: 64 B messages, one in flight per connection", points


def _rate(connections: int, fractions: list[float] | None = None,
          fixed: float | None = None) -> tuple[str, list[Point]]:
    """Offered rates are fractions of the best closed-loop throughput measured
    at the same connection count. With a thousand connections select() and
    poll() scan every descriptor on each wakeup, so they saturate at a fraction
    of the rate epoll reaches. `fixed`: one rate in messages per second instead."""
    if fixed is not None:
        return "Open loop at a fixed low rate", [Point(mode="open", connections=connections,
                                                       rate=fixed)]
    points = [Point(mode="open", connections=connections, rate_fraction=f) for f in fractions]
    return f"Open loop: latency vs offered rate ({connections} connections, 64 B)", points


def _idle(idle: list[int], active: int = 10) -> tuple[str, list[Point]]:
    points = [Point(connections=active, idle=i) for i in idle]
    return f"{active} busy connections beside many idle ones", points


def _msgsize(sizes: list[int], connections: int = 10) -> tuple[str, list[Point]]:
    points = [Point(connections=connections, msg_size=s) for s in sizes]
    return f"Message size sweep ({connections} connections, ping-pong)", points


def _handler(block_us: list[int], work_us: list[int],
             connections: int = 32) -> tuple[str, list[Point]]:
    points = [Point(connections=connections, block_us=b) for b in block_us]
    points += [Point(connections=connections, work_us=w) for w in work_us]
    title = f"Request cost: blocking (--block-us) vs CPU (--work-us), {connections} connections"
    return title, points


def _churn(concurrency: list[int]) -> tuple[str, list[Point]]:
    points = [Point(mode="churn", connections=c) for c in concurrency]
    return "Churn: connect, echo 64 B, close", points


C10K_CONNECTIONS = 10_000


def _c10k(rates: list[float], connections: int = C10K_CONNECTIONS) -> tuple[str, list[Point]]:
    """Many slow clients: every connection sends on its own low-rate schedule.

    The generator's open loop deals the messages due out to its connections in
    turn, so connection i sends every connections/rate seconds at its own phase
    (1000 s⁻¹ over 10 000 connections: one message per connection every 10 s);
    latency counts from the intended send time. select() cannot take part:
    descriptors numbered FD_SETSIZE (1024) and above do not fit its fd_set, so
    the runner records it as skipped. poll() pays a scan of every descriptor on
    each wakeup, the epoll and io_uring servers should not."""
    points = [Point(mode="open", connections=connections, rate=r) for r in rates]
    title = (f"c10k: {connections:,} connections, each on its own low-rate open-loop "
             "schedule (64 B)")
    return title, points


def _cores(concurrency: int = 8) -> tuple[str, list[Point]]:
    """Connection churn (connect, echo 64 B, close), where the front door is
    the work: msg/s, wakeups and context switches per accepted connection and
    the connections each loop took, per listener mode and --threads."""
    points = [Point(mode="churn", connections=concurrency)]
    return "Many cores: one epoll loop per thread, by listener mode", points


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Table:
    """A scenario's table in summary.md: the points down, these figures across."""

    heading: str  # the heading of the column that tells the points apart
    figures: tuple[tuple[str, str], ...]  # (results.csv column, heading) of each figure


@dataclass(frozen=True)
class ScenarioSpec:
    """All the tool knows about one scenario, in one place. The runner, the
    charts and the summary ask this entry rather than compare names, so a new
    scenario is one more entry in SCENARIOS (and, if no drawing fits it, one
    more drawing in plot.py)."""

    name: str  # the `scenario` column of results.csv and the chart's file name
    sweep: Callable[..., tuple[str, list[Point]]]  # (title, points) from a preset's arguments
    # Preset name -> the sweep's arguments (plus `repetitions`, to run fewer
    # than the preset does). A preset not named here leaves the scenario out.
    presets: dict[str, dict]
    x: str  # the results.csv column its points differ in (handler: the derived "case")
    chart: str  # which drawing of plot.py draws it
    table: Table | None = None  # its summary.md table; None: none
    # The closed-loop sweep by connections: its throughput is the capacity
    # open-loop rates are fractions of, and its counters feed the cost chart.
    capacity_source: bool = False
    takes_rates: bool = False  # `run --rates` replaces its offered rates
    variants: Callable[[Server], list[Server]] | None = None  # see Scenario.variants

    def scenario(self, preset_name: str) -> Scenario | None:
        if preset_name not in self.presets:
            return None
        arguments = dict(self.presets[preset_name])
        repetitions = arguments.pop("repetitions", None)
        title, points = self.sweep(**arguments)
        return Scenario(self.name, title, points, repetitions, self.variants)


_LATENCY = (("p50_us", "p50 µs"), ("p99_us", "p99 µs"))

SCENARIOS = (
    ScenarioSpec(
        "pingpong", _pingpong,
        {"smoke": dict(connections=[4]),
         "quick": dict(connections=[1, 1000]),
         "default": dict(connections=[1, 10, 100, 1000]),
         "full": dict(connections=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000])},
        x="connections", chart="connection_sweep", capacity_source=True,
        table=Table("connections", (
            ("throughput_msgs", "msg/s"), *_LATENCY,
            ("server_cpu_us_per_msg", "server CPU µs/msg"), ("wakeups_per_msg", "wakeups/msg"),
            ("syscalls_per_msg", "syscalls/msg"), ("ctl_per_msg", "epoll_ctl/msg"),
            ("client_util_max", "generator busy")))),
    ScenarioSpec(
        "rate", _rate,
        # smoke: a fixed rate far below any server's capacity: the smoke test
        # checks that the achieved rate is within 1% of it.
        {"smoke": dict(connections=8, fixed=8000),
         "quick": dict(connections=1000, fractions=[0.05, 1.0]),
         "default": dict(connections=1000, fractions=[0.05, 0.15, 0.4, 0.8, 1.2]),
         "full": dict(connections=1000, fractions=[0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4,
                                                   0.55, 0.7, 0.85, 1.0, 1.15, 1.3])},
        x="offered_rate", chart="offered_rate", takes_rates=True,
        table=Table("offered msg/s", (
            ("achieved_rate", "achieved msg/s"), *_LATENCY, ("p999_us", "p99.9 µs"),
            ("max_us", "max µs"), ("client_util_max", "generator busy")))),
    ScenarioSpec(
        "idle", _idle,
        {"smoke": dict(idle=[50], active=4),
         "quick": dict(idle=[0, 3000]),
         # 10 000 connections are the c10k scenario's: setting them up is
         # most of a run, and the default suite must fit 8 minutes on two cores.
         "default": dict(idle=[0, 900, 3000]),
         "full": dict(idle=[0, 100, 300, 900, 3000, 6000, 10000, 15000])},
        x="idle", chart="idle_sweep",
        table=Table("idle connections", (
            ("throughput_msgs", "msg/s"), ("p99_us", "p99 µs"),
            ("server_cpu_us_per_msg", "server CPU µs/msg")))),
    ScenarioSpec(
        "msgsize", _msgsize,
        {"smoke": dict(sizes=[16384], connections=2),
         "quick": dict(sizes=[16384]),
         "default": dict(sizes=[16, 65536]),
         "full": dict(sizes=[16, 64, 256, 1024, 4096, 16384, 65536])},
        x="msg_size", chart="size_sweep",
        table=Table("message bytes", (
            ("throughput_mbps", "MB/s"), ("throughput_msgs", "msg/s"), ("p99_us", "p99 µs")))),
    ScenarioSpec(
        "handler", _handler,
        {"smoke": dict(block_us=[200], work_us=[], connections=4),
         "quick": dict(block_us=[1000], work_us=[50]),
         "default": dict(block_us=[1000], work_us=[50]),
         "full": dict(block_us=[100, 1000], work_us=[20, 100])},
        x="case", chart="cost_bars",
        table=Table("request cost", (
            ("throughput_msgs", "msg/s"), *_LATENCY, ("server_cpu_s", "server CPU s")))),
    ScenarioSpec(
        "churn", _churn,
        {"smoke": dict(concurrency=[2]),
         "default": dict(concurrency=[8]),
         "full": dict(concurrency=[1, 8, 64])},
        x="connections", chart="concurrency_bars",
        table=Table("at a time", (("throughput_msgs", "connections/s"), ("p99_us", "p99 µs")))),
    ScenarioSpec(
        "c10k", _c10k,
        # smoke: the c10k machinery on a small scale: many connections, each
        # far below one message per window. Every run sets up thousands of
        # connections, so the larger presets repeat it less.
        {"smoke": dict(rates=[1500], connections=600),
         "quick": dict(rates=[20000], repetitions=1),
         "default": dict(rates=[5000, 40000], repetitions=1),
         "full": dict(rates=[5000, 10000, 20000, 35000, 50000], repetitions=3)},
        x="offered_rate", chart="slow_clients",
        table=Table("offered msg/s", (
            ("answered_rate", "answered msg/s"), *_LATENCY, ("p999_us", "p99.9 µs"),
            ("server_cpu_us_per_msg", "server CPU µs/msg"),
            ("send_lag_p99_us", "generator lag p99 µs"), ("client_util_max", "generator busy")))),
    ScenarioSpec(
        "cores", _cores,
        {"quick": {}, "default": {}, "full": dict(concurrency=8)},
        x="connections", chart="listener_modes", variants=loop_per_thread_variants),
)


def spec(name: str) -> ScenarioSpec | None:
    """The registry entry of a scenario by its name; None for one it does not know."""
    return next((s for s in SCENARIOS if s.name == name), None)


# What each preset repeats and how long its windows are.
_PRESETS = {
    "smoke": dict(repetitions=1, warmup_s=0.1, duration_s=0.5, micro_min_time_s=0.002,
                  drain_timeout_s=3.0),
    "quick": dict(repetitions=2, warmup_s=0.1, duration_s=0.15, micro_min_time_s=0.01),
    "default": dict(repetitions=3, warmup_s=0.2, duration_s=0.4, micro_min_time_s=0.05),
    "full": dict(repetitions=5, warmup_s=1.0, duration_s=3.0, micro_min_time_s=0.3,
                 drain_timeout_s=10.0),
}


def preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}")
    scenarios = [s for s in (entry.scenario(name) for entry in SCENARIOS) if s is not None]
    return Preset(name, scenarios=scenarios, **_PRESETS[name])


PRESETS = tuple(_PRESETS)
