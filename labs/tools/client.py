#!/usr/bin/env python3
"""A tiny scripted client for the labs: talks to any muxlab echo server.

Each STEP runs in order on the current connection:
  TEXT          send TEXT (\\n and \\t are understood) and wait for its echo
  bytes:N       send N bytes in one send() call and wait until all N came back
  urgent:C      send the byte C as TCP urgent data (MSG_OOB), wait for it back
  cork:TEXT     send TEXT and the FIN in the same segment, then read until EOF
  fin           send the FIN (shutdown SHUT_WR), then read until EOF
  new           open another connection and make it the current one
  idle:N        open N more connections that stay silent until the end
                (thousands work: the descriptor limit is raised as far as allowed)
  pause:S       do nothing for S seconds, every connection left open
  noread        send without reading until the server stops taking bytes (its
                buffer and the sockets' are full); noread:N sends at most N bytes
  drain         read everything the server still owes the current connection
  pipeline:N:TEXT  send TEXT N times back to back, then wait for all N echoes
  parallel:N:TEXT  open N more connections, send TEXT on all of them at once and
                wait for every echo; prints how long the slowest one took
  ping:N        N round trips of a short message; prints the median and the worst
  flood:S       start a connection that, for S seconds, sends 64 KiB blocks as fast
                as the server takes them and reads its echo; the next steps run
                meanwhile (e.g. flood:3 ping:50)

Exit status: 0 when every step got what it expected, 1 otherwise (a connection
that fails is reported in one line), 2 on usage.
Example:  labs/tools/client.py --port 9000 'hello\\n' urgent:! 'bye\\n' fin
"""
import argparse
import errno
import resource
import selectors
import socket
import sys
import threading
import time


class Failure(Exception):
    """A step that cannot go on; reported in one line."""


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(host, port, deadline):
    # The server may still be starting: retry "refused" until the deadline.
    while True:
        try:
            return socket.create_connection((host, port), timeout=1)
        except OSError as error:
            if time.monotonic() > deadline:
                raise Failure(f"cannot connect to {host}:{port}: {error.strerror or error}")
            time.sleep(0.05)


def connect_many(host, port, count, timeout):
    """Opens `count` connections with non-blocking connects, waiting for them with
    epoll (through selectors), so any number of descriptors works."""
    socks, pending = [], selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((host, port))
            socks.append(sock)
            pending.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while pending.get_map():
            left = deadline - time.monotonic()
            ready = pending.select(max(left, 0)) if left > 0 else []
            if not ready:
                raise Failure(f"{len(pending.get_map())} of {count} connections to "
                              f"{host}:{port} did not complete within {timeout:g} s")
            for key, _ in ready:
                error = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise Failure(f"connection to {host}:{port} failed: "
                                  f"{errno.errorcode.get(error, error)}")
                pending.unregister(key.fileobj)
    except OSError as error:
        raise Failure(f"cannot open connection {len(socks)} of {count}: "
                      f"{error.strerror or error}")
    finally:
        pending.close()
    for sock in socks:
        sock.setblocking(True)
    return socks


def show(data):
    """repr() of what came back, cut short when it is long."""
    return repr(data) if len(data) <= 60 else f"{data[:40]!r}... ({len(data)} bytes)"


def receive(sock, size, timeout):
    """Reads until `size` bytes, EOF or a reset, or until nothing came for `timeout` s."""
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as waiting:
        waiting.register(sock, selectors.EVENT_READ)
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not waiting.select(left):
                break
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data, "reset"
            if not chunk:
                return data, "eof"
            data += chunk
            deadline = time.monotonic() + timeout
    return data, "open"


def read_to_end(sock, timeout):
    return receive(sock, 1 << 40, timeout)


def decode(text):
    return text.encode().decode("unicode_escape").encode()


def pattern(size):
    # Never repeats within 251 bytes: a lost or doubled chunk cannot compare equal.
    return bytes((i * 7 + i // 251) % 251 for i in range(size))


def send_without_reading(sock, limit, still=0.3):
    """Sends until nothing more is taken for `still` seconds, or `limit` bytes."""
    block = pattern(65536)
    sent = 0
    sock.setblocking(False)
    with selectors.DefaultSelector() as waiting:
        waiting.register(sock, selectors.EVENT_WRITE)
        while sent < limit:
            try:
                sent += sock.send(block[:min(len(block), limit - sent)])
                continue
            except BlockingIOError:
                pass
            if not waiting.select(still):
                break
    sock.setblocking(True)
    return sent


class Flood(threading.Thread):
    def __init__(self, sock, seconds):
        super().__init__(daemon=True)
        self.sock, self.seconds = sock, seconds
        self.sent = self.received = 0
        self.error = None

    def run(self):
        block = pattern(65536)
        self.sock.setblocking(False)
        until = time.monotonic() + self.seconds
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            try:
                while time.monotonic() < until:
                    for _, mask in waiting.select(0.05):
                        if mask & selectors.EVENT_WRITE:
                            try:
                                self.sent += self.sock.send(block)
                            except BlockingIOError:
                                pass
                        if mask & selectors.EVENT_READ:
                            try:
                                chunk = self.sock.recv(65536)
                            except BlockingIOError:
                                chunk = b"-"
                            if not chunk:
                                return
                            self.received += len(chunk)
            except OSError as error:
                self.error = error


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for an answer that does not come "
                             "(default 3; a long answer may take longer while it keeps coming)")
    parser.add_argument("steps", nargs="+", metavar="STEP")
    args = parser.parse_args()
    raise_fd_limit()

    ok = True
    number = 0
    idle = []
    floods = []
    owed = {}  # connection -> bytes sent by noread and not read back yet

    def open_connection():
        nonlocal number
        sock = connect(args.host, args.port, time.monotonic() + 5)
        sock.setblocking(True)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        number += 1
        print(f"connection {number}: connected to {args.host}:{args.port}")
        return sock

    current = open_connection()
    earlier = []  # connections replaced by "new" stay open until the end
    for step in args.steps:
        if step == "new":
            earlier.append(current)
            current = open_connection()
        elif step.startswith("idle:"):
            idle += connect_many(args.host, args.port, int(step[5:]), max(args.timeout, 10))
            print(f"opened {step[5:]} idle connections")
        elif step.startswith("pause:"):
            time.sleep(float(step[6:]))
            print(f"paused {step[6:]} s")
        elif step.startswith("bytes:"):
            size = int(step[6:])
            text = pattern(size)
            current.sendall(text)
            data, ending = receive(current, size, args.timeout)
            print(f"connection {number}: sent {size} bytes in one go, "
                  f"{len(data)} came back{' intact' if data == text else ''}")
            ok &= data == text
        elif step == "noread" or step.startswith("noread:"):
            limit = int(step[7:]) if step.startswith("noread:") else 1 << 30
            sent = send_without_reading(current, limit)
            owed[current] = owed.get(current, 0) + sent
            print(f"connection {number}: sent {sent} bytes without reading"
                  f"{'' if sent >= limit else ' (then the server stopped taking more)'}")
        elif step == "drain":
            want = owed.pop(current, 0)
            data, ending = receive(current, want, args.timeout)
            print(f"connection {number}: read back {len(data)} of {want} bytes")
            ok &= len(data) == want
        elif step.startswith("pipeline:"):
            count, _, text = step[9:].partition(":")
            text = decode(text)
            current.sendall(text * int(count))
            data, ending = receive(current, len(text) * int(count), args.timeout)
            good = data == text * int(count)
            print(f"connection {number}: sent {count} x {len(text)} bytes back to back, "
                  f"{len(data)} came back{' in order' if good else ''}")
            ok &= good
        elif step.startswith("parallel:"):
            count, _, text = step[9:].partition(":")
            text = decode(text)
            socks = connect_many(args.host, args.port, int(count), max(args.timeout, 10))
            start = time.monotonic()
            for sock in socks:
                sock.sendall(text)
            answered = 0
            for sock in socks:
                left = max(0.0, start + args.timeout - time.monotonic())
                data, _ = receive(sock, len(text), left)
                answered += data == text
            took = time.monotonic() - start
            print(f"{answered} of {count} parallel connections echoed {text!r}, "
                  f"all within {took:.2f} s")
            ok &= answered == int(count)
            earlier += socks
        elif step.startswith("ping:"):
            times = []
            for i in range(int(step[5:])):
                message = f"ping {i}".encode()
                start = time.monotonic()
                current.sendall(message)
                data, _ = receive(current, len(message), args.timeout)
                if data != message:
                    print(f"connection {number}: ping {i} got {show(data)} within {args.timeout:g} s")
                    ok = False
                    break
                times.append(time.monotonic() - start)
            if times:
                times.sort()
                print(f"connection {number}: {len(times)} pings, median "
                      f"{times[len(times) // 2] * 1000:.2f} ms, worst {times[-1] * 1000:.2f} ms")
        elif step.startswith("flood:"):
            sock = connect(args.host, args.port, time.monotonic() + 5)
            flood = Flood(sock, float(step[6:]))
            flood.start()
            floods.append(flood)
            print(f"flooding on a new connection for {step[6:]} s")
        elif step.startswith("urgent:"):
            byte = step[7:8].encode()
            current.send(byte, socket.MSG_OOB)
            back = b""
            deadline = time.monotonic() + args.timeout
            with selectors.DefaultSelector() as waiting:
                waiting.register(current, selectors.EVENT_READ)
                while time.monotonic() < deadline and not back:
                    waiting.select(0.1)
                    try:
                        back = current.recv(1, socket.MSG_OOB | socket.MSG_DONTWAIT)
                    except (BlockingIOError, OSError):
                        time.sleep(0.01)
            print(f"connection {number}: urgent {byte!r} sent, came back as urgent: {back!r}")
            ok &= back == byte
        elif step == "fin" or step.startswith("cork:"):
            if step.startswith("cork:"):
                text = decode(step[5:])
                current.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                current.sendall(text)
            else:
                text = b""
            current.shutdown(socket.SHUT_WR)
            data, ending = read_to_end(current, args.timeout)
            print(f"connection {number}: FIN sent, got {show(data)} then {ending}")
            ok &= data == text and ending == "eof"
        else:
            text = decode(step)
            current.sendall(text)
            data, ending = receive(current, len(text), args.timeout)
            if data == text:
                print(f"connection {number}: sent {len(text)} bytes, echoed {data!r}")
            else:
                print(f"connection {number}: sent {len(text)} bytes, got {show(data)} ({ending}) "
                      f"within {args.timeout:g} s")
                ok = False
    for flood in floods:
        flood.join()
        state = f", then {flood.error}" if flood.error else ""
        print(f"flood: sent {flood.sent} bytes, {flood.received} came back{state}")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as failure:
        print(f"client.py: {failure}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"client.py: the connection failed: {error.strerror or error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(1)
