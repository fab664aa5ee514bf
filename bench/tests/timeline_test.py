"""bench-smoke: every server's --trace output becomes a picture.

For every technique of the build (not the library reference rows, which have
no trace): run it with --trace under a tiny bounded load, check that every
line carries the timestamp and that the timeline's parser understands every
line (a line it does not know means RULES in muxbench/timeline.py needs a
row), then draw it with bench/timeline as PNG and SVG and check the files.
The parser is also checked against a fixed line of each known format.

  python3 timeline_test.py --build-info BUILD/bench/muxbench-build.json --out DIR
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from muxbench.build import load_build_info  # noqa: E402
from muxbench.timeline import parse, parse_line  # noqa: E402
from server_process import arguments, wait_for_port  # noqa: E402

failures: list[str] = []

# One line of each format the servers write, and what it must parse as.
KNOWN_LINES = [
    ("wakeup: select returned 3", "wakeup", None, ""),
    ("wakeup: select returned 0 (timeout)", "wakeup", None, ""),
    ("  fd 7: readable writable", "event", 7, "readable writable"),
    ("  fd 7: exception(urgent data)", "event", 7, "exception(urgent data)"),
    ("wakeup: poll returned 1", "wakeup", None, ""),
    ("  fd 5: POLLIN|POLLRDHUP", "event", 5, "POLLIN|POLLRDHUP"),
    ("wakeup: epoll_wait(timeout -1) returned 2", "wakeup", None, ""),
    ("  fd 8: EPOLLIN|EPOLLOUT|EPOLLRDHUP", "event", 8, "EPOLLIN|EPOLLOUT|EPOLLRDHUP"),
    ("  fd 8: epoll_ctl(MOD) interest now EPOLLIN|EPOLLOUT", "ctl", 8, "MOD"),
    ("  fd 8: turn: 4 reads, drained to EAGAIN", "io", 8, ""),
    ("accept: new connection fd 9", "open", 9, ""),
    ("  fd 9: closed (peer finished, all echoed)", "close", 9, ""),
    ("worker 2 wakeup: fd 11 EPOLLIN", "wakeup+event", 11, "EPOLLIN"),
    ("worker 1 wakeup: fd 5 EPOLLIN (listener)", "wakeup+event", 5, "EPOLLIN"),
    ("worker 1 wakeup: fd 8 (stop)", "wakeup+event", 8, "(stop)"),
    ("worker 3 wakeup: idle for 2000 ms", "wakeup", None, ""),
    ("fd 11: re-armed EPOLLIN|EPOLLRDHUP|EPOLLET|EPOLLONESHOT", "ctl", 11, "re-armed"),
    ("pool: all 2 workers busy, starting one more", "note", None, ""),
    # io_uring_server and epoll_loop_per_thread, as their branches word them.
    ("wakeup: io_uring_enter(submit 2, wait 1) -> 3 completions", "wakeup", None, ""),
    ("  fd 5: listener readable", "event", 5, "readable"),
    ("  fd 9: recv 64 bytes in buffer 3", "event", 9, "recv"),
    ("  fd 9: send 64 of 64 bytes", "event", 9, "send"),
    ("  fd 9: receive re-armed", "ctl", 9, "receive re-armed"),
    ("wakeup: epoll_wait returned 2", "wakeup", None, ""),
]


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def check_parser() -> None:
    for text, kind, fd, flags in KNOWN_LINES:
        parsed = parse_line(text)
        check(parsed is not None, f"parser: no rule matches {text!r}")
        if parsed is None:
            continue
        rule, groups, _thread = parsed
        got_fd = int(groups["fd"]) if groups.get("fd") else None
        check(rule.kind == kind and got_fd == fd and (groups.get("flags") or "").strip() == flags,
              f"parser: {text!r} parsed as {rule.kind} fd {got_fd} flags "
              f"{groups.get('flags')!r}, expected {kind} fd {fd} flags {flags!r}")
    # Robust to what it does not know: counted, not fatal, not drawn.
    trace = parse(["12 [x] wakeup: epoll_wait(timeout -1) returned 1\n", "garbage\n",
                   "13 [x] something no rule knows\n", "14 [x]   fd 4: EPOLLIN\n"])
    check(len(trace.marks) == 2 and trace.untimed == 1 and len(trace.unknown) == 1,
          f"parser: unknown lines not set apart ({len(trace.marks)} marks, "
          f"{trace.untimed} untimed, {len(trace.unknown)} unknown)")
    # A thread named in the server field gets its lane: one epoll loop per thread.
    trace = parse(["5 [epoll_loop_per_thread t2] wakeup: epoll_wait returned 1\n",
                   "6 [epoll_loop_per_thread t2]   fd 9: EPOLLIN\n"])
    check(trace.server == "epoll_loop_per_thread" and
          [m.thread for m in trace.marks] == ["t2", "t2"],
          f"parser: the per-thread loop's lines are not on lane t2: {trace.marks}")
    # Lines about a descriptor land on the thread that last held it.
    trace = parse(["1 [p] worker 2 wakeup: fd 9 EPOLLIN\n", "2 [p] fd 9: re-armed EPOLLIN\n"])
    check([m.thread for m in trace.marks] == ["worker 2", "worker 2"],
          f"parser: the re-arm was not put on worker 2's lane: {trace.marks}")


def traced_run(name: str, path: str, loadgen: str, out: Path) -> Path | None:
    """Runs the server with --trace under a tiny load; returns its trace file."""
    trace_path = out / f"{name}.trace"
    with open(trace_path, "wb") as stderr:
        server = subprocess.Popen([path, "--port", "0", "--trace"], stdout=subprocess.PIPE,
                                  stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            port = wait_for_port(server, deadline=time.monotonic() + 15)
            if port is None:
                check(False, f"{name}: never printed 'listening on'")
                return None
            gen = subprocess.run([loadgen, "--port", str(port), "--connections", "3",
                                  "--warmup", "0", "--duration", "0.05", "--max-messages", "20",
                                  "--drain-timeout", "3", "--quiet", "--json", os.devnull],
                                 capture_output=True, text=True, timeout=60)
            check(gen.returncode == 0, f"{name}: the load generator failed: {gen.stderr}")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
            server.stdout.close()
    check(code == 0, f"{name}: exited {code} after SIGTERM")
    return trace_path


def check_trace(name: str, trace_path: Path) -> None:
    lines = trace_path.read_text(errors="replace").splitlines()
    timed = [line for line in lines if re.match(r"^\d+ \[", line)]
    check(len(timed) == len(lines),
          f"{name}: {len(lines) - len(timed)} trace lines without a leading timestamp, e.g. "
          f"{next((line for line in lines if line not in timed), '')!r}")
    # Each thread's lines are in time order; lines of different threads may
    # not be (a thread takes its timestamp, then waits for the stream). The
    # per-thread loops name their thread in the tag, the pool's workers in
    # the text: those are left out.
    by_tag: dict[str, list[int]] = {}
    for line in timed:
        stamp, rest = line.split(" ", 1)
        by_tag.setdefault(rest[:rest.find("]") + 1], []).append(int(stamp))
    if "worker" not in trace_path.read_text():
        for tag, stamps in by_tag.items():
            check(stamps == sorted(stamps), f"{name}: timestamps of {tag} go backwards")
    trace = parse(lines)
    check(len(trace.wakeups()) > 0 and len(trace.events()) > 0,
          f"{name}: the parser found {len(trace.wakeups())} wakeups and {len(trace.events())} "
          "events")
    check(not trace.unknown,
          f"{name}: {len(trace.unknown)} lines no rule of muxbench/timeline.py knows (add a row "
          f"to RULES), first: {trace.unknown[:1]}")


def check_picture(name: str, picture: Path) -> None:
    check(picture.exists() and picture.stat().st_size > 10_000,
          f"{name}: {picture.name} is missing or nearly empty")
    if picture.exists():
        head = picture.read_bytes()[:400]
        check(head.startswith(b"\x89PNG") if picture.suffix == ".png" else b"<svg" in head,
              f"{name}: {picture.name} is not a {picture.suffix} file")


def draw_command(name: str, trace_path: Path, out: Path,
                 extensions: tuple[str, ...] = ("png", "svg")) -> None:
    """The command itself, as a reader runs it."""
    for extension in extensions:
        picture = out / f"{name}.{extension}"
        picture.unlink(missing_ok=True)
        run = subprocess.run([str(BENCH / "timeline"), str(trace_path), "-o", str(picture)],
                             capture_output=True, text=True, timeout=120)
        check(run.returncode == 0, f"{name}: bench/timeline exited {run.returncode}: "
              f"{run.stderr.strip()}")
        check_picture(name, picture)


def draw_here(name: str, trace_path: Path, out: Path) -> None:
    """The same drawing in this process (one matplotlib start for all servers)."""
    from muxbench import timeline

    picture = out / f"{name}.png"
    picture.unlink(missing_ok=True)
    with open(trace_path, errors="replace") as f:
        timeline.draw(timeline.parse(f), picture)
    check_picture(name, picture)


def main() -> int:
    args = arguments()
    check_parser()
    build = load_build_info(args.build_info)
    techniques = [s for s in build.servers if not s.reference]
    check(bool(techniques), "the build registered no servers")
    for index, server in enumerate(techniques):
        trace_path = traced_run(server.name, server.path, build.loadgen, args.out)
        if trace_path is None:
            continue
        check_trace(server.name, trace_path)
        if index == 0:
            draw_command(server.name, trace_path, args.out)
        elif importlib.util.find_spec("matplotlib") is not None:
            draw_here(server.name, trace_path, args.out)
        else:  # bench/timeline finds an interpreter that has matplotlib
            draw_command(server.name, trace_path, args.out, ("png",))
    # A file with no trace lines at all is refused with a message, not a traceback.
    empty = args.out / "empty.trace"
    empty.write_text("listening on 127.0.0.1:1\n")
    run = subprocess.run([str(BENCH / "timeline"), str(empty), "-o", str(args.out / "e.png")],
                         capture_output=True, text=True, timeout=60)
    check(run.returncode == 1 and "no timestamped trace lines" in run.stderr,
          f"timeline on a file without trace lines: exit {run.returncode}, {run.stderr!r}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("timeline: " + ("passed" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
