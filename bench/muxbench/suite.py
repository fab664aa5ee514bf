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


def _pingpong(connections: list[int]) -> Scenario:
    points = [Point(connections=c) for c in connections]
    return Scenario("pingpong", "Ping-pong: 64 B messages, one in flight per connection", points)


def _rate(fractions: list[float], connections: int) -> Scenario:
    """Offered rates are fractions of the best closed-loop throughput measured
    at the same connection count. With a thousand connections select() and
    poll() scan every descriptor on each wakeup, so they saturate at a fraction
    of the rate epoll reaches."""
    points = [Point(mode="open", connections=connections, rate_fraction=f) for f in fractions]
    title = f"Open loop: latency vs offered rate ({connections} connections, 64 B)"
    return Scenario("rate", title, points)


def _idle(idle: list[int], active: int = 10) -> Scenario:
    points = [Point(connections=active, idle=i) for i in idle]
    return Scenario("idle", f"{active} busy connections beside many idle ones", points)


def _msgsize(sizes: list[int], connections: int = 10) -> Scenario:
    points = [Point(connections=connections, msg_size=s) for s in sizes]
    return Scenario("msgsize", f"Message size sweep ({connections} connections, ping-pong)",
                    points)


def _handler(block_us: list[int], work_us: list[int], connections: int = 32) -> Scenario:
    points = [Point(connections=connections, block_us=b) for b in block_us]
    points += [Point(connections=connections, work_us=w) for w in work_us]
    title = f"Request cost: blocking (--block-us) vs CPU (--work-us), {connections} connections"
    return Scenario("handler", title, points)


def _churn(concurrency: list[int]) -> Scenario:
    points = [Point(mode="churn", connections=c) for c in concurrency]
    return Scenario("churn", "Churn: connect, echo 64 B, close", points)


C10K_CONNECTIONS = 10_000


def _c10k(rates: list[float], connections: int = C10K_CONNECTIONS,
          repetitions: int | None = None) -> Scenario:
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
    return Scenario("c10k", title, points, repetitions)


def _cores(concurrency: int = 8) -> Scenario:
    """Connection churn (connect, echo 64 B, close), where the front door is
    the work: msg/s, wakeups and context switches per accepted connection and
    the connections each loop took, per listener mode and --threads."""
    points = [Point(mode="churn", connections=concurrency)]
    return Scenario("cores", "Many cores: one epoll loop per thread, by listener mode", points,
                    variants=loop_per_thread_variants)


def preset(name: str) -> Preset:
    if name == "smoke":
        scenarios = [
            _pingpong([4]),
            # A fixed rate far below any server's capacity: the smoke test
            # checks that the achieved rate is within 1% of it.
            Scenario("rate", "Open loop at a fixed low rate",
                     [Point(mode="open", connections=8, rate=8000)]),
            _idle([50], active=4),
            _msgsize([16384], connections=2),
            _handler([200], [], connections=4),
            _churn([2]),
            # The c10k machinery on a small scale: many connections, each far
            # below one message per window.
            _c10k([1500], connections=600),
        ]
        return Preset(name, repetitions=1, warmup_s=0.1, duration_s=0.5,
                      micro_min_time_s=0.002, drain_timeout_s=3.0, scenarios=scenarios)
    if name == "quick":
        scenarios = [
            _pingpong([1, 1000]),
            _rate([0.05, 1.0], 1000),
            _idle([0, 3000]),
            _msgsize([16384]),
            _handler([1000], [50]),
            _c10k([20000], repetitions=1),
            _cores(),
        ]
        return Preset(name, repetitions=2, warmup_s=0.1, duration_s=0.15,
                      micro_min_time_s=0.01, scenarios=scenarios)
    if name == "default":
        scenarios = [
            # Within 8 minutes on two cores: 10 000 connections are the c10k
            # scenario's, not the idle sweep's (setting them up is most of a run).
            _pingpong([1, 10, 100, 1000]),
            _rate([0.05, 0.15, 0.4, 0.8, 1.2], 1000),
            _idle([0, 900, 3000]),
            _msgsize([16, 65536]),
            _handler([1000], [50]),
            _churn([8]),
            _c10k([5000, 40000], repetitions=1),
            _cores(),
        ]
        return Preset(name, repetitions=3, warmup_s=0.2, duration_s=0.4,
                      micro_min_time_s=0.05, scenarios=scenarios)
    if name == "full":
        scenarios = [
            _pingpong([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000]),
            _rate([0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.55, 0.7, 0.85, 1.0, 1.15, 1.3],
                  1000),
            _idle([0, 100, 300, 900, 3000, 6000, 10000, 15000]),
            _msgsize([16, 64, 256, 1024, 4096, 16384, 65536]),
            _handler([100, 1000], [20, 100]),
            _churn([1, 8, 64]),
            _c10k([5000, 10000, 20000, 35000, 50000], repetitions=3),
            _cores(8),
        ]
        return Preset(name, repetitions=5, warmup_s=1.0, duration_s=3.0,
                      micro_min_time_s=0.3, drain_timeout_s=10.0, scenarios=scenarios)
    raise ValueError(f"unknown preset {name!r}")


PRESETS = ("smoke", "quick", "default", "full")
