"""The charts, drawn from a results folder alone (results.csv, micro.csv,
machine.json, suite.json), so a saved run can be drawn again anywhere:

  bench/plot bench/results/<folder>

One chart per scenario, PNG and SVG, sized and lettered for a lecture slide.
A server has the same colour and marker in every chart; lines and bars are
medians over the repetitions, whiskers their spread (min to max).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

from .results import read_csv  # noqa: E402
from .suite import FD_SETSIZE, SCENARIOS, ScenarioSpec  # noqa: E402

# Okabe-Ito colours: distinct for colour-blind readers and on a projector.
KNOWN_SERVERS = {
    "select_server": ("#E69F00", "o"),
    "poll_server": ("#56B4E9", "s"),
    "epoll_lt_server": ("#009E73", "^"),
    "epoll_et_server": ("#0072B2", "D"),
    "epoll_oneshot_pool": ("#D55E00", "v"),
    "io_uring_server": ("#882255", "p"),
    "epoll_loop_per_thread": ("#CC79A7", "P"),
}
# Other servers (the library reference rows, a student's): colours no
# technique above uses, so that no line is mistaken for another.
EXTRA_STYLES = [("#000000", "X"), ("#777777", "*"), ("#8C564B", "h"), ("#F0E442", "<")]
# The micro-benchmark's calls, coloured like the server built on each.
MICRO_CALLS = {
    "select": ("select()", "select_server", "-"),
    "poll": ("poll()", "poll_server", "-"),
    "epoll_wait": ("epoll_wait()", "epoll_lt_server", "-"),
    "epoll_ctl_mod": ("epoll_ctl(MOD): the ONESHOT re-arm", "epoll_oneshot_pool", "-"),
    "epoll_oneshot_cycle": ("epoll_wait() + re-arm", "epoll_oneshot_pool", "--"),
    "io_uring_submit_reap": ("io_uring_enter(): submit + reap", "io_uring_server", "-"),
}

# The busy share above which the generator may be what limits a point.
SATURATED = 0.9
SATURATED_LABEL = "generator >90% busy"
BAR_FLAG_NOTE = "† generator >90% busy"

plt.rcParams.update({
    "font.size": 14,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "legend.fontsize": 12,
    "lines.linewidth": 2.5,
    "lines.markersize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "svg.fonttype": "none",  # text stays text: smaller files, crisp on slides
})


EXTRA_LABELS: set[str] = set()  # servers that are not among KNOWN_SERVERS

# Reference rows: servers built on production libraries (libuv, libevent),
# drawn dashed with hollow markers and labelled "... (library)", so that no
# one reads them as one more technique. Server name -> legend label.
REFERENCE_LABELS: dict[str, str] = {}


def _register_references(servers: list[dict]) -> None:
    for server in servers:
        if server.get("reference"):
            label = f"{server['reference']} (library)"
            REFERENCE_LABELS[server["name"]] = label
            EXTRA_LABELS.add(label)


def _reference_style(server: str, style: dict, kwargs: dict) -> None:
    """Turns a server's line style into a reference row's, in place."""
    if server not in REFERENCE_LABELS:
        return
    if style.get("label") == server:
        style["label"] = REFERENCE_LABELS[server]
    style["linestyle"] = "--"
    style["markerfacecolor"] = "white"
    if kwargs.get("linestyle") == "--":  # the p50 companion line: dotted instead
        kwargs["linestyle"] = ":"


def _label(server: str) -> str:
    return REFERENCE_LABELS.get(server, server)


class Styles:
    """Colour and marker per server, fixed by name, extras in a stable order."""

    def __init__(self, names: list[str]):
        self.order = [n for n in KNOWN_SERVERS if n in names]
        extras = sorted(n for n in names if n not in KNOWN_SERVERS)
        self.order += extras
        EXTRA_LABELS.update(extras)
        self.style = dict(KNOWN_SERVERS)
        for index, name in enumerate(extras):
            self.style[name] = EXTRA_STYLES[index % len(EXTRA_STYLES)]

    def colour(self, name: str) -> str:
        return self.style.get(name, ("#999999", "o"))[0]

    def marker(self, name: str) -> str:
        return self.style.get(name, ("#999999", "o"))[1]


class Run:
    """Everything a chart may use: the folder's files, read once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows = read_csv(folder / "results.csv")
        self.machine = _load_json(folder / "machine.json")
        self.suite = _load_json(folder / "suite.json")
        micro_path = folder / "micro.csv"
        self.micro = read_csv(micro_path) if micro_path.exists() else []
        self.styles = Styles(sorted({r["server"] for r in self.rows}))
        self.max_clients = {s["name"]: s["max_clients"] for s in self.suite.get("servers", [])}
        _register_references(self.suite.get("servers", []))

    def scenario(self, name: str) -> list[dict]:
        return [r for r in self.rows if r["scenario"] == name]

    def footer(self, micro: bool = False) -> str:
        m, s = self.machine, self.suite
        if micro:
            return (f"{m.get('cpu_model', '?')}, kernel {m.get('kernel', '?')} · Google Benchmark "
                    f"on eventfds, one CPU · {m.get('date', '')[:10]} · commit "
                    f"{str(m.get('commit') or '?')[:10]}")
        reps = s.get("repetitions", 0)
        spread = f"median of {reps} runs, whiskers = min–max" if reps > 1 else \
            "a single run"
        return (f"{m.get('cpu_model', '?')}, {m.get('cores_usable', '?')} CPUs, kernel "
                f"{m.get('kernel', '?')} · {s.get('preset', '?')} suite, {spread}, "
                f"{s.get('duration_s', '?')} s windows · {m.get('date', '')[:10]} · commit "
                f"{str(m.get('commit') or '?')[:10]}")


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _ok(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] in ("ok", "partial") and r["throughput_msgs"] != ""]


def _series(rows: list[dict], server: str, x: str) -> list[dict]:
    return sorted((r for r in _ok(rows) if r["server"] == server), key=lambda r: r[x])


def _thousands(value: float, _position=None) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _short(value: float) -> str:
    """Three significant digits: 27.9k, 868, 1.25M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _bytes(value: float, _position=None) -> str:
    if value >= 1024 and value % 1024 == 0:
        return f"{value / 1024:g} KiB"
    return f"{value:g} B"


def _figure(run: Run, title: str, panels: int = 2, rows: int = 1, micro: bool = False):
    fig, axes = plt.subplots(rows, panels, figsize=(6.2 * panels, 5.6 * rows + 0.4),
                             squeeze=False)
    fig.suptitle(title, fontsize=17, fontweight="bold")
    fig.text(0.01, 0.005, run.footer(micro), fontsize=9, color="#555555", ha="left",
             va="bottom")
    return fig, list(axes.flat)


def _save(fig, run: Run, name: str, legend_rows: int) -> None:
    charts = run.folder / "charts"
    charts.mkdir(exist_ok=True)
    # Room at the top for the title and the legend row(s), at the bottom for the footer.
    top = 0.935 - 0.045 * legend_rows * 6.0 / fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.03, 1, top))
    # A 256-colour palette keeps the PNGs a third of their size; flat-coloured
    # charts look the same.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    Image.open(buffer).convert("RGB").quantize(256).save(charts / f"{name}.png", optimize=True)
    # SVG without embedded font outlines or metadata dates: small, and the
    # same run draws byte-identical files.
    fig.savefig(charts / f"{name}.svg", metadata={"Date": None})
    plt.close(fig)


def _line(ax, run: Run, rows: list[dict], server: str, x: str, y: str,
          low: str | None = None, high: str | None = None, rings: bool = True,
          **kwargs) -> None:
    series = [r for r in _series(rows, server, x) if r[y] != ""]
    if not series:
        return
    xs = [r[x] for r in series]
    ys = [r[y] for r in series]
    style = dict(color=run.styles.colour(server), marker=run.styles.marker(server), label=server)
    kwargs = dict(kwargs)
    _reference_style(server, style, kwargs)
    style.update(kwargs)
    ax.plot(xs, ys, **style)
    if low and high and all(r[low] != "" for r in series):
        spread = [[v - r[low] for v, r in zip(ys, series)],
                  [r[high] - v for v, r in zip(ys, series)]]
        ax.errorbar(xs, ys, yerr=spread, fmt="none", ecolor=style["color"], elinewidth=1.5,
                    capsize=4, alpha=0.8)
    if rings and style["label"] != "_nolegend_":
        _mark_saturated(ax, [r for r in series if _generator_saturated(r)], x, y)


def _generator_saturated(row: dict) -> bool:
    return row.get("client_util_max") not in ("", None) and row["client_util_max"] > SATURATED


def _mark_saturated(ax, rows: list[dict], x: str, y: str) -> None:
    """A black ring where the generator was over 90% busy: that point may
    show the generator's limit rather than the server's."""
    if not rows:
        return
    labelled = any(h.get_label() == SATURATED_LABEL for h in ax.get_lines())
    ax.plot([r[x] for r in rows], [r[y] for r in rows], linestyle="none", marker="o",
            markersize=15, markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.2,
            label="_nolegend_" if labelled else SATURATED_LABEL)


def _limit_lines(ax, run: Run, rows: list[dict], offset: int = 0) -> None:
    """A dotted line where a server had to stop (select at FD_SETSIZE)."""
    for server in run.styles.order:
        if not any(r["server"] == server and r["status"] == "skipped" for r in rows):
            continue
        limit = run.max_clients.get(server)
        if not limit:
            continue
        x = limit - offset
        reason = " (FD_SETSIZE)" if limit < FD_SETSIZE else ""
        ax.axvline(x, color=run.styles.colour(server), linestyle=":", linewidth=2)
        ax.annotate(f"{server}\nstops at {limit}\nclients{reason}", xy=(x, 0),
                    xycoords=("data", "axes fraction"), xytext=(-6, 8),
                    textcoords="offset points", ha="right", va="bottom", fontsize=10,
                    color=run.styles.colour(server),
                    bbox=dict(facecolor="white", alpha=0.75, edgecolor="none", pad=1))


def _servers(run: Run, rows: list[dict]) -> list[str]:
    present = {r["server"] for r in rows}
    return [s for s in run.styles.order if s in present]


def _legend(fig, axes) -> int:
    """One legend for the whole figure, in a row under the title, so it never
    covers data: servers in their fixed order, then the other entries."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return 0
    servers = [label for label in entries if label in KNOWN_SERVERS or label in EXTRA_LABELS]
    order = sorted(entries, key=lambda label: (label not in servers, label == SATURATED_LABEL))
    fits = 5 if fig.get_size_inches()[0] >= 12 else 3
    columns = len(order) if len(order) <= fits else (len(order) + 1) // 2
    fig.legend([entries[label] for label in order], order, loc="upper center",
               bbox_to_anchor=(0.5, 0.94), ncol=columns, frameon=False, columnspacing=1.2,
               handletextpad=0.4)
    return -(-len(order) // columns)


# The drawings a scenario's registry entry can name (its `chart`): each takes
# the run and the entry, draws the chart into charts/NAME.*, and returns False
# when the scenario has nothing to draw.
DRAWINGS: dict[str, Callable[[Run, ScenarioSpec], bool]] = {}


def _drawing(kind: str):
    """Registers a drawing under `kind`."""

    def register(chart):
        DRAWINGS[kind] = chart
        return chart

    return register


def _title(run: Run, entry: ScenarioSpec) -> str:
    return run.suite.get("scenarios", {}).get(entry.name, entry.name)


def _chart(kind: str, panels: int = 2):
    """Makes `draw(run, rows, axes, entry)` the drawing `kind`: the
    scenario's rows, a figure titled after it, the legend, the files."""

    def wrap(draw):
        @_drawing(kind)
        def chart(run: Run, entry: ScenarioSpec) -> bool:
            rows = run.scenario(entry.name)
            if not _ok(rows):
                return False
            fig, axes = _figure(run, _title(run, entry), panels=panels)
            draw(run, rows, axes, entry)
            _save(fig, run, entry.name, _legend(fig, axes))
            return True

        return chart

    return wrap


def _latency_lines(ax, run: Run, rows: list[dict], server: str, x: str) -> None:
    """p99 (solid, with its spread) and p50 (dashed) of one server against `x`."""
    _line(ax, run, rows, server, x, "p99_us", "p99_min_us", "p99_max_us")
    _line(ax, run, rows, server, x, "p50_us", linestyle="--", linewidth=1.5, alpha=0.7,
          label="_nolegend_")


def _throughput_and_latency(run: Run, rows: list[dict], x: str, left, right,
                            throughput: str = "throughput_msgs", p50: bool = False) -> None:
    """Throughput on the left, p99 (and p50, dashed) on the right, per server."""
    spread = ("throughput_min", "throughput_max") if throughput == "throughput_msgs" else ()
    for server in _servers(run, rows):
        _line(left, run, rows, server, x, throughput, *spread)
        _line(right, run, rows, server, x, "p99_us", "p99_min_us", "p99_max_us")
        if p50:
            _line(right, run, rows, server, x, "p50_us", linestyle="--", linewidth=1.5,
                  alpha=0.7, label="_nolegend_")


# ---------------------------------------------------------------- charts


@_chart("connection_sweep")
def chart_connection_sweep(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    left, right = axes
    _throughput_and_latency(run, rows, entry.x, left, right, p50=True)
    left.set(xscale="log", xlabel="connections (each with one message in flight)",
             ylabel="throughput (messages/s)", title="Throughput")
    left.yaxis.set_major_formatter(FuncFormatter(_thousands))
    left.set_ylim(bottom=0)
    right.set(xscale="log", yscale="log", xlabel="connections", ylabel="latency (µs)",
              title="p99 latency (solid), p50 (dashed)")
    for ax in (left, right):
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        _limit_lines(ax, run, rows)


@_chart("offered_rate", panels=3)
def chart_offered_rate(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    latency, busy, achieved = axes
    window = run.suite.get("duration_s") or 1.0
    for row in _ok(rows):
        # Derived for the chart only: how busy the server was, and how much of
        # the offered load came back inside the window.
        row["server_busy_pct"] = 100 * row["server_cpu_s"] / window \
            if row["server_cpu_s"] != "" else ""
        row["achieved_pct"] = 100 * row["achieved_rate"] / row["offered_rate"]
    for server in _servers(run, rows):
        _latency_lines(latency, run, rows, server, entry.x)
        _line(busy, run, rows, server, entry.x, "server_busy_pct")
        _line(achieved, run, rows, server, entry.x, "achieved_pct")
    latency.set(yscale="log", ylabel="latency (µs)",
                title="p99 (solid), p50 (dashed)\nfrom the intended send time")
    busy.set(ylabel="server CPU (% of one core)", title="How busy the server was")
    busy.set_ylim(bottom=0)
    achieved.set(ylabel="achieved ÷ offered (%)", title="Answers inside the window")
    achieved.axhline(100, color="#777777", linestyle=":", linewidth=1.5)
    capacity = run.suite.get("capacity_msgs")
    for ax in (latency, busy, achieved):
        ax.set(xscale="log", xlabel="offered rate (messages/s)")
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        if capacity:
            ax.axvline(capacity, color="#777777", linestyle="-.", linewidth=1.2)
    if capacity:
        latency.annotate("best closed-loop\nthroughput", xy=(capacity, 0.98),
                         xycoords=("data", "axes fraction"), xytext=(-4, 0),
                         textcoords="offset points", ha="right", va="top", fontsize=10,
                         color="#555555")


@_chart("idle_sweep")
def chart_idle_sweep(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    left, right = axes
    active = _ok(rows)[0]["connections"]
    _throughput_and_latency(run, rows, entry.x, left, right)
    left.set(ylabel="throughput (messages/s)", title="Throughput of the busy connections")
    left.yaxis.set_major_formatter(FuncFormatter(_thousands))
    left.set_ylim(bottom=0)
    right.set(yscale="log", ylabel="p99 latency (µs)", title="p99 latency")
    idle = sorted({r[entry.x] for r in rows})
    for ax in (left, right):
        # Linear near zero, logarithmic beyond: 0 and 10 000 on one axis.
        ax.set_xscale("symlog", linthresh=100, linscale=0.5)
        ax.set_xlim(-20, max(idle) * 1.6)
        ax.set_xticks([x for x in (0, 100, 1000, 10000, 100000) if x <= max(idle) * 1.6])
        ax.set_xlabel("idle connections held open")
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        _limit_lines(ax, run, rows, offset=active)


@_chart("size_sweep")
def chart_size_sweep(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    left, right = axes
    _throughput_and_latency(run, rows, entry.x, left, right, throughput="throughput_mbps")
    left.set(xscale="log", yscale="log", ylabel="echoed payload (MB/s, one direction)",
             title="Bandwidth")
    right.set(xscale="log", yscale="log", ylabel="p99 latency (µs)", title="p99 latency")
    sizes = sorted({r[entry.x] for r in _ok(rows)})
    for ax in (left, right):
        ax.set_xlabel("message size")
        ax.set_xticks(sizes)
        ax.xaxis.set_major_formatter(FuncFormatter(_bytes))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))


def _bars(ax, run: Run, rows: list[dict], groups: list[tuple[str, list[dict]]], value: str,
          low: str | None, high: str | None) -> None:
    """Grouped bars: one group per case, one bar per server, with min-max whiskers."""
    servers = _servers(run, [r for _, g in groups for r in g])
    width = 0.8 / max(1, len(servers))
    for index, server in enumerate(servers):
        xs, heights, errors, flags = [], [], [[], []], []
        for position, (_, group) in enumerate(groups):
            match = [r for r in _ok(group) if r["server"] == server and r[value] != ""]
            if not match:
                continue
            row = match[0]
            xs.append(position + (index - (len(servers) - 1) / 2) * width)
            heights.append(row[value])
            flags.append(_generator_saturated(row))
            lo = row[low] if low and row[low] != "" else row[value]
            hi = row[high] if high and row[high] != "" else row[value]
            errors[0].append(row[value] - lo)
            errors[1].append(hi - row[value])
        reference = server in REFERENCE_LABELS
        ax.bar(xs, heights, width * 0.95, yerr=errors, capsize=3, label=_label(server),
               color="white" if reference else run.styles.colour(server),
               edgecolor=run.styles.colour(server) if reference else "white",
               hatch="//" if reference else None, linestyle="--" if reference else "-")
        # The number above each bar (and its whisker): slides are read from afar.
        # A dagger: the generator was over 90% busy there.
        for x, height, above, flag in zip(xs, heights, errors[1], flags):
            ax.annotate(_short(height) + ("†" if flag else ""), xy=(x, height + above),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=10)
            if flag and not any(t.get_text() == BAR_FLAG_NOTE for t in ax.texts):
                ax.text(1.0, -0.1, BAR_FLAG_NOTE, transform=ax.transAxes, ha="right",
                        va="top", fontsize=10, color="#333333")
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.1)


@_drawing("cost_bars")
def chart_cost_bars(run: Run, entry: ScenarioSpec) -> bool:
    """Bars per request cost: blocking and CPU-bound side by side, throughput above p99."""
    rows = run.scenario(entry.name)
    if not _ok(rows):
        return False
    blocking = sorted({r["block_us"] for r in rows if r["block_us"]})
    working = sorted({r["work_us"] for r in rows if r["work_us"]})
    panels = [("A handler that blocks", [(f"--block-us {b}\n(sleep {b} µs per read)",
                                          [r for r in rows if r["block_us"] == b])
                                         for b in blocking]),
              ("A CPU-bound handler", [(f"--work-us {w}\n(burn {w} µs per read)",
                                        [r for r in rows if r["work_us"] == w])
                                       for w in working])]
    panels = [p for p in panels if p[1]]
    # Throughput on top, p99 below: the pool's price shows in the tail.
    fig, axes = _figure(run, _title(run, entry), panels=len(panels), rows=2)
    for column, (kind, groups) in enumerate(panels):
        top, bottom = axes[column], axes[len(panels) + column]
        _bars(top, run, rows, groups, "throughput_msgs", "throughput_min", "throughput_max")
        top.set(ylabel="throughput (messages/s)", title=kind)
        top.yaxis.set_major_formatter(FuncFormatter(_thousands))
        _bars(bottom, run, rows, groups, "p99_us", "p99_min_us", "p99_max_us")
        bottom.set(yscale="log", ylabel="p99 latency (µs)", title=f"{kind}: p99 latency")
        low, high = bottom.get_ylim()
        bottom.set_ylim(low, high * 1.8)  # room for the numbers above the bars
    _save(fig, run, entry.name, _legend(fig, axes))
    return True


@_chart("concurrency_bars")
def chart_concurrency_bars(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    left, right = axes
    levels = sorted({r[entry.x] for r in rows})
    groups = [(f"{c} at a time", [r for r in rows if r[entry.x] == c]) for c in levels]
    _bars(left, run, rows, groups, "throughput_msgs", "throughput_min", "throughput_max")
    _bars(right, run, rows, groups, "p99_us", "p99_min_us", "p99_max_us")
    left.set(ylabel="connections per second", title="Connect + echo + close per second")
    left.yaxis.set_major_formatter(FuncFormatter(_thousands))
    right.set(ylabel="p99 latency (µs)", title="p99 of one operation (connect included)")


def _cores_runs(run: Run, scenario: str) -> list[dict]:
    """A listener-mode scenario's runs with what only the raw records hold: the
    counters per accepted connection and the connections each loop took."""
    runs_csv = run.folder / "runs.csv"
    if not runs_csv.exists():
        return []
    found = []
    for row in read_csv(runs_csv):
        if row["scenario"] != scenario or row["status"] != "ok" or not row.get("raw"):
            continue
        record = _load_json(run.folder / row["raw"])
        stats, usage = record.get("stats", {}), record.get("server_rusage", {})
        accepts = stats.get("accepts", 0)
        _, mode, threads = row["server"].split(":")
        if not accepts:
            continue
        found.append({
            "mode": mode, "threads": int(threads.lstrip("t")),
            "throughput": row["throughput_msgs"],
            "wakeups": stats.get("wakeups", 0) / accepts,
            "switches": (usage.get("voluntary_switches", 0) +
                         usage.get("involuntary_switches", 0)) / accepts,
            "per_thread": [stats.get(f"thread{i}_accepts", 0) for i in range(int(threads[1:]))],
        })
    return found


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


CORES_MODES = {"reuseport": ("#009E73", "o"), "exclusive": ("#0072B2", "s"),
               "shared": ("#D55E00", "^")}


@_drawing("listener_modes")
def chart_listener_modes(run: Run, entry: ScenarioSpec) -> bool:
    """msg/s, wakeups and context switches per accepted connection vs
    --threads, one line per listener mode; connections per loop as bars."""
    runs = _cores_runs(run, entry.name)
    if not runs:
        return False
    fig, axes = _figure(run, _title(run, entry), panels=2, rows=2)
    most = max(r["threads"] for r in runs)
    for mode, (colour, marker) in CORES_MODES.items():
        mine = [r for r in runs if r["mode"] == mode]
        counts = sorted({r["threads"] for r in mine})
        if not counts:
            continue
        style = dict(color=colour, marker=marker, label=f"--listener {mode}")
        for ax, key in zip(axes[:3], ("throughput", "switches", "wakeups")):
            ax.plot(counts, [_median([r[key] for r in mine if r["threads"] == c]) for c in counts],
                    **style)
        # Connections per loop at the largest --threads, summed over the repetitions.
        widest = [r for r in mine if r["threads"] == most]
        if widest:
            totals = [sum(r["per_thread"][i] for r in widest) for i in range(most)]
            share = [100 * t / max(1, sum(totals)) for t in totals]
            offset = (list(CORES_MODES).index(mode) - 1) * 0.27
            axes[3].bar([i + offset for i in range(most)], share, width=0.27, color=colour,
                        label="_nolegend_")
    cpus = run.machine.get("cores_usable", "?")
    placement = run.machine.get("placement", "")
    axes[0].set(xlabel="--threads", ylabel="connections per second",
                title="Connect + echo 64 B + close per second")
    axes[0].yaxis.set_major_formatter(FuncFormatter(_thousands))
    axes[1].set(xlabel="--threads", ylabel="context switches per connection",
                title="Server context switches per accepted connection")
    axes[2].set(xlabel="--threads", ylabel="wakeups per connection",
                title="epoll_wait returns per accepted connection")
    axes[3].set(xlabel=f"loop (--threads {most})", ylabel="% of the connections",
                title="Connections each loop accepted", xticks=list(range(most)))
    for ax in axes[:3]:
        ax.set_xticks(sorted({r["threads"] for r in runs}))
        ax.set_ylim(bottom=0)
    fig.text(0.5, 0.035, f"This machine has {cpus} CPUs and the load generator needs its own: "
             f"{placement}. Thread counts above the server's CPUs share them.",
             ha="center", fontsize=10, color="#333333")
    _save(fig, run, entry.name, _legend(fig, axes))
    return True


def chart_efficiency(run: Run) -> bool:
    """Wakeups, system calls and CPU per message, from the ping-pong sweep
    (the scenario the registry names the capacity source)."""
    entry = next(s for s in SCENARIOS if s.capacity_source)
    rows = run.scenario(entry.name)
    if not _ok(rows):
        return False
    fig, axes = _figure(run, "What one echoed message costs the server (ping-pong sweep)",
                        panels=2, rows=2)
    panels = [
        ("wakeups_per_msg", "wakeups per message", "Returns from select/poll/epoll_wait"),
        ("syscalls_per_msg", "system calls per message",
         "Waits + reads + writes + epoll_ctl + accepts"),
        ("ctl_per_msg", "epoll_ctl calls per message", "Interest changes (epoll_ctl)"),
        ("server_cpu_us_per_msg", "server CPU per message (µs)", "Server CPU time per message"),
    ]
    for ax, (column, label, title) in zip(axes, panels):
        for server in _servers(run, rows):
            # What a message costs the server does not depend on who was the
            # bottleneck, so no rings here.
            _line(ax, run, rows, server, entry.x, column, rings=False)
        ax.set(xscale="log", xlabel="connections", ylabel=label, title=title)
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_ylim(bottom=0)
    # The generator's own cost, for comparison: if it is below the servers',
    # one generator thread outruns one server thread.
    client = {}
    for r in _ok(rows):
        if r["client_cpu_us_per_msg"] != "":
            client.setdefault(r[entry.x], []).append(r["client_cpu_us_per_msg"])
    if client:
        xs = sorted(client)
        ys = [sorted(client[x])[len(client[x]) // 2] for x in xs]
        axes[3].plot(xs, ys, color="#777777", linestyle=":", marker=".",
                     label="the load generator")
    _save(fig, run, "efficiency", _legend(fig, axes))
    return True


@_chart("slow_clients", panels=3)
def chart_slow_clients(run: Run, rows: list[dict], axes, entry: ScenarioSpec) -> None:
    """Ten thousand slow clients: latency from the intended send time, what a
    message costs the server, and how much of the offered load was answered."""
    latency, cost, answered = axes
    for row in _ok(rows):
        row["answered_pct"] = 100 * row["answered_rate"] / row["offered_rate"] \
            if row["answered_rate"] != "" and row["offered_rate"] else ""
    for server in _servers(run, rows):
        _latency_lines(latency, run, rows, server, entry.x)
        _line(cost, run, rows, server, entry.x, "server_cpu_us_per_msg", rings=False)
        _line(answered, run, rows, server, entry.x, "answered_pct")
    latency.set(yscale="log", ylabel="latency (µs)",
                title="p99 (solid), p50 (dashed)\nfrom the intended send time")
    cost.set(ylabel="server CPU per message (µs)", title="What a message costs the server")
    cost.set_ylim(bottom=0)
    answered.set(ylabel="answered ÷ offered (%)", title="Messages due that were answered")
    answered.axhline(100, color="#777777", linestyle=":", linewidth=1.5)
    for ax in (latency, cost, answered):
        ax.set(xscale="log", xlabel="offered rate, all connections (messages/s)")
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    skipped = sorted({r["server"] for r in rows if r["status"] == "skipped"})
    if skipped:
        latency.text(0.01, 0.01, "not run: " + ", ".join(skipped) + "\n(FD_SETSIZE or "
                     "RLIMIT_NOFILE; see results.csv)", transform=latency.transAxes,
                     fontsize=9, color="#555555", va="bottom")


def chart_micro(run: Run) -> bool:
    if not run.micro:
        return False
    fig, (ax,) = _figure(run, "One call, one ready descriptor, N watched (Google Benchmark)",
                         panels=1, micro=True)
    fig.set_size_inches(10, 6.4)
    for call, (label, colour_of, linestyle) in MICRO_CALLS.items():
        points = sorted((r["fds"], r["ns_per_call"]) for r in run.micro if r["call"] == call)
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label,
                color=KNOWN_SERVERS[colour_of][0], marker=KNOWN_SERVERS[colour_of][1],
                linestyle=linestyle)
    ax.axvline(FD_SETSIZE, color=KNOWN_SERVERS["select_server"][0], linestyle=":", linewidth=2)
    ax.annotate("FD_SETSIZE: select()\ncannot go further", xy=(FD_SETSIZE, 0.97),
                xycoords=("data", "axes fraction"), xytext=(6, 0), textcoords="offset points",
                va="top", fontsize=10, color=KNOWN_SERVERS["select_server"][0])
    ax.set(xscale="log", yscale="log", xlabel="descriptors watched",
           ylabel="time per call (ns)")
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    _save(fig, run, "micro", _legend(fig, (ax,)))
    return True


# Charts of no single scenario's own, drawn after the scenarios'.
OTHER_CHARTS = {"efficiency": chart_efficiency, "micro": chart_micro}


def plot_folder(folder: Path) -> list[str]:
    """Draws every chart the folder has data for; returns their names."""
    run = Run(folder)
    drawn = [entry.name for entry in SCENARIOS if DRAWINGS[entry.chart](run, entry)]
    return drawn + [name for name, chart in OTHER_CHARTS.items() if chart(run)]
