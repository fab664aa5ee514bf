"""muxbench: the comparative benchmark of the muxlab servers.

  python3 -m muxbench run [--quick | --full] [--server NAME=PATH]...   (PYTHONPATH=bench)
  python3 -m muxbench plot RESULTS_FOLDER
  python3 -m muxbench summary RESULTS_FOLDER      (the numbers as Markdown tables)

bench/run builds the project and calls `run`; bench/plot calls `plot`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import summary
from .build import BuildInfo, Server, load_build_info, parse_server
from .execute import Placement
from .runner import NoiseGuard, Suite
from .suite import PRESETS, Preset, preset

BENCH_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIR = BENCH_DIR.parent

MATPLOTLIB_HELP = (
    "matplotlib is not importable by any python3 found (tried this interpreter, python3 on "
    "PATH and /usr/bin/python3).\nInstall Debian's package: sudo apt-get install "
    "python3-matplotlib (it serves /usr/bin/python3), or: python3 -m pip install matplotlib.\n"
    "Then draw the charts with: bench/plot {folder}")


def _default_build_info() -> Path:
    build = os.environ.get("MUXLAB_BUILD_DIR") or str(SOURCE_DIR / "build" / "release")
    return Path(build) / "bench" / "muxbench-build.json"


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="muxbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a suite and draw its charts")
    size = run.add_mutually_exclusive_group()
    for name in PRESETS:
        if name != "default":
            size.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                              help=f"the {name} suite instead of the default one")
    run.set_defaults(preset="default")
    run.add_argument("--build-info", type=Path, default=None,
                     help="bench/muxbench-build.json of the build to measure "
                          "(default: $MUXLAB_BUILD_DIR or build/release)")
    run.add_argument("--server", action="append", default=[], metavar="NAME=PATH",
                     help="also measure this executable (any server honouring the contract); "
                          "NAME=PATH[,max_clients=N] or PATH; repeatable")
    run.add_argument("--only", default="",
                     help="comma-separated server names: measure just these")
    run.add_argument("--server-args", action="append", default=[], metavar="NAME=ARGS",
                     help="extra flags for one server, e.g. "
                          "'epoll_oneshot_pool=--max-threads 8'; repeatable")
    run.add_argument("--scenarios", default="",
                     help="comma-separated scenarios to run (default: all of the suite)")
    run.add_argument("--reps", type=int, default=None, help="repetitions (at least 3 advised)")
    run.add_argument("--rates", default="",
                     help="offered rates (msg/s, comma-separated) for the open-loop sweep, "
                          "instead of fractions of the measured capacity")
    run.add_argument("--server-cpus", default=None, help="CPU list for the servers, e.g. 1")
    run.add_argument("--client-cpus", default=None, help="CPU list for the generator, e.g. 0")
    run.add_argument("--client-sleeps", action="store_true",
                     help="the generator sleeps when idle instead of polling (it polls by "
                          "default when it has CPUs of its own)")
    run.add_argument("--noise-limit", type=float, default=0.2, metavar="SHARE",
                     help="measure a run again when other processes used more than this share "
                          "of the machine's CPU during it (default 0.2)")
    run.add_argument("--noise-retries", type=int, default=1, metavar="N",
                     help="how many times at most (default 1; 0 never measures again)")
    run.add_argument("--out", type=Path, default=None,
                     help="results folder (default: bench/results/<timestamp>-<suite>)")
    run.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    run.add_argument("--no-plot", action="store_true", help="write the files, draw no charts")

    plot = commands.add_parser("plot", help="draw the charts of a results folder again")
    plot.add_argument("folder", type=Path)
    plot.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)

    summary_command = commands.add_parser("summary", help="print a results folder as tables")
    summary_command.add_argument("folder", type=Path)
    return parser.parse_args(argv)


def _servers(args: argparse.Namespace, registered: list[Server]) -> list[Server]:
    servers = list(registered) + [parse_server(entry) for entry in args.server]
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {s.name for s in servers}
        if unknown:
            raise SystemExit(f"muxbench: no server named {', '.join(sorted(unknown))}")
        servers = [s for s in servers if s.name in wanted]
    extra: dict[str, tuple[str, ...]] = {}
    for entry in args.server_args:
        name, _, flags = entry.partition("=")
        extra[name] = tuple(flags.split())
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise SystemExit("muxbench: two servers share a name; name them with NAME=PATH")
    return [dataclasses.replace(s, args=extra.get(s.name, s.args)) for s in servers]


def matplotlib_python() -> str | None:
    """An interpreter that can import matplotlib: this one, python3, or Debian's."""
    if importlib.util.find_spec("matplotlib") is not None:
        return sys.executable
    for candidate in (shutil.which("python3"), "/usr/bin/python3"):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        probe = subprocess.run([candidate, "-c", "import matplotlib"], capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


def draw(folder: Path) -> bool:
    """Draws the charts, in another interpreter if this one has no matplotlib."""
    python = matplotlib_python()
    if python is None:
        sys.stderr.write(MATPLOTLIB_HELP.format(folder=folder) + "\n")
        return False
    if python == sys.executable:
        from . import plot

        plot.plot_folder(folder)
        return True
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
    command = [python, "-m", "muxbench", "plot", "--quiet", str(folder)]
    return subprocess.run(command, env=env).returncode == 0


def _lock_folder(out: Path):
    """Holds out/.lock for as long as this process runs, or says who does.

    A server truncates its stats file when it starts: a second run writing into
    the same folder would empty the first one's files before it reads them."""
    lock = open(out / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        sys.stderr.write(f"muxbench: another run (pid {holder}) is writing into {out}: wait for "
                         "it to finish or choose another --out\n")
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _run(args: argparse.Namespace) -> int:
    build_info_path = args.build_info or _default_build_info()
    if not build_info_path.exists():
        sys.stderr.write(f"muxbench: {build_info_path} does not exist: build the project first "
                         "(bench/run does)\n")
        return 2
    build = load_build_info(build_info_path)
    if not os.access(build.loadgen, os.X_OK):
        sys.stderr.write(f"muxbench: the load generator {build.loadgen} is not built\n")
        return 2
    try:
        servers = _servers(args, build.servers)
    except ValueError as error:
        sys.stderr.write(f"muxbench: {error}\n")
        return 2
    if not servers:
        sys.stderr.write("muxbench: no servers to measure\n")
        return 2
    chosen = preset(args.preset)
    if args.reps:
        chosen.repetitions = args.reps
    if args.scenarios:
        wanted = args.scenarios.split(",")
        chosen.scenarios = [s for s in chosen.scenarios if s.name in wanted]
    if args.no_micro:
        chosen.micro_min_time_s = 0
    if build.microbench is None:
        sys.stderr.write("muxbench: the micro-benchmarks are not built; skipping them\n")
    if build.sanitize:
        sys.stderr.write(f"muxbench: this build has sanitizers ({build.sanitize}): "
                         "fine for checking, not for numbers\n")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH_DIR / "results" / f"{stamp}-{chosen.name}"
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock_folder(out)
    if lock is None:
        return 2
    try:
        return _measure(args, chosen, build, servers, out)
    finally:
        (out / ".lock").unlink(missing_ok=True)
        lock.close()


def _measure(args: argparse.Namespace, chosen: Preset, build: BuildInfo, servers: list[Server],
             out: Path) -> int:
    rates = [float(r) for r in args.rates.split(",")] if args.rates else None
    placement = Placement.choose(args.server_cpus, args.client_cpus, not args.client_sleeps)
    sys.stderr.write(f"muxbench: {chosen.name} suite, {len(servers)} servers "
                     f"({', '.join(s.name for s in servers)}), {chosen.repetitions} repetitions, "
                     f"{placement.describe()}\n")
    if len(os.sched_getaffinity(0)) < 2:
        sys.stderr.write("muxbench: one CPU only: server and generator share it\n")

    noise = NoiseGuard(args.noise_limit, args.noise_retries)
    suite = Suite(chosen, build, servers, out, placement, SOURCE_DIR, rates, noise)
    suite.run()
    for line in suite.warnings.lines:
        sys.stderr.write(f"warning: {line}\n")
    if noise.repeated:
        sys.stderr.write(f"{noise.repeated} runs were measured again: other processes used more "
                         f"than {noise.limit:.0%} of the CPUs during them\n")
    sys.stderr.write(f"results: {out}/results.csv, summary.md (raw runs in {out}/raw)\n")
    if not args.no_plot and draw(out):
        sys.stderr.write(f"charts:  {out}/charts/ (PNG and SVG)\n")
    return 130 if suite.interrupted else 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in ("plot", "summary") and not (args.folder / "results.csv").exists():
        sys.stderr.write(f"muxbench: no results.csv in {args.folder}\n")
        return 2
    if args.command == "summary":
        print(summary.summarise(args.folder))
        return 0
    if args.command == "plot":
        if not draw(args.folder):
            return 1
        if not args.quiet:
            sys.stderr.write(f"charts: {args.folder}/charts/ (PNG and SVG)\n")
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
