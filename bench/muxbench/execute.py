"""One measurement: a fresh server, one run of the load generator, the numbers.

The server is started with --port 0 and --stats-json on its own CPU, the
generator on the others. The generator samples the server's /proc entries at
the edges of the measured window; the runner adds the server's whole-life
CPU time and context switches (wait4's rusage covers every thread, even ones
that have exited) and the counters of its stats file.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .build import Server
from .suite import Point

LISTENING = re.compile(rb"listening on (.+):(\d+)\s*$")


class RunError(Exception):
    """The server or the generator did not do its part; the run has no numbers."""


@dataclass
class Placement:
    """Which CPUs the server and the generator may use (empty: anywhere)."""

    server_cpus: frozenset[int]
    client_cpus: frozenset[int]
    spin: bool = False  # the generator polls instead of sleeping

    def __post_init__(self) -> None:
        # Spinning is only fair on CPUs the server does not use.
        separate = bool(self.client_cpus) and not (self.client_cpus & self.server_cpus)
        self.spin = self.spin and separate

    @staticmethod
    def choose(server: str | None = None, client: str | None = None,
               spin: bool = True) -> Placement:
        available = sorted(os.sched_getaffinity(0))
        if server or client:
            return Placement(_cpu_list(server, available), _cpu_list(client, available), spin)
        if len(available) < 2:
            return Placement(frozenset(), frozenset())
        # The server gets the upper half (one CPU on a two-core machine): a
        # single-threaded server uses one anyway, and the generator must
        # not steal cycles from it.
        half = len(available) // 2
        return Placement(frozenset(available[half:]), frozenset(available[:half]), spin)

    def client_threads(self) -> int:
        return max(1, len(self.client_cpus) or 1)

    def describe(self) -> str:
        if not self.server_cpus and not self.client_cpus:
            return "not pinned (one CPU available)"
        wait = "polling" if self.spin else "sleeping"
        return (f"server on CPUs {_cpu_text(self.server_cpus)}, generator ({wait} when idle) "
                f"on CPUs {_cpu_text(self.client_cpus)}")


def _cpu_list(text: str | None, available: list[int]) -> frozenset[int]:
    if not text:
        return frozenset(available)
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def _cpu_text(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _child_setup(cpus: frozenset[int]):
    """Runs in the child between fork and exec: pin it, give it descriptors."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


def descriptor_limit() -> int:
    """The most descriptors a child of ours can open (its hard limit)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@dataclass
class Timing:
    warmup_s: float
    duration_s: float
    drain_timeout_s: float


class ServerProcess:
    """A server started fresh for one run, stopped with SIGTERM, reaped with wait4."""

    def __init__(self, server: Server, point: Point, stats_path: Path, stderr_path: Path,
                 cpus: frozenset[int]):
        args = [server.path, "--port", "0", "--stats-json", str(stats_path), *server.args]
        if point.work_us:
            args += ["--work-us", str(point.work_us)]
        if point.block_us:
            args += ["--block-us", str(point.block_us)]
        self.argv = args
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, preexec_fn=_child_setup(cpus))
        self.rusage: resource.struct_rusage | None = None
        self.exit_code: int | None = None
        try:
            self.port = self._wait_for_port(deadline=time.monotonic() + 15)
        except BaseException:
            self.kill()
            raise

    def _wait_for_port(self, deadline: float) -> int:
        out = self.proc.stdout
        assert out is not None
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            for line in seen.splitlines():
                if match := LISTENING.match(line):
                    return int(match.group(2))
        raise RunError(f"{self.argv[0]} never printed 'listening on HOST:PORT' (got {seen!r})")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        if self.exit_code is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == self.proc.pid:
                self.rusage = usage
                self.exit_code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.exit_code  # so Popen does not reap it again
                break
            if time.monotonic() > deadline:
                self.kill()
                raise RunError(f"{self.argv[0]} did not exit within {timeout:.0f} s of SIGTERM")
            time.sleep(0.005)
        self._close()

    def kill(self) -> None:
        if self.exit_code is not None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.exit_code = self.proc.returncode
        self._close()

    def _close(self) -> None:
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


def setup_timeout(point: Point) -> float:
    """Seconds to open the connections: poll() over 10 000 descriptors, accepting
    one connection per call, takes many seconds on its own."""
    return 20 + point.sockets() / 200


def loadgen_args(loadgen: str, point: Point, timing: Timing, port: int, pid: int,
                 placement: Placement, json_path: Path) -> list[str]:
    args = [
        loadgen, "--port", str(port), "--server-pid", str(pid), "--json", str(json_path),
        "--mode", point.mode, "--connections", str(point.connections), "--idle", str(point.idle),
        "--pipeline", str(point.pipeline), "--msg-size", str(point.msg_size),
        "--threads", str(min(placement.client_threads(), point.connections)),
        "--warmup", str(timing.warmup_s), "--duration", str(timing.duration_s),
        "--drain-timeout", str(timing.drain_timeout_s),
        "--setup-timeout", str(setup_timeout(point)), "--quiet",
    ]
    if point.mode == "open":
        assert point.rate is not None
        args += ["--rate", str(point.rate)]
    if placement.spin:
        args.append("--spin")
    return args


def system_busy() -> tuple[float, float]:
    """(busy CPU seconds, wall seconds) of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks, time.monotonic()


def measure(server: Server, point: Point, timing: Timing, loadgen: str, placement: Placement,
            run_dir: Path, stem: str) -> dict:
    """Runs one measurement and returns its raw record (also written as JSON)."""
    stats_path = run_dir / f"{stem}.stats.json"
    loadgen_path = run_dir / f"{stem}.loadgen.json"
    stderr_path = run_dir / f"{stem}.server.stderr"
    for stale in (stats_path, loadgen_path):
        stale.unlink(missing_ok=True)
    busy_before, wall_before = system_busy()
    srv = ServerProcess(server, point, stats_path, stderr_path, placement.server_cpus)
    try:
        args = loadgen_args(loadgen, point, timing, srv.port, srv.proc.pid, placement,
                            loadgen_path)
        # Set-up, the load, the drain, the generator's 5 s to close, and slack.
        budget = setup_timeout(point) + timing.warmup_s + timing.duration_s + \
            timing.drain_timeout_s + 5 + 30
        gen = subprocess.run(args, capture_output=True, text=True, timeout=budget,
                             preexec_fn=_child_setup(placement.client_cpus))
    except subprocess.TimeoutExpired as error:
        srv.kill()
        raise RunError(f"the load generator did not finish in {error.timeout:.0f} s") from error
    except BaseException:
        srv.kill()
        raise
    srv.stop()
    busy_after, wall_after = system_busy()
    # Exit 3: the run finished and its JSON was written, but errors were
    # counted (a pitfall row, a server that dropped clients): a measured row
    # whose errors column says so, not a failed run.
    if gen.returncode not in (0, 3) or not loadgen_path.exists():
        raise RunError(f"the load generator failed ({gen.returncode}): {gen.stderr.strip()}")
    if srv.exit_code != 0:
        raise RunError(f"{server.name} exited with {srv.exit_code} after SIGTERM: "
                       f"{stderr_path.read_text(errors='replace')[-500:]}")
    generator = json.loads(loadgen_path.read_text())
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError) as error:
        raise RunError(f"{server.name} exited 0 but its stats file is unreadable: {error}") from error
    usage = srv.rusage
    assert usage is not None
    server_total_cpu = usage.ru_utime + usage.ru_stime
    # Whatever the machine did besides this server and this generator, as a
    # share of all its CPUs: the noise these numbers were measured under.
    elapsed = wall_after - wall_before
    foreign = busy_after - busy_before - server_total_cpu - generator["client"]["cpu_total_s"]
    record = {
        "server": server.name,
        "point": point.__dict__,
        "server_argv": srv.argv,
        "loadgen_argv": args,
        "placement": placement.describe(),
        "loadgen": generator,
        "stats": stats,
        "server_rusage": {
            "cpu_s": server_total_cpu,
            "voluntary_switches": usage.ru_nvcsw,
            "involuntary_switches": usage.ru_nivcsw,
            "max_rss_kib": usage.ru_maxrss,
        },
        "elapsed_s": elapsed,
        "foreign_cpu_share": max(0.0, foreign / elapsed / (os.cpu_count() or 1)),
    }
    for path in (stats_path, loadgen_path):
        path.unlink()
    if stderr_path.stat().st_size == 0:
        stderr_path.unlink()
    return record
