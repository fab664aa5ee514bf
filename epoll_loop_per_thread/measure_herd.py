#!/usr/bin/env python3
"""The herd in numbers: context switches per accepted connection, per listener mode.

    python3 epoll_loop_per_thread/measure_herd.py BUILD_DIR [--threads 4] [--connections 2000]

For each --listener mode it starts epoll_loop_per_thread on a free loopback
port, opens and closes CONNECTIONS connections one after another (each one
round trip of one byte, so every loop is asleep when the next arrives), and
reads the loops' voluntary context switches from /proc/PID/task/*/status
before and after. A thread woken for nothing still pays a switch, whether or
not its epoll_wait returned to user space, so this is the herd's real cost.
The server's own stats (--stats-json) give wakeups and accept_eagain.
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
from pathlib import Path


def loop_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if not (task / "comm").read_text().startswith("loop"):
            continue
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def measure(server: Path, mode: str, threads: int, connections: int) -> dict:
    stats = Path(tempfile.mkstemp(suffix=".json")[1])
    proc = subprocess.Popen([str(server), "--port", "0", "--threads", str(threads),
                             "--listener", mode, "--stats-json", str(stats)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        before = loop_switches(proc.pid)
        for _ in range(connections):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"x")
                if client.recv(1) != b"x":
                    raise RuntimeError("no echo")
        after = loop_switches(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    counters = json.loads(stats.read_text())
    stats.unlink()
    accepts = counters["accepts"]
    return {
        "mode": mode,
        "accepts": accepts,
        "switches_per_connection": (after - before) / accepts,
        "wakeups_per_connection": counters["wakeups"] / accepts,
        "accept_eagain_per_connection": counters["accept_eagain"] / accepts,
        "connections_per_thread": [counters[f"thread{t}_accepts"] for t in range(threads)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    server = args.build_dir / "epoll_loop_per_thread" / "epoll_loop_per_thread"
    rows = [measure(server, mode, args.threads, args.connections)
            for mode in ("reuseport", "exclusive", "shared")]
    print(f"{'mode':10} {'switches/conn':>13} {'wakeups/conn':>12} {'eagain/conn':>11}  "
          "connections per thread")
    for r in rows:
        print(f"{r['mode']:10} {r['switches_per_connection']:13.2f} "
              f"{r['wakeups_per_connection']:12.2f} {r['accept_eagain_per_connection']:11.2f}  "
              f"{r['connections_per_thread']}")
    shared = rows[2]["switches_per_connection"]
    for r in rows[:2]:
        print(f"shared / {r['mode']}: {shared / r['switches_per_connection']:.2f}x "
              "the context switches per accepted connection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
