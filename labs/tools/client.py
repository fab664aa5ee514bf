#!/usr/bin/env python3
"""A tiny scripted client for the labs: talks to any muxlab echo server.

Each STEP runs in order on the current connection:
  TEXT        send TEXT (\\n and \\t are understood) and wait for its echo
  bytes:N     send N bytes in one send() call and wait until all N came back
  urgent:C    send the byte C as TCP urgent data (MSG_OOB), wait for it back
  cork:TEXT   send TEXT and the FIN in the same segment, then read until EOF
  fin         send the FIN (shutdown SHUT_WR), then read until EOF
  new         open another connection and make it the current one
  idle:N      open N more connections that stay silent until the end
  pause:S     do nothing for S seconds, every connection left open

Exit status: 0 when every step got what it expected, 1 otherwise, 2 on usage.
Example:  labs/tools/client.py --port 9000 'hello\\n' urgent:! 'bye\\n' fin
"""
import argparse
import select
import socket
import sys
import time


def connect(host, port, deadline):
    # The server may still be starting: retry until the deadline.
    while True:
        try:
            return socket.create_connection((host, port), timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def receive(sock, size, timeout):
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
    return data, "open"


def read_to_end(sock, timeout):
    data, ending = receive(sock, 1 << 30, timeout)
    return data, ending


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds to wait for each answer (default 3)")
    parser.add_argument("steps", nargs="+", metavar="STEP")
    args = parser.parse_args()

    ok = True
    number = 0
    idle = []

    def open_connection():
        nonlocal number
        sock = connect(args.host, args.port, time.monotonic() + 5)
        sock.setblocking(True)
        sock.settimeout(None)
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
            for _ in range(int(step[5:])):
                idle.append(connect(args.host, args.port, time.monotonic() + 5))
            print(f"opened {step[5:]} idle connections")
        elif step.startswith("pause:"):
            time.sleep(float(step[6:]))
            print(f"paused {step[6:]} s")
        elif step.startswith("bytes:"):
            size = int(step[6:])
            # A pattern that never repeats within 251 bytes: a lost or doubled
            # chunk cannot compare equal.
            text = bytes((i * 7 + i // 251) % 251 for i in range(size))
            current.sendall(text)
            data, ending = receive(current, size, args.timeout)
            print(f"connection {number}: sent {size} bytes in one go, "
                  f"{len(data)} came back{' intact' if data == text else ''}")
            ok &= data == text
        elif step.startswith("urgent:"):
            byte = step[7:8].encode()
            current.send(byte, socket.MSG_OOB)
            back = b""
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and not back:
                select.select([], [], [current], 0.1)
                try:
                    back = current.recv(1, socket.MSG_OOB)
                except (BlockingIOError, OSError):
                    time.sleep(0.01)
            print(f"connection {number}: urgent {byte!r} sent, came back as urgent: {back!r}")
            ok &= back == byte
        elif step == "fin" or step.startswith("cork:"):
            if step.startswith("cork:"):
                text = step[5:].encode().decode("unicode_escape").encode()
                current.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                current.sendall(text)
            else:
                text = b""
            current.shutdown(socket.SHUT_WR)
            data, ending = read_to_end(current, args.timeout)
            print(f"connection {number}: FIN sent, got {data!r} then {ending}")
            ok &= data == text and ending == "eof"
        else:
            text = step.encode().decode("unicode_escape").encode()
            current.sendall(text)
            data, ending = receive(current, len(text), args.timeout)
            if data == text:
                print(f"connection {number}: sent {len(text)} bytes, echoed {data!r}")
            else:
                print(f"connection {number}: sent {len(text)} bytes, got {data!r} ({ending}) "
                      f"within {args.timeout:g} s")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
