"""A mail server that misbehaves in one chosen way, on 127.0.0.1, in a thread, counting
the connections it took: for checking that clients end on time and say what happened.

    with misbehaving("endless") as server:
        ... connect to 127.0.0.1:server.port ...
    server.connections
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

BEHAVIOURS = ("silence", "close", "reset", "endless", "garbage", "drop in DATA")
HOLD = 30.0  # seconds a silent server holds a connection at most (the test ends it sooner)


@dataclass
class Misbehaving:
    behaviour: str
    port: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _read_line(conn: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\n") + 1
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


def _serve(server: Misbehaving, conn: socket.socket) -> None:
    behaviour = server.behaviour
    conn.settimeout(HOLD)
    with conn, contextlib.suppress(OSError):
        if behaviour == "silence":
            server.stopping.wait(HOLD)
            return
        if behaviour == "close":
            return
        if behaviour == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if behaviour == "garbage":
            conn.sendall(b"\x00\xff garbage, not SMTP \x1b[2J\r\n")
            _read_line(conn, bytearray())
            conn.sendall(b"?? more garbage\r\n" * 3)
            return
        conn.sendall(b"220 misbehaving.test ESMTP\r\n")
        buffer = bytearray()
        while (line := _read_line(conn, buffer)) is not None:
            verb = line.split(None, 1)[0].upper() if line.strip() else b""
            if behaviour == "endless" and verb in (b"EHLO", b"HELO"):
                piece = b"250-" + b"x" * 70 + b"\r\n"
                deadline = time.monotonic() + HOLD
                while not server.stopping.is_set() and time.monotonic() < deadline:
                    conn.sendall(piece * 100)
                return
            if verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                conn.recv(1)  # the content begins
                return  # drop in DATA: gone before the final dot
            if verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            conn.sendall(b"250 ok\r\n")


@contextlib.contextmanager
def misbehaving(behaviour: str) -> Iterator[Misbehaving]:
    assert behaviour in BEHAVIOURS, behaviour
    server = Misbehaving(behaviour)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    server.port = listener.getsockname()[1]

    def accept() -> None:
        while not server.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with server.lock:
                server.connections += 1
            threading.Thread(target=_serve, args=(server, conn), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        thread.join(5)
        listener.close()
