"""From raw run records to the two CSV files, and back.

runs.csv holds one row per repetition; results.csv one row per
scenario/server/load point, with the median over the repetitions and the
spread (min and max) of the throughput and the p99. The first columns of
results.csv are the ones the issue fixed; the rest follow.

Units: rates in messages per second (open loop: achieved_rate counts the answers
that arrived inside the window, answered_rate the messages due inside the window
that were answered at all), throughput_mbps in MB/s (10^6 bytes of
echoed payload per second, one direction), latencies in microseconds, CPU in
seconds. The *_per_msg counters cover the server's whole life (set-up,
warm-up, window, drain) divided by every message it echoed then, the one-byte
greeting each persistent connection sends at set-up included; server_cpu_s
and client_cpu_s cover the measured window only. A generator that polls
instead of sleeping (it does on a CPU of its own) uses all of its CPU;
client_busy_s leaves out the polls that found nothing, and client_util_max is
the busiest generator thread's busy time over the window.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

REQUIRED_COLUMNS = [
    "scenario", "server", "connections", "idle", "msg_size", "offered_rate",
    "throughput_msgs", "throughput_mbps", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
    "errors", "server_cpu_s", "client_cpu_s", "wakeups_per_msg", "ctl_per_msg",
    "ctx_switches_per_msg",
]
EXTRA_COLUMNS = [
    "mode", "pipeline", "work_us", "block_us", "reps", "throughput_min", "throughput_max",
    "p99_min_us", "p99_max_us", "achieved_rate", "answered_rate", "syscalls_per_msg",
    "events_per_wakeup", "server_cpu_us_per_msg", "client_busy_s", "client_cpu_us_per_msg",
    "client_util_max", "send_lag_p99_us", "bytes_match", "foreign_cpu_share", "status", "note",
]
RESULT_COLUMNS = REQUIRED_COLUMNS + EXTRA_COLUMNS
POINT_COLUMNS = ["mode", "connections", "idle", "pipeline", "msg_size", "offered_rate",
                 "work_us", "block_us"]
RUN_COLUMNS = (["scenario", "server", "rep"] + POINT_COLUMNS + [
    "throughput_msgs", "throughput_mbps", "achieved_rate", "answered_rate", "p50_us", "p90_us",
    "p99_us", "p999_us", "max_us", "errors", "server_cpu_s", "client_cpu_s", "wakeups_per_msg",
    "ctl_per_msg", "syscalls_per_msg", "events_per_wakeup", "ctx_switches_per_msg",
    "server_cpu_us_per_msg", "client_busy_s", "client_cpu_us_per_msg", "client_util_max",
    "send_lag_p99_us", "bytes_echoed", "server_bytes_out", "bytes_match", "foreign_cpu_share",
    "attempt", "status", "note", "raw"])

# Columns whose per-point value is the median over the repetitions.
MEDIAN_COLUMNS = [
    "throughput_msgs", "throughput_mbps", "achieved_rate", "answered_rate", "p50_us", "p90_us",
    "p99_us", "p999_us", "max_us", "server_cpu_s", "client_cpu_s", "wakeups_per_msg", "ctl_per_msg",
    "syscalls_per_msg", "events_per_wakeup", "ctx_switches_per_msg", "server_cpu_us_per_msg",
    "client_busy_s", "client_cpu_us_per_msg", "client_util_max", "send_lag_p99_us",
    "foreign_cpu_share",
]


def point_columns(point: dict) -> dict:
    return {
        "mode": point["mode"],
        "connections": point["connections"],
        "idle": point["idle"],
        "pipeline": point["pipeline"],
        "msg_size": point["msg_size"],
        "offered_rate": point["rate"] if point["mode"] == "open" else "",
        "work_us": point["work_us"],
        "block_us": point["block_us"],
    }


def _ratio(numerator: float, denominator: float) -> float | str:
    return numerator / denominator if denominator else ""


def _ratio_known(numerator, denominator) -> float | str:
    """A counter a server could not count (a library's hidden system calls
    are written as null) stays unknown: an empty cell, not a zero."""
    if numerator is None or denominator is None:
        return ""
    return _ratio(numerator, denominator)


def _sum_known(stats: dict, keys: tuple[str, ...]) -> int | None:
    values = [stats.get(key) for key in keys]
    return None if any(v is None for v in values) else sum(values)


def run_row(scenario: str, rep: int, record: dict, raw_name: str) -> dict:
    """The runs.csv row of one measurement."""
    gen = record["loadgen"]
    stats = record["stats"]
    usage = record["server_rusage"]
    latency = gen["latency_us"]
    # Every echo the server made in its life: the messages, plus the one-byte
    # greeting of each persistent connection.
    echoes = gen["messages"]["completed"] + gen["connections_ready"]
    window_msgs = gen["messages"]["window_completed"]
    syscalls = _sum_known(stats, ("wakeups", "reads", "writes", "ctl_calls", "accepts"))
    server_cpu = gen["server"]["cpu_s"] if gen.get("server") else ""
    return {
        "scenario": scenario,
        "server": record["server"],
        "rep": rep,
        **point_columns(record["point"]),
        "throughput_msgs": gen["throughput_msgs"],
        "throughput_mbps": gen["throughput_mbps"],
        "achieved_rate": gen["achieved_rate"],
        "answered_rate": "" if gen.get("answered_rate") is None else gen["answered_rate"],
        "p50_us": latency["p50"],
        "p90_us": latency["p90"],
        "p99_us": latency["p99"],
        "p999_us": latency["p999"],
        "max_us": latency["max"],
        "errors": gen["errors"]["total"],
        "server_cpu_s": server_cpu,
        "client_cpu_s": gen["client"]["cpu_s"],
        "wakeups_per_msg": _ratio_known(stats.get("wakeups"), echoes),
        "ctl_per_msg": _ratio_known(stats.get("ctl_calls"), echoes),
        "syscalls_per_msg": _ratio_known(syscalls, echoes),
        "events_per_wakeup": _ratio_known(stats.get("events"), stats.get("wakeups")),
        "ctx_switches_per_msg": _ratio(
            usage["voluntary_switches"] + usage["involuntary_switches"], echoes),
        "server_cpu_us_per_msg": _ratio(server_cpu * 1e6, window_msgs) if server_cpu != "" else "",
        "client_busy_s": gen["client"]["busy_s"],
        "client_cpu_us_per_msg": _ratio(gen["client"]["busy_s"] * 1e6, window_msgs),
        "client_util_max": gen["client"]["max_thread_utilisation"],
        "send_lag_p99_us": gen["send_lag_us"]["p99"] if gen["mode"] == "open" else "",
        "bytes_echoed": gen["bytes"]["received"],
        "server_bytes_out": stats["bytes_out"],
        "bytes_match": gen["bytes"]["received"] == stats["bytes_out"],
        "foreign_cpu_share": record["foreign_cpu_share"],
        "attempt": record.get("attempt", 1),
        "status": "ok",
        "note": "",
        "raw": raw_name,
    }


def placeholder_row(scenario: str, server: str, rep: int, point: dict, status: str,
                    note: str) -> dict:
    """A run that was skipped (a limit of the technique) or failed."""
    row = {column: "" for column in RUN_COLUMNS}
    row.update(scenario=scenario, server=server, rep=rep, status=status, note=note,
               **point_columns(point))
    return row


def aggregate(runs: list[dict]) -> list[dict]:
    """results.csv rows: the repetitions of each scenario/server/point folded."""
    groups: dict[tuple, list[dict]] = {}
    for row in runs:
        key = (row["scenario"], row["server"]) + tuple(str(row[c]) for c in POINT_COLUMNS)
        groups.setdefault(key, []).append(row)
    out = []
    for rows in groups.values():
        ok = [r for r in rows if r["status"] == "ok"]
        first = rows[0]
        result = {column: "" for column in RESULT_COLUMNS}
        result.update({c: first[c] for c in ["scenario", "server"] + POINT_COLUMNS})
        result["reps"] = len(ok)
        if not ok:
            result["status"] = first["status"]
            result["note"] = first["note"]
            out.append(result)
            continue
        for column in MEDIAN_COLUMNS:
            values = [float(r[column]) for r in ok if r[column] != ""]
            result[column] = statistics.median(values) if values else ""
        throughputs = [float(r["throughput_msgs"]) for r in ok]
        p99s = [float(r["p99_us"]) for r in ok]
        result["throughput_min"], result["throughput_max"] = min(throughputs), max(throughputs)
        result["p99_min_us"], result["p99_max_us"] = min(p99s), max(p99s)
        # Errors are summed, never averaged away.
        result["errors"] = sum(int(r["errors"]) for r in ok)
        result["bytes_match"] = all(r["bytes_match"] in (True, "True") for r in ok)
        failed = len(rows) - len(ok)
        result["status"] = "ok" if failed == 0 else "partial"
        result["note"] = f"{failed} of {len(rows)} runs failed" if failed else ""
        out.append(result)
    return out


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(v) for k, v in row.items()})


def _format(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_csv(path: Path) -> list[dict]:
    """Rows with numbers turned back into numbers (empty cells stay '')."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            row[key] = _parse(value)
    return rows


def _parse(value: str):
    if value in ("", None):
        return ""
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number
