"""summary.md: the results folder's numbers as Markdown tables, one per scenario.

Written with every run and printable again with `python3 -m muxbench summary
FOLDER`, so a write-up can quote figures straight from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from .results import read_csv

# (scenario, the column that tells the points apart, its heading, the figures to show)
TABLES = [
    ("pingpong", "connections", "connections",
     [("throughput_msgs", "msg/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"),
      ("server_cpu_us_per_msg", "server CPU µs/msg"), ("wakeups_per_msg", "wakeups/msg"),
      ("syscalls_per_msg", "syscalls/msg"), ("ctl_per_msg", "epoll_ctl/msg"),
      ("client_util_max", "generator busy")]),
    ("rate", "offered_rate", "offered msg/s",
     [("achieved_rate", "achieved msg/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"),
      ("p999_us", "p99.9 µs"), ("max_us", "max µs"), ("client_util_max", "generator busy")]),
    ("idle", "idle", "idle connections",
     [("throughput_msgs", "msg/s"), ("p99_us", "p99 µs"),
      ("server_cpu_us_per_msg", "server CPU µs/msg")]),
    ("msgsize", "msg_size", "message bytes",
     [("throughput_mbps", "MB/s"), ("throughput_msgs", "msg/s"), ("p99_us", "p99 µs")]),
    ("handler", "case", "request cost",
     [("throughput_msgs", "msg/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"),
      ("server_cpu_s", "server CPU s")]),
    ("churn", "connections", "at a time",
     [("throughput_msgs", "connections/s"), ("p99_us", "p99 µs")]),
    ("c10k", "offered_rate", "offered msg/s",
     [("answered_rate", "answered msg/s"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"),
      ("p999_us", "p99.9 µs"), ("server_cpu_us_per_msg", "server CPU µs/msg"),
      ("send_lag_p99_us", "generator lag p99 µs"), ("client_util_max", "generator busy")]),
]


def _cell(value) -> str:
    if value == "":
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value < 1:
        return f"{value:.3f}"
    if isinstance(value, float) and value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _case(row: dict) -> str:
    if row.get("block_us"):
        return f"--block-us {row['block_us']}"
    if row.get("work_us"):
        return f"--work-us {row['work_us']}"
    return "none"


def _sort_key(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def summarise(folder: Path) -> str:
    rows = read_csv(folder / "results.csv")
    for row in rows:
        row["case"] = _case(row)
    suite_path = folder / "suite.json"
    suite = json.loads(suite_path.read_text()) if suite_path.exists() else {}
    order = {s["name"]: i for i, s in enumerate(suite.get("servers", []))}
    lines = [f"# {folder.name}", ""]
    if suite.get("capacity_msgs"):
        lines += [f"Open-loop rates derive from a capacity of {suite['capacity_msgs']:,.0f} "
                  "msg/s (the best median closed-loop throughput at the same connection count).",
                  ""]
    for scenario, key, heading, figures in TABLES:
        chosen = [r for r in rows if r["scenario"] == scenario]
        if not chosen:
            continue
        lines += [f"## {scenario}", "",
                  "| server | " + heading + " | " + " | ".join(f[1] for f in figures) + " |",
                  "|---|---|" + "---|" * len(figures)]
        for row in sorted(chosen, key=lambda r: (order.get(r["server"], len(order)),
                                                  _sort_key(r[key]))):
            if row["status"] == "skipped":
                cells = [f"skipped: {row['note']}"] + [""] * (len(figures) - 1)
            else:
                cells = [_cell(row[column]) for column, _ in figures]
            lines.append(f"| {row['server']} | {_cell(row[key]) if key != 'case' else row[key]} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if suite.get("warnings"):
        lines += ["## warnings", ""] + [f"- {w}" for w in suite["warnings"]] + [""]
    return "\n".join(lines)


def write(folder: Path) -> Path:
    path = folder / "summary.md"
    path.write_text(summarise(folder))
    return path
