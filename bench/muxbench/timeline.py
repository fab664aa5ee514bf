"""A picture of the event loop, drawn from a server's --trace output.

  bench/timeline TRACE_FILE -o OUT.png      (or OUT.svg)

Every trace line is `MICROSECONDS [server] text` (common/tracer.cpp). The
picture has one lane per descriptor with a mark per event (its flags written
next to it), a vertical line at every wakeup, and one lane per thread when the
lines name a worker, thread or loop, so a student sees level-triggered
re-firing, the single edge of ET, the ONESHOT hand-off between workers.

The parser is a table (RULES): one row per kind of line, a regular expression
and what the line means. A server whose lines say something new gets a row;
lines that no row matches are counted and reported, never fatal.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# `MICROSECONDS [server] text`; lines without the timestamp (older builds,
# other output on stderr) are not part of the picture.
ENVELOPE = re.compile(r"^(?P<ts>\d+) \[(?P<server>[^\]]+)\] (?P<text>.*)$")

# A thread named at the start of the text: "worker 2 wakeup: ...",
# "thread 1: ...", "loop 3 wakeup: ...". The rest is parsed like any line and
# drawn on that thread's lane.
THREAD = re.compile(r"^\s*(?P<kind>worker|thread|loop|ring) (?P<thread>\d+):?\s+(?P<rest>.*)$")
# Or named in the server field, after the server's name: "[epoll_loop_per_thread t2]".
SERVER_THREAD = re.compile(r"^(?P<server>\S+) (?P<thread>\S.*)$")


@dataclass(frozen=True)
class Rule:
    """One kind of trace line: a pattern and what it means.

    kind: wakeup (the loop returned from its wait), event (a descriptor was
    reported ready; `flags` names how), open, close, ctl (an interest change
    or re-arm), io (reads/writes done in a turn), note (anything else about a
    descriptor or the loop). Named groups: fd, flags, count, detail.
    """

    name: str
    kind: str
    pattern: re.Pattern


def _rule(name: str, kind: str, pattern: str) -> Rule:
    return Rule(name, kind, re.compile(pattern))


RULES = [
    # The pool: a worker's epoll_wait returns one ONESHOT event, so the wakeup
    # and the event are one line. "(stop)" and "(listener)" are kept as detail.
    _rule("pool wakeup with event", "wakeup+event",
          r"^wakeup: fd (?P<fd>\d+) (?P<flags>(?:EPOLL\w+|0x[0-9a-f]+)(?:\|(?:EPOLL\w+|0x[0-9a-f]+))*)"
          r"\s*(?P<detail>.*)$"),
    _rule("pool wakeup, stop", "wakeup+event", r"^wakeup: fd (?P<fd>\d+) (?P<flags>\(stop\))$"),
    _rule("pool idle timeout", "wakeup", r"^wakeup: (?P<detail>idle for \d+ ms)$"),
    # select, poll, epoll (one loop or one per thread), io_uring:
    # "wakeup: select returned 3", "wakeup: epoll_wait(timeout -1) returned 1",
    # "wakeup: io_uring_enter(submit 2, wait 1) -> 3 completions", "wakeup: 4 completions".
    _rule("wait returned", "wakeup",
          r"^wakeup: (?P<detail>[\w.]+(?:\([^)]*\))?) (?:returned|->) (?P<count>-?\d+)"
          r"(?P<rest>.*)$"),
    _rule("completions", "wakeup", r"^wakeup: (?P<count>\d+) (?P<detail>completions?.*)$"),
    _rule("accepted", "open", r"^accept: new connection fd (?P<fd>\d+)(?P<detail>.*)$"),
    _rule("accept refused", "note", r"^accept: fd (?P<fd>\d+) (?P<detail>.*)$"),
    _rule("accept failed", "note", r"^accept: (?P<detail>.*)$"),
    _rule("closed", "close", r"^fd (?P<fd>\d+): closed(?P<detail>.*)$"),
    # epoll/poll readiness: "fd 8: EPOLLIN|EPOLLRDHUP", "fd 7: POLLIN".
    _rule("epoll/poll event", "event",
          r"^fd (?P<fd>\d+): (?P<flags>(?:E?POLL\w+|0x[0-9a-f]+)(?:\|(?:E?POLL\w+|0x[0-9a-f]+))*)$"),
    # select: "fd 7: readable writable exception(urgent data)".
    _rule("select event", "event",
          r"^fd (?P<fd>\d+):(?P<flags>(?: (?:readable|writable|exception\([^)]*\)))+)$"),
    # io_uring: the listener's and the shutdown pipe's poll completions.
    _rule("io_uring poll completion", "event",
          r"^fd (?P<fd>\d+): (?P<detail>listener|shutdown pipe) (?P<flags>readable)$"),
    _rule("io_uring re-arm", "ctl", r"^fd (?P<fd>\d+): (?P<flags>receive re-armed)(?P<detail>.*)$"),
    _rule("interest changed", "ctl",
          r"^fd (?P<fd>\d+): epoll_ctl\((?P<flags>\w+)\)(?P<detail>.*)$"),
    _rule("re-armed", "ctl", r"^fd (?P<fd>\d+): (?P<flags>re-armed|NOT re-armed)(?P<detail>.*)$"),
    _rule("edge-triggered turn", "io", r"^fd (?P<fd>\d+): turn: (?P<detail>.*)$"),
    # io_uring: "fd 8: recv 64 bytes in buffer 3", "fd 8: send 64 of 64 bytes".
    _rule("completion", "event",
          r"^fd (?P<fd>\d+): (?P<flags>(?:recv|send|read|write|accept|readv|writev|close|"
          r"poll)\w*)\b(?P<detail>.*)$"),
    _rule("stale event", "note", r"^fd (?P<fd>\d+): (?P<detail>stale event.*)$"),
    _rule("other descriptor line", "note", r"^fd (?P<fd>\d+): (?P<detail>.*)$"),
    _rule("pool", "note", r"^(?P<detail>pool: .*)$"),
]


@dataclass
class Mark:
    t_us: int
    kind: str
    fd: int | None
    thread: str | None
    flags: str = ""
    detail: str = ""
    count: int | None = None


@dataclass
class Trace:
    server: str = ""
    marks: list[Mark] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    untimed: int = 0

    def events(self) -> list[Mark]:
        return [m for m in self.marks if m.kind in ("event", "wakeup+event")]

    def wakeups(self) -> list[Mark]:
        return [m for m in self.marks if m.kind in ("wakeup", "wakeup+event")]


def parse_line(text: str, rules: list[Rule] = RULES) -> tuple[Rule, dict, str | None] | None:
    """(the rule, its groups, the thread named) for one line's text, or None."""
    thread = None
    if match := THREAD.match(text):
        thread = f"{match['kind']} {match['thread']}"
        text = match["rest"]
    text = text.strip()
    for rule in rules:
        if match := rule.pattern.match(text):
            return rule, match.groupdict(), thread
    return None


def parse(lines) -> Trace:
    trace = Trace()
    # A line about a descriptor that names no thread happened on the thread
    # that last had an event on it (in the pool, the worker holding it).
    holder: dict[int, str | None] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        envelope = ENVELOPE.match(line)
        if not envelope:
            if line.strip():
                trace.untimed += 1
            continue
        server, server_thread = envelope["server"], None
        if named := SERVER_THREAD.match(server):
            server, server_thread = named["server"], named["thread"]
        trace.server = trace.server or server
        parsed = parse_line(envelope["text"])
        if parsed is None:
            trace.unknown.append(line)
            continue
        rule, groups, thread = parsed
        thread = thread or server_thread
        fd = int(groups["fd"]) if groups.get("fd") else None
        if fd is not None:
            if thread is not None:
                holder[fd] = thread
            else:
                thread = holder.get(fd)
        count = groups.get("count")
        trace.marks.append(Mark(
            t_us=int(envelope["ts"]), kind=rule.kind, fd=fd, thread=thread,
            flags=(groups.get("flags") or "").strip(),
            detail=(groups.get("detail") or "").strip(),
            count=int(count) if count is not None else None))
    trace.marks.sort(key=lambda m: m.t_us)
    return trace


# ---------------------------------------------------------------- drawing


def _flag_style(flags: str) -> tuple[str, str]:
    """Colour and marker of an event by what it reports."""
    upper = flags.upper()
    if "STOP" in upper:
        return "#999999", "x"
    if "HUP" in upper or "ERR" in upper or "NVAL" in upper:
        return "#D55E00", "X"  # the peer is gone or going
    if "EXCEPTION" in upper or "PRI" in upper:
        return "#CC79A7", "*"
    has_in = "IN" in upper.replace("EPOLLINVALID", "") or "READABLE" in upper or \
        upper.startswith(("RECV", "READ", "ACCEPT"))
    has_out = "OUT" in upper or "WRITABLE" in upper or upper.startswith(("SEND", "WRITE"))
    if has_in and has_out:
        return "#009E73", "D"
    if has_out:
        return "#E69F00", "s"
    return "#0072B2", "o"


KIND_STYLES = {
    "open": ("#000000", ">", "accepted"),
    "close": ("#000000", "|", "closed"),
    "ctl": ("#56B4E9", "^", "epoll_ctl / re-arm"),
    "io": ("#444444", "_", "reads of one turn"),
    "note": ("#999999", ".", "other"),
}


def _time_axis(times: list[int], gap_cap_us: float):
    """Display positions for the timestamps: gaps longer than `gap_cap_us` are
    cut to that length so that bursts microseconds apart stay readable beside
    pauses of many milliseconds. Returns (to_x, cuts, real_of_x)."""
    anchors_t = [times[0]]
    anchors_x = [0.0]
    cuts = []
    for t in sorted(set(times))[1:]:
        gap = t - anchors_t[-1]
        x = anchors_x[-1] + min(gap, gap_cap_us)
        if gap > gap_cap_us:
            cuts.append((anchors_x[-1] + gap_cap_us / 2, gap))
        anchors_t.append(t)
        anchors_x.append(x)

    def to_x(t: float) -> float:
        return _interpolate(t, anchors_t, anchors_x)

    def real_of_x(x: float) -> float:
        return _interpolate(x, anchors_x, anchors_t)

    return to_x, cuts, real_of_x


def _interpolate(value: float, xs: list[float], ys: list[float]) -> float:
    import bisect

    if len(xs) == 1:
        return ys[0] + (value - xs[0])
    i = min(max(bisect.bisect_right(xs, value), 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    if x1 == x0:
        return y0
    return y0 + (value - x0) * (y1 - y0) / (x1 - x0)


def _format_us(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:.3g} ms"
    return f"{value:.0f} µs"


def draw(trace: Trace, out: Path, title: str | None = None, gap_cap_us: float | None = None,
         label_limit: int = 80) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    marks = trace.marks
    if not marks:
        raise ValueError("no trace lines to draw")
    start = marks[0].t_us
    times = [m.t_us - start for m in marks]
    if gap_cap_us is None:
        # Cut what is much longer than a typical step of this trace.
        steps = sorted(b - a for a, b in zip(times, times[1:]) if b > a) or [1]
        gap_cap_us = max(20.0, 8 * steps[len(steps) // 2])
    to_x, cuts, real_of_x = _time_axis(times, gap_cap_us)

    fds = sorted({m.fd for m in marks if m.fd is not None})
    threads = sorted({m.thread for m in marks if m.thread}, key=_natural)
    lanes: list[str] = [f"fd {fd}" for fd in fds] + threads
    lane_of = {name: index for index, name in enumerate(lanes)}
    if not lanes:
        lanes, lane_of = ["loop"], {"loop": 0}

    width = min(24.0, max(10.0, 0.06 * len(marks) + 8))
    height = min(30.0, 2.2 + 0.42 * len(lanes))
    fig, ax = plt.subplots(figsize=(width, height))
    thread_colours = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                      "#000000", "#999999"]
    colour_of_thread = {t: thread_colours[i % len(thread_colours)] for i, t in enumerate(threads)}

    # Wakeups: a vertical line across every lane, in the colour of the thread
    # that woke (grey for a single loop).
    for mark in trace.wakeups():
        colour = colour_of_thread.get(mark.thread, "#888888")
        ax.axvline(to_x(mark.t_us - start), color=colour, linewidth=0.8, alpha=0.45, zorder=1)
        if mark.thread:
            lane = lane_of[mark.thread]
            ax.plot(to_x(mark.t_us - start), lane, marker="v", color=colour, markersize=7,
                    zorder=3)
            if mark.fd is not None:
                ax.annotate(str(mark.fd), (to_x(mark.t_us - start), lane), xytext=(0, 6),
                            textcoords="offset points", ha="center", fontsize=7, color=colour)

    labelled = len(trace.events()) <= label_limit
    for mark in marks:
        if mark.fd is None:
            continue
        x, lane = to_x(mark.t_us - start), lane_of[f"fd {mark.fd}"]
        if mark.kind in ("event", "wakeup+event"):
            colour, marker = _flag_style(mark.flags)
            edge = colour_of_thread.get(mark.thread, colour)
            ax.plot(x, lane, marker=marker, color=colour, markeredgecolor=edge,
                    markeredgewidth=1.5 if mark.thread else 1.0, markersize=9, zorder=4)
            if labelled:
                ax.annotate(_short_flags(mark.flags), (x, lane), xytext=(3, 7),
                            textcoords="offset points", fontsize=7, rotation=35,
                            color="#333333")
        else:
            colour, marker, _ = KIND_STYLES.get(mark.kind, KIND_STYLES["note"])
            ax.plot(x, lane, marker=marker, color=colour, markersize=10 if marker == "|" else 8,
                    markeredgewidth=2 if marker in "|_" else 1, zorder=3)
            if labelled and mark.kind == "io":
                ax.annotate(mark.detail.split(",")[0], (x, lane), xytext=(3, -11),
                            textcoords="offset points", fontsize=7, color="#444444")

    for x, gap in cuts:
        ax.axvspan(x - gap_cap_us * 0.15, x + gap_cap_us * 0.15, color="#dddddd", zorder=0)
        ax.annotate(f"≈{_format_us(gap)}", (x, -0.65), ha="center", fontsize=7,
                    color="#777777", rotation=90, va="top")

    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _format_us(real_of_x(x))))
    ax.set_xlabel(f"time since the first line (grey bands: pauses longer than "
                  f"{_format_us(gap_cap_us)}, cut short)")
    ax.grid(axis="y", alpha=0.2)
    ax.grid(axis="x", visible=False)
    shown = title or (f"{trace.server}: {len(trace.wakeups())} wakeups, "
                      f"{len(trace.events())} events, {len(fds)} descriptors")
    ax.set_title(shown, fontsize=13, fontweight="bold")

    legend = [
        Line2D([], [], color="#888888", linewidth=1, label="wakeup (wait returned)"),
        Line2D([], [], color="#0072B2", marker="o", linestyle="none", label="readable"),
        Line2D([], [], color="#E69F00", marker="s", linestyle="none", label="writable"),
        Line2D([], [], color="#009E73", marker="D", linestyle="none", label="both"),
        Line2D([], [], color="#D55E00", marker="X", linestyle="none", label="hang-up / error"),
    ]
    kinds = {m.kind for m in marks}
    legend += [Line2D([], [], color=c, marker=mk, linestyle="none", label=label)
               for kind, (c, mk, label) in KIND_STYLES.items() if kind in kinds]
    legend += [Line2D([], [], color=colour_of_thread[t], marker="v", linestyle="none",
                      label=f"{t} woke") for t in threads]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9,
              frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".svg":
        fig.savefig(out, metadata={"Date": None})
    else:
        fig.savefig(out, dpi=100)
    plt.close(fig)


def _short_flags(flags: str) -> str:
    return flags.replace("EPOLL", "").replace("POLL", "") or flags


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/timeline",
        description="Draws a server's --trace output: one lane per descriptor, a mark per "
                    "event with its flags, a vertical line per wakeup, a lane per thread.")
    parser.add_argument("trace", type=Path, help="a file holding a server's --trace lines")
    parser.add_argument("-o", "--out", type=Path, required=True, help="OUT.png or OUT.svg")
    parser.add_argument("--first", type=int, default=0, metavar="N",
                        help="draw only the first N parsed lines (0: all)")
    parser.add_argument("--skip", type=int, default=0, metavar="N",
                        help="leave out the first N parsed lines")
    parser.add_argument("--title", default=None, help="the picture's title")
    parser.add_argument("--gap-us", type=float, default=None,
                        help="pauses longer than this are cut short (default: from the trace)")
    args = parser.parse_args(argv)
    if args.out.suffix not in (".png", ".svg"):
        parser.error(f"--out {args.out}: the picture must be a .png or an .svg")
    if args.first < 0 or args.skip < 0:
        parser.error("--first and --skip take a count of lines, 0 or more")
    try:
        with open(args.trace, errors="replace") as f:
            trace = parse(f)
    except OSError as error:
        sys.stderr.write(f"timeline: {args.trace}: {error.strerror}\n")
        return 2
    trace.marks = trace.marks[args.skip:]
    if args.first:
        trace.marks = trace.marks[:args.first]
    if not trace.marks:
        sys.stderr.write(f"timeline: {args.trace} holds no timestamped trace lines "
                         f"({trace.untimed} lines without a timestamp)\n")
        return 1
    draw(trace, args.out, args.title, args.gap_us)
    fds = {m.fd for m in trace.marks if m.fd is not None}
    sys.stderr.write(f"timeline: {len(trace.wakeups())} wakeups, {len(trace.events())} events on "
                     f"{len(fds)} descriptors -> {args.out}\n")
    if trace.unknown:
        sys.stderr.write(f"timeline: {len(trace.unknown)} lines matched no rule (first: "
                         f"{trace.unknown[0]!r}); add a row to RULES in "
                         "bench/muxbench/timeline.py\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
