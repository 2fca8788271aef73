"""Opens connections to a /metrics server the way slow or idle clients do and
reports when the server closed each: `slow_clients.py HOST PORT COUNT MODE`.

MODE: `partial` sends an unfinished request head; `idle` sends one whole
keep-alive request, reads the answer, then waits; `silent` sends nothing.
Prints one JSON object: how many were closed by the server within 30 s, and
the longest time that took."""
import json
import socket
import sys
import time

host, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sockets = []
for _ in range(count):
    s = socket.create_connection((host, port), timeout=10)
    if mode == "partial":
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    elif mode == "idle":
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += s.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += s.recv(65536)
    sockets.append(s)
started = time.monotonic()
closed, longest = 0, 0.0
for s in sockets:
    s.settimeout(max(0.1, 30 - (time.monotonic() - started)))
    try:
        while True:
            data = s.recv(65536)
            if not data:
                closed += 1
                longest = max(longest, time.monotonic() - started)
                break
    except (socket.timeout, ConnectionResetError):
        if isinstance(sys.exc_info()[1], ConnectionResetError):
            closed += 1
            longest = max(longest, time.monotonic() - started)
    s.close()
print(json.dumps({"closed": closed, "longest_seconds": longest}))
