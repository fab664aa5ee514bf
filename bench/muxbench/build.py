"""The build the benchmark runs: where the generator is, and which servers exist.

CMake writes bench/muxbench-build.json into the build folder at generate time.
Its server entries keep the registry's format, the one MUXLAB_SERVERS uses
for the conformance suite: ``name=PATH[,max_clients=N]``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# A server that does not say otherwise is held to this many clients at once.
UNLIMITED = 1 << 30


@dataclass(frozen=True)
class Server:
    name: str
    path: str
    max_clients: int = UNLIMITED
    args: tuple[str, ...] = ()  # extra flags for this server only
    # Non-empty: a reference row built on a production library (its label,
    # e.g. "libuv 1.44.2"), drawn dashed and named as a library, not a technique.
    reference: str = ""


def parse_server(entry: str) -> Server:
    """``name=PATH[,max_clients=N][,reference=LABEL]`` or just ``PATH`` (named
    after the file)."""
    fields = entry.split(",")
    head = fields[0]
    if "=" in head:
        name, path = head.split("=", 1)
    else:
        path = head
        name = re.sub(r"[^A-Za-z0-9_]", "_", Path(head).name)
    max_clients = UNLIMITED
    reference = ""
    for extra in fields[1:]:
        key, _, value = extra.partition("=")
        if key == "max_clients":
            max_clients = int(value)
        elif key == "reference":
            reference = value or name
        else:
            raise ValueError(f"unknown server attribute {key!r} in {entry!r}")
    if not os.access(path, os.X_OK):
        raise ValueError(f"{name}: {path} is not an executable file")
    return Server(name, path, max_clients, reference=reference)


@dataclass
class BuildInfo:
    loadgen: str
    microbench: str | None
    servers: list[Server]
    build_type: str
    compiler: str
    cxx_flags: str
    sanitize: str


def load_build_info(path: Path) -> BuildInfo:
    data = json.loads(path.read_text())
    microbench = data.get("microbench")
    if microbench and not os.access(microbench, os.X_OK):
        microbench = None
    return BuildInfo(
        loadgen=data["loadgen"],
        microbench=microbench,
        servers=[parse_server(entry) for entry in data["servers"]],
        build_type=data.get("build_type", ""),
        compiler=data.get("compiler", ""),
        cxx_flags=data.get("cxx_flags", ""),
        sanitize=data.get("sanitize", ""),
    )
