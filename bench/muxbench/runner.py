"""The suite: every scenario, point and server, repeated, into one results folder.

Order: repetition, then scenario, then point, then server. Each point is
measured on every server before the next point, so slow drifts of a shared
machine fall on all servers alike instead of on whichever ran last.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import machine, micro, results, summary
from .build import UNLIMITED, BuildInfo, Server
from .execute import Placement, RunError, Timing, descriptor_limit, measure
from .suite import FD_SETSIZE, SCENARIOS, Point, Preset, Scenario, spec


@dataclass
class Job:
    scenario: Scenario
    point: Point  # for the rate sweep, `rate` is set once the capacity is known
    server: Server
    rep: int


@dataclass
class NoiseGuard:
    """Runs during which other processes used more than `limit` of the
    machine's CPU are measured again, up to `retries` times, unless so many
    needed it (a quarter of the runs) that the machine is simply busy."""

    limit: float = 0.2
    retries: int = 1
    repeated: int = 0


@dataclass
class Warnings:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)


class Progress:
    """One status line: where the suite is and when it should end."""

    def __init__(self, jobs: list[Job], timing: Timing):
        self.total = len(jobs)
        self.timing = timing
        self.remaining_estimate = sum(self.estimate(job) for job in jobs)
        self.spent_estimate = 0.0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def estimate(self, job: Job) -> float:
        # Set-up of many connections dominates the idle sweep; a small
        # overhead covers process start and the stats file.
        return self.timing.warmup_s + self.timing.duration_s + 0.25 + job.point.sockets() / 4000

    def show(self, index: int, job: Job) -> None:
        elapsed = time.monotonic() - self.started
        # Scale what is left by how the estimates have fared so far.
        pace = elapsed / self.spent_estimate if self.spent_estimate > 0 else 1.0
        eta = self.remaining_estimate * pace
        text = (f"[{index + 1:>3}/{self.total}] {job.scenario.name:<8} {job.server.name:<20} "
                f"{job.point.label():<28} rep {job.rep}  {_clock(elapsed)} elapsed, "
                f"ETA {_clock(eta)}")
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def finished(self, job: Job) -> None:
        estimate = self.estimate(job)
        self.spent_estimate += estimate
        self.remaining_estimate -= estimate

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _limit_note(server: Server, point: Point, fd_limit: int) -> str | None:
    """Why this point cannot run on this server, or None."""
    if point.sockets() > server.max_clients:
        why = ""
        if server.max_clients < FD_SETSIZE:
            # select(): a descriptor numbered FD_SETSIZE or above does not fit an fd_set.
            why = f" (FD_SETSIZE = {FD_SETSIZE}: select() cannot watch higher descriptors)"
        return (f"needs {point.sockets()} connections; {server.name} holds at most "
                f"{server.max_clients}{why}")
    if point.sockets() + 64 > fd_limit:
        return f"needs {point.sockets()} descriptors; RLIMIT_NOFILE allows {fd_limit}"
    return None


class Suite:
    def __init__(self, preset: Preset, build: BuildInfo, servers: list[Server], out: Path,
                 placement: Placement, source: Path, rates: list[float] | None = None,
                 noise: NoiseGuard | None = None):
        self.preset = preset
        self.build = build
        self.servers = servers
        self.out = out
        self.raw = out / "raw"
        self.placement = placement
        self.source = source
        self.timing = Timing(preset.warmup_s, preset.duration_s, preset.drain_timeout_s)
        self.fixed_rates = rates
        self.noise = noise or NoiseGuard()
        self.capacity: float | None = None
        self.runs: list[dict] = []
        self.warnings = Warnings()
        self.interrupted = False
        self.fd_limit = descriptor_limit()

    # ------------------------------------------------------------ planning

    def plan(self) -> list[Job]:
        jobs = []
        for rep in range(1, self.preset.repetitions + 1):
            for scenario in self.preset.scenarios:
                if scenario.repetitions is not None and rep > scenario.repetitions:
                    continue
                for point in self._points(scenario):
                    jobs.extend(Job(scenario, point, server, rep)
                                for server in scenario.servers(self.servers))
        return jobs

    def _points(self, scenario: Scenario) -> list[Point]:
        entry = spec(scenario.name)
        if entry is None or not entry.takes_rates or self.fixed_rates is None:
            return scenario.points
        base = scenario.points[0]
        return [dataclasses.replace(base, rate=r, rate_fraction=None) for r in self.fixed_rates]

    # ------------------------------------------------------------ running

    def run(self) -> None:
        self.raw.mkdir(parents=True, exist_ok=True)
        record = machine.record(self.source, self.build, self.placement.describe())
        if self.build.microbench and self.preset.micro_min_time_s > 0:
            sys.stderr.write("micro-benchmarks: one select/poll/epoll_wait call vs watched fds\n")
            try:
                micro.run(self.build.microbench, self.out, self.preset.micro_min_time_s,
                          self.placement.server_cpus)
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                self.warnings.add(f"micro-benchmarks failed: {error}")
        jobs = self.plan()
        progress = Progress(jobs, self.timing)
        try:
            for index, job in enumerate(jobs):
                if job.point.rate_fraction is not None and job.point.rate is None:
                    capacity = self._capacity(job.point.connections)
                    job.point = job.point.with_rate(job.point.rate_fraction * capacity)
                progress.show(index, job)
                self._run_job(job)
                progress.finished(job)
        except KeyboardInterrupt:
            # Keep what was measured: the files below are written either way.
            self.warnings.add(f"interrupted after {len(self.runs)} of {len(jobs)} runs")
            self.interrupted = True
        finally:
            progress.close()
            self._finish(record)

    def _finish(self, record: dict) -> None:
        record["load_average_after"] = machine.load_average()
        shares = [r["foreign_cpu_share"] for r in self.runs if r["foreign_cpu_share"] != ""]
        record["foreign_cpu_share_median"] = round(statistics.median(shares), 3) if shares else None
        record["foreign_cpu_share_max"] = round(max(shares), 3) if shares else None
        record["runs_repeated_for_noise"] = self.noise.repeated
        record["noise_limit"] = self.noise.limit
        self._write(record)

    def _run_job(self, job: Job) -> None:
        name = job.scenario.name
        point_dict = dataclasses.asdict(job.point)
        note = _limit_note(job.server, job.point, self.fd_limit)
        if note:
            self.runs.append(results.placeholder_row(name, job.server.name, job.rep, point_dict,
                                                     "skipped", note))
            return
        stem = f"{name}-{job.server.name}-{job.point.label()}-rep{job.rep}"
        for attempt in range(1, self.noise.retries + 2):
            try:
                record = measure(job.server, job.point, self.timing, self.build.loadgen,
                                 self.placement, self.raw, stem)
            except RunError as error:
                self.warnings.add(f"{stem}: {error}")
                self.runs.append(results.placeholder_row(name, job.server.name, job.rep,
                                                         point_dict, "failed", str(error)[:200]))
                return
            record["scenario"] = name
            record["rep"] = job.rep
            record["attempt"] = attempt
            if record["foreign_cpu_share"] <= self.noise.limit or attempt > self.noise.retries:
                break
            if self.noise.repeated >= max(5, len(self.runs) // 4):
                # Busy all the time, not now and then: measuring again would only
                # double the time. The noise stays visible in foreign_cpu_share.
                self.warnings.add("the machine stayed busy: runs are no longer measured "
                                  "again; see foreign_cpu_share in runs.csv")
                self.noise.retries = 0
                break
            # Something else took a good share of the CPUs during this run:
            # keep it in raw/ for the record, and measure again.
            self.noise.repeated += 1
            noisy = self.raw / f"{stem}-disturbed{attempt}.json"
            noisy.write_text(json.dumps(record, indent=1) + "\n")
        (self.raw / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        row = results.run_row(name, job.rep, record, f"raw/{stem}.json")
        self.runs.append(row)
        self._check(stem, record, row)

    def _check(self, stem: str, record: dict, row: dict) -> None:
        gen = record["loadgen"]
        if gen["client"]["saturated"]:
            self.warnings.add(
                f"{stem}: the generator's busiest thread was "
                f"{100 * gen['client']['max_thread_utilisation']:.0f}% busy: it may be the "
                f"bottleneck here, not the server")
        if row["errors"]:
            detail = {k: v for k, v in gen["errors"].items() if v and k != "total"}
            self.warnings.add(f"{stem}: {row['errors']} errors {detail}")
        if not row["bytes_match"]:
            self.warnings.add(f"{stem}: the generator read {row['bytes_echoed']} echoed bytes but "
                              f"the server counted {row['server_bytes_out']} bytes_out")

    def _capacity(self, wanted: int) -> float:
        """The best closed-loop throughput with `wanted` connections."""
        if self.capacity is not None:
            return self.capacity
        sources = {s.name for s in SCENARIOS if s.capacity_source}
        measured = [r for r in self.runs if r["scenario"] in sources and r["status"] == "ok"
                    and r["connections"] == wanted and r["idle"] == 0]
        if not measured:
            sys.stderr.write(f"\ncalibrating: closed loop with {wanted} connections\n")
            point = Point(connections=wanted)
            calibration = Timing(self.timing.warmup_s, max(0.3, self.timing.duration_s), 3.0)
            for server in self.servers:
                if _limit_note(server, point, self.fd_limit):
                    continue
                try:
                    record = measure(server, point, calibration, self.build.loadgen,
                                     self.placement, self.raw, f"calibration-{server.name}")
                except RunError as error:
                    self.warnings.add(f"calibration on {server.name}: {error}")
                    continue
                measured.append({"server": server.name,
                                 "throughput_msgs": record["loadgen"]["throughput_msgs"]})
        by_server: dict[str, list[float]] = {}
        for row in measured:
            by_server.setdefault(row["server"], []).append(float(row["throughput_msgs"]))
        medians = [statistics.median(v) for v in by_server.values()]
        self.capacity = max(medians) if medians else 10000.0
        return self.capacity

    # ------------------------------------------------------------ output

    def _write(self, record: dict) -> None:
        (self.out / "machine.json").write_text(json.dumps(record, indent=2) + "\n")
        suite = {
            "preset": self.preset.name,
            "repetitions": self.preset.repetitions,
            "warmup_s": self.preset.warmup_s,
            "duration_s": self.preset.duration_s,
            "drain_timeout_s": self.preset.drain_timeout_s,
            "capacity_msgs": self.capacity,
            "servers": [{"name": s.name,
                         "max_clients": s.max_clients if s.max_clients < UNLIMITED else None,
                         "args": list(s.args),
                         "reference": s.reference or None} for s in self.servers],
            "scenarios": {s.name: s.title for s in self.preset.scenarios},
            "warnings": self.warnings.lines,
        }
        (self.out / "suite.json").write_text(json.dumps(suite, indent=2) + "\n")
        results.write_csv(self.out / "runs.csv", results.RUN_COLUMNS, self.runs)
        results.write_csv(self.out / "results.csv", results.RESULT_COLUMNS,
                          results.aggregate(self.runs))
        summary.write(self.out)
