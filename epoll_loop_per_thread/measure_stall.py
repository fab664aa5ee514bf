#!/usr/bin/env python3
"""The weakness of SO_REUSEPORT: a busy loop still owns its accept queue.

    python3 epoll_loop_per_thread/measure_stall.py BUILD_DIR [--listener MODE]

Starts epoll_loop_per_thread with 2 loops and --block-us 1000000 (every read
sleeps 1 s in its loop). One client keeps one loop busy with six messages in
a row; meanwhile six new clients, one after the other, each send one byte and
time the echo. A client whose connection lands on the idle loop waits 1 s (its
own read); one hashed to the busy loop waits for that loop first.
"""
import argparse
import socket
import subprocess
import threading
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--listener", default="reuseport")
    args = parser.parse_args()
    server = args.build_dir / "epoll_loop_per_thread" / "epoll_loop_per_thread"
    proc = subprocess.Popen([str(server), "--port", "0", "--threads", "2", "--listener",
                             args.listener, "--block-us", "1000000"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().strip().rsplit(":", 1)[1])

        def busy() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                for _ in range(6):
                    client.sendall(b"y")
                    client.recv(1)

        threading.Thread(target=busy, daemon=True).start()
        time.sleep(0.2)  # let the busy client's first request start
        waits = []
        for _ in range(6):
            start = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                client.sendall(b"x")
                client.recv(1)
            waits.append(round(time.monotonic() - start, 1))
        print(f"{args.listener}: seconds to echo one byte, six new clients: {waits}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
