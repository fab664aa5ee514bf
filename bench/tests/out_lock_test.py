"""bench-smoke: two runs never write into one results folder at once.

Each run's server opens its stats file (truncating it) when it starts; a second
run into the same --out would empty the files of the first between its
server's exit and the runner's read. So a run locks its folder, and a second
one stops at once with exit 2 and says why. This test holds the lock itself
(as a first run would) and starts a run into the folder.

  python3 out_lock_test.py --build-info BUILD/bench/muxbench-build.json --out DIR
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_process import arguments  # noqa: E402


def main() -> int:
    args = arguments()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    failures = []
    with open(args.out / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        command = [sys.executable, "-m", "muxbench", "run", "--smoke", "--no-micro", "--no-plot",
                   "--scenarios", "pingpong", "--only", "select_server",
                   "--build-info", str(args.build_info.resolve()),
                   "--out", str(args.out.resolve())]
        try:
            run = subprocess.run(command, cwd=BENCH, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            failures.append("a second run into a locked folder did not stop within 60 s")
        else:
            if run.returncode != 2:
                failures.append(f"a second run into a locked folder exited {run.returncode}, "
                                "not 2")
            if "another run" not in run.stderr or str(os.getpid()) not in run.stderr:
                failures.append(f"it did not name the run holding the folder: {run.stderr!r}")
            if (args.out / "raw").exists():
                failures.append("it measured anyway: raw/ was written")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
