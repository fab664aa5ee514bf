"""bench-smoke: the library reference servers honour what the benchmark relies on.

For every reference row of the build (libuv, libevent): it prints the
readiness line, echoes, keeps echoing after the client's half-close and then
closes its side, holds a client that does not read without losing a byte,
exits 0 on SIGTERM and writes its stats file (bytes in = bytes out = bytes
sent); a bad flag exits 2.

  python3 reference_test.py --build-info BUILD/bench/muxbench-build.json --out DIR
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from muxbench.build import load_build_info  # noqa: E402
from server_process import arguments, wait_for_port  # noqa: E402

failures: list[str] = []
DEADLINE_S = 10


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def start(path: str, stats: Path) -> tuple[subprocess.Popen, int | None]:
    server = subprocess.Popen([path, "--port", "0", "--stats-json", str(stats)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    return server, wait_for_port(server, time.monotonic() + 15, exact=True)


def receive_until_eof(sock: socket.socket, expected: int) -> bytes:
    """Reads until the server closes its side (or the deadline passes)."""
    data = bytearray()
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            raise TimeoutError(f"reset by the server after {len(data)} of {expected} bytes")
        if not chunk:
            return bytes(data)
        data += chunk
    raise TimeoutError(f"no EOF after {len(data)} of {expected} bytes")


def session(name: str, port: int, pid: int) -> int:
    """Echo, a slow reader, half-close. Returns the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        sock.sendall(b"hello\n")
        sent += 6
        got = b""
        while len(got) < 6:
            chunk = sock.recv(64)
            if not chunk:
                break
            got += chunk
        check(got == b"hello\n", f"{name}: echoed {got!r} for b'hello\\n'")
        # 4 MiB without reading: far beyond the socket buffers and the 256 KiB cap,
        # so the server must stop reading us (backpressure) and not lose anything.
        bulk = bytes(range(256)) * (4 * 4096)
        sock.setblocking(False)
        view, received = memoryview(bulk), bytearray()
        deadline = time.monotonic() + DEADLINE_S
        while view and time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], 0.05)
            if writable:
                try:
                    view = view[sock.send(view):]
                except BlockingIOError:
                    pass
            elif len(view) < len(bulk):
                break  # stalled: the server has stopped reading, as it should
        pending = view
        # Now read while sending the rest, then half-close and read to EOF.
        while pending and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 0.05)
            if readable:
                received += sock.recv(65536)
            if writable:
                try:
                    pending = pending[sock.send(pending):]
                except BlockingIOError:
                    pass
        check(not pending, f"{name}: could not send the bulk within {DEADLINE_S} s")
        # The last 32 KiB and the FIN reach a stopped server, so it sees the
        # bytes and the half-close in one wakeup: it must echo them all first.
        # (The echo of the bulk is first read back, so the tail fits the buffers.)
        while len(received) < len(bulk) and time.monotonic() < deadline:
            if select.select([sock], [], [], 0.05)[0]:
                received += sock.recv(65536)
        sock.setblocking(True)
        tail = bytes(reversed(range(256))) * 128
        os.kill(pid, signal.SIGSTOP)
        try:
            sock.sendall(tail)
            sock.shutdown(socket.SHUT_WR)  # on loopback both are queued at the server now
        finally:
            os.kill(pid, signal.SIGCONT)
        bulk += tail
        sent += len(bulk)
        try:
            received += receive_until_eof(sock, len(bulk))
        except TimeoutError as error:  # also a reset
            check(False, f"{name}: after the half-close: {error}")
        check(bytes(received) == bulk,
              f"{name}: echoed {len(received)} bytes of {len(bulk)}, "
              f"{'intact' if bulk.startswith(bytes(received)) else 'corrupted'}")
    return sent


def test_server(name: str, path: str, out: Path) -> None:
    stats = out / f"{name}.stats.json"
    stats.unlink(missing_ok=True)
    server, port = start(path, stats)
    try:
        check(port is not None, f"{name}: no exact 'listening on 127.0.0.1:PORT' line")
        sent = session(name, port, server.pid) if port is not None else 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            server.kill()
            code = f"still running {DEADLINE_S} s after SIGTERM"
        stderr = server.stderr.read().decode(errors="replace")
        server.stdout.close()
        server.stderr.close()
    check(code == 0, f"{name}: exit {code} after SIGTERM; stderr: {stderr}")
    if not stats.exists():
        check(False, f"{name}: no stats file")
        return
    counters = json.loads(stats.read_text())
    check(counters.get("server") == name, f"{name}: stats name {counters.get('server')}")
    check(counters.get("bytes_in") == sent and counters.get("bytes_out") == sent,
          f"{name}: stats bytes_in {counters.get('bytes_in')}, bytes_out "
          f"{counters.get('bytes_out')}, sent {sent}")
    check(counters.get("connections_total") == 1,
          f"{name}: connections_total {counters.get('connections_total')}")
    check(0 < counters.get("max_pending_bytes", 0) <= 512 * 1024,
          f"{name}: held {counters.get('max_pending_bytes')} bytes for one connection "
          "(the cap is 256 KiB, plus one read)")
    for flags in (["--port", "70000"], ["--port", "0", "--trace"], ["--no-such-flag"]):
        try:
            run = subprocess.run([path, *flags], capture_output=True, text=True,
                                 timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            check(False, f"{name} {' '.join(flags)}: still running after {DEADLINE_S} s")
            continue
        check(run.returncode == 2 and "listening" not in run.stdout,
              f"{name} {' '.join(flags)}: exit {run.returncode}, expected 2 before listening")


def main() -> int:
    args = arguments()
    references = [s for s in load_build_info(args.build_info).servers if s.reference]
    if not references:
        print("reference: no library reference servers in this build (libuv1-dev, libevent-dev)")
    for server in references:
        test_server(server.name, server.path, args.out)
    for failure in failures:
        print(f"FAIL: {failure}")
    print(f"reference: {len(references)} servers, "
          + ("passed" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
