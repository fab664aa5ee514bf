"""bench-smoke: a tiny suite against every server of the build, then checks.

- every run: the bytes the generator read back equal the server's bytes_out,
  and no errors;
- the open-loop run (far below saturation): the generator kept its schedule, and the
  answered rate is within 1% of the offered rate;
- results.csv, runs.csv, machine.json and every chart exist and hold sane numbers.

  python3 smoke_test.py --build-info BUILD/bench/muxbench-build.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from muxbench.results import REQUIRED_COLUMNS, read_csv  # noqa: E402
from muxbench.suite import preset  # noqa: E402

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-info", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    command = [sys.executable, "-m", "muxbench", "run", "--smoke",
               "--build-info", str(args.build_info), "--out", str(args.out)]
    run = subprocess.run(command, cwd=BENCH, timeout=400)
    check(run.returncode == 0, f"the runner exited with {run.returncode}")
    if run.returncode != 0:
        return report()

    entries = json.loads(args.build_info.read_text())["servers"]
    servers = [entry.split("=", 1)[0] for entry in entries]
    # Library reference rows cannot count their system calls (written as null).
    references = {entry.split("=", 1)[0] for entry in entries if ",reference=" in entry}
    scenarios = [s.name for s in preset("smoke").scenarios]
    check_runs(args.out, servers, scenarios)
    check_results(args.out, servers, scenarios, references)
    check_machine(args.out)
    check_charts(args.out, scenarios)
    return report()


def check_runs(out: Path, servers: list[str], scenarios: list[str]) -> None:
    runs = read_csv(out / "runs.csv")
    for row in runs:
        where = f"{row['scenario']}/{row['server']}"
        if row["status"] == "skipped":
            continue
        check(row["status"] == "ok", f"{where}: run {row['status']}: {row['note']}")
        if row["status"] != "ok":
            continue
        # The generator checked every byte it read; the server counted every byte it wrote.
        check(row["bytes_match"] is True,
              f"{where}: generator read {row['bytes_echoed']} bytes, server wrote "
              f"{row['server_bytes_out']}")
        check(row["errors"] == 0, f"{where}: {row['errors']} errors")
        raw = json.loads((out / row["raw"]).read_text())
        check(raw["stats"]["bytes_in"] == raw["loadgen"]["bytes"]["sent"],
              f"{where}: server read {raw['stats']['bytes_in']} bytes, generator sent "
              f"{raw['loadgen']['bytes']['sent']}")
        if row["mode"] == "open":
            # The generator kept its schedule (exactly rate x window messages fell
            # due) and, far below saturation, every one of them was answered. The
            # answers that happened to land inside the window are not checked: a
            # few milliseconds' stall of a busy test machine at either edge of the
            # window moves more than 1% of them across it.
            offered, answered = row["offered_rate"], row["answered_rate"]
            window = raw["loadgen"]["window_s"]
            due = raw["loadgen"]["messages"]["window_scheduled"]
            check(abs(due - offered * window) <= 1,
                  f"{where}: {due} messages fell due in the window, not {offered * window:.0f}")
            check(abs(answered - offered) <= 0.01 * offered,
                  f"{where}: answered {answered:.1f} msg/s of {offered} offered (more than 1% off)")
    seen = {(r["scenario"], r["server"]) for r in runs}
    for scenario in scenarios:
        for server in servers:
            check((scenario, server) in seen, f"no run of {scenario} on {server}")


def check_results(out: Path, servers: list[str], scenarios: list[str],
                  references: set[str]) -> None:
    path = out / "results.csv"
    check(path.exists(), "results.csv is missing")
    if not path.exists():
        return
    header = path.read_text().splitlines()[0].split(",")
    check(header[:len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS,
          f"results.csv columns start {header[:len(REQUIRED_COLUMNS)]}")
    rows = read_csv(path)
    check(len(rows) >= len(servers) * len(scenarios), f"results.csv has only {len(rows)} rows")
    for row in rows:
        if row["status"] != "ok":
            continue
        where = f"{row['scenario']}/{row['server']}"
        check(row["throughput_msgs"] > 0, f"{where}: throughput {row['throughput_msgs']}")
        check(0 < row["p50_us"] <= row["p90_us"] <= row["p99_us"] <= row["p999_us"] <=
              row["max_us"] < 10e6, f"{where}: percentiles out of order or absurd: "
              f"{[row[c] for c in ('p50_us', 'p90_us', 'p99_us', 'p999_us', 'max_us')]}")
        check(row["server_cpu_s"] != "" and row["server_cpu_s"] >= 0,
              f"{where}: server_cpu_s {row['server_cpu_s']}")
        check(0 < row["client_cpu_s"] < 10, f"{where}: client_cpu_s {row['client_cpu_s']}")
        check(row["wakeups_per_msg"] > 0, f"{where}: wakeups_per_msg {row['wakeups_per_msg']}")
        check(row["ctx_switches_per_msg"] != "", f"{where}: ctx_switches_per_msg missing")
        if row["server"] in references:
            check(row["ctl_per_msg"] == "" and row["syscalls_per_msg"] == "",
                  f"{where}: a library's hidden system calls were given a number")
        else:
            check(row["ctl_per_msg"] != "" and row["syscalls_per_msg"] != "",
                  f"{where}: per-message counters missing")
        mbps = row["throughput_msgs"] * row["msg_size"] / 1e6
        check(abs(row["throughput_mbps"] - mbps) <= 0.01 * mbps + 1e-9,
              f"{where}: throughput_mbps {row['throughput_mbps']} vs {mbps}")


def check_machine(out: Path) -> None:
    path = out / "machine.json"
    check(path.exists(), "machine.json is missing")
    if not path.exists():
        return
    record = json.loads(path.read_text())
    for key in ("kernel", "cpu_model", "cores_online", "mitigations", "governor", "commit",
                "compiler", "cxx_flags"):
        check(key in record, f"machine.json has no {key}")
    check(isinstance(record.get("cores_online"), int) and record["cores_online"] >= 1,
          f"machine.json cores_online {record.get('cores_online')}")
    check(bool(record.get("kernel")), "machine.json kernel is empty")


def check_charts(out: Path, scenarios: list[str]) -> None:
    expected = scenarios + ["efficiency", "micro"]
    for name in expected:
        for extension in ("png", "svg"):
            chart = out / "charts" / f"{name}.{extension}"
            check(chart.exists() and chart.stat().st_size > 5000,
                  f"chart {chart.name} is missing or empty")
    micro = out / "micro.csv"
    check(micro.exists(), "micro.csv is missing")
    if micro.exists():
        calls = {row["call"] for row in read_csv(micro) if row["ns_per_call"] > 0}
        check({"select", "poll", "epoll_wait", "epoll_ctl_mod"} <= calls,
              f"micro.csv has only {sorted(calls)}")


def report() -> int:
    for failure in failures:
        print(f"FAIL: {failure}")
    print("bench-smoke: " + ("passed" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
