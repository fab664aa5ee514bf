"""What the bench-smoke tests share about a server they started themselves."""

from __future__ import annotations

import argparse
import os
import re
import select
import subprocess
import time
from pathlib import Path

LISTENING = re.compile(rb"listening on (\S+):(\d+)\n")


def wait_for_port(server: subprocess.Popen, deadline: float, exact: bool = False) -> int | None:
    """The port of the server's `listening on HOST:PORT` line, read from its stdout
    before `deadline` (time.monotonic()); None if it never came. `exact`: that
    line, for 127.0.0.1, must be all the server printed."""
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(server.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        match = LISTENING.fullmatch(seen) if exact else LISTENING.search(seen)
        if match and (not exact or match.group(1) == b"127.0.0.1"):
            return int(match.group(2))
    return None


def arguments() -> argparse.Namespace:
    """--build-info BUILD/bench/muxbench-build.json --out DIR (created)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-info", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args
