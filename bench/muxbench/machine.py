"""machine.json: what the numbers were measured on.

Everything here is read from the kernel, git and the build description; a
value the machine does not expose (a cloud VM often has no cpufreq governor)
is recorded as null rather than guessed.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
from pathlib import Path

from .build import BuildInfo


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _mitigations() -> dict[str, str]:
    folder = Path("/sys/devices/system/cpu/vulnerabilities")
    if not folder.is_dir():
        return {}
    return {entry.name: entry.read_text().strip() for entry in sorted(folder.iterdir())}


def _git(source: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _memory_gib() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / (1 << 20), 1)
    return None


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def record(source: Path, build: BuildInfo, placement: str) -> dict:
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "cpu_model": _cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "mitigations": _mitigations(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "clocksource": _read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "tcp_tw_reuse": _read("/proc/sys/net/ipv4/tcp_tw_reuse"),
        "somaxconn": _read("/proc/sys/net/core/somaxconn"),
        "descriptor_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "commit": _git(source, "rev-parse", "HEAD"),
        "commit_dirty": bool(status) if status is not None else None,
        "compiler": build.compiler,
        "build_type": build.build_type,
        "cxx_flags": build.cxx_flags,
        "sanitize": build.sanitize or None,
        "placement": placement,
        "python": platform.python_version(),
        "load_average_before": load_average(),
    }
