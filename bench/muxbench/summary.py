"""summary.md: the results folder's numbers as Markdown tables, one per scenario.

Written with every run and printable again with `python3 -m muxbench summary
FOLDER`, so a write-up can quote figures straight from the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from .results import read_csv
from .suite import SCENARIOS


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
    for entry in SCENARIOS:
        chosen = [r for r in rows if r["scenario"] == entry.name]
        if entry.table is None or not chosen:
            continue
        key, figures = entry.x, entry.table.figures
        lines += [f"## {entry.name}", "",
                  "| server | " + entry.table.heading + " | " + " | ".join(f[1] for f in figures)
                  + " |",
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
