"""The Google Benchmark micro-benchmarks: run them, keep their JSON, write micro.csv."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

MICRO_COLUMNS = ["call", "fds", "ns_per_call", "iterations"]


def run(executable: str, out: Path, min_time_s: float, cpus: frozenset[int]) -> None:
    raw = out / "micro.json"

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    subprocess.run([executable, f"--muxlab_min_time={min_time_s}",
                    f"--benchmark_out={raw}", "--benchmark_out_format=json"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   preexec_fn=pin, timeout=600)
    rows = []
    for bench in json.loads(raw.read_text())["benchmarks"]:
        if bench.get("error_occurred") or bench.get("run_type", "iteration") != "iteration":
            continue
        call, _, fds = bench["name"].partition("/")
        rows.append({"call": call, "fds": int(fds.split("/")[0]),
                     "ns_per_call": bench["real_time"], "iterations": bench["iterations"]})
    with open(out / "micro.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MICRO_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
