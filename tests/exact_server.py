"""A small SMTP server whose delays are exact, for tests of what smtpbench measures.

Event-loop servers (our sink on trio, aiosmtpd on asyncio, Postfix's smtp-sink)
sleep on timers that round up to the millisecond or more, so a "50 ms" delay of
theirs is 50 to 52 ms. This one answers from a thread per connection with
blocking sockets, and ``time.sleep`` is exact to tens of microseconds, so a
timing test can ask whether smtpbench reads the delay that was really applied.
Loopback only; it understands just what a plain session says.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class ExactServer:
    """Answers EHLO, MAIL, RCPT, DATA, the content and QUIT; waits ``data_end_delay``
    seconds, measured from the final dot's arrival, before accepting each message."""

    def __init__(self, data_end_delay: float = 0.0) -> None:
        self.data_end_delay = data_end_delay
        self.applied: list[float] = []  # each message's delay as the server applied it
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._session, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _session(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(30)
        buffer = b""
        in_data = False
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"220 exact.test ESMTP\r\n")
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    if in_data:
                        if line == b".":
                            arrived = time.perf_counter()
                            time.sleep(
                                max(0.0, arrived + self.data_end_delay - time.perf_counter())
                            )
                            conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                            self.applied.append(time.perf_counter() - arrived)
                            in_data = False
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        conn.sendall(b"250-exact.test\r\n250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        in_data = True
                        conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    elif verb == b"QUIT":
                        conn.sendall(b"221 2.0.0 Bye\r\n")
                        return
                    else:
                        conn.sendall(b"250 2.0.0 Ok\r\n")

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def exact_server(data_end_delay: float = 0.0) -> Iterator[ExactServer]:
    server = ExactServer(data_end_delay)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=5)
