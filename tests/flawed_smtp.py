"""A small SMTP server on loopback with the flaws the probe looks for, each one chosen:
bare line endings taken as the end of data (SMTP smuggling), commands sent with STARTTLS
kept and run over TLS, AUTH taken before TLS, XCLIENT or XFORWARD offered, a talkative
banner. With no flaw chosen it behaves, so each test has both sides."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.servers import LOOPBACK

END = b"\r\n.\r\n"


@dataclass
class Flaws:
    endings: tuple[bytes, ...] = ()  # besides <CRLF>.<CRLF>, taken as the end of data
    starttls_keeps_buffer: bool = False  # runs what came with STARTTLS after the handshake
    auth_in_clear: bool = False  # offers and takes AUTH before TLS
    extensions: tuple[str, ...] = ()  # more EHLO keywords (XCLIENT, XFORWARD...)
    banner: str = "flawed.smtpbench.test ESMTP"
    cert: tuple[str, str] | None = None  # (certificate, key): STARTTLS offered


@dataclass
class FlawedServer:
    port: int
    flaws: Flaws
    messages: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def _serve(server: FlawedServer, conn: socket.socket) -> None:
    flaws = server.flaws
    context = None
    if flaws.cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*flaws.cert)
    sock: socket.socket = conn
    buffer = bytearray()
    tls = False

    def send(line: str) -> None:
        sock.sendall(line.encode() + b"\r\n")

    def fill() -> bool:
        data = sock.recv(65536)
        buffer.extend(data)
        return bool(data)

    send(f"220 {flaws.banner}")
    while True:
        while b"\n" not in buffer:
            if not fill():
                return
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        server.commands.append(text)
        verb = text.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            words = ["PIPELINING", "8BITMIME", *flaws.extensions]
            if context is not None and not tls:
                words.append("STARTTLS")
            if flaws.auth_in_clear or tls:
                words.append("AUTH PLAIN LOGIN")
            lines = ["flawed.smtpbench.test", *words]
            for word in lines[:-1]:
                send(f"250-{word}")
            send(f"250 {lines[-1]}")
        elif verb == "STARTTLS" and context is not None and not tls:
            send("220 2.0.0 Ready to start TLS")
            if not flaws.starttls_keeps_buffer:
                buffer.clear()
            sock = context.wrap_socket(conn, server_side=True)
            tls = True
        elif verb == "AUTH":
            if not (tls or flaws.auth_in_clear):
                send("530 5.7.0 Must issue a STARTTLS command first")
                continue
            send("334 ")
            while b"\n" not in buffer:
                if not fill():
                    return
            answer, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            server.commands.append(answer.rstrip(b"\r").decode("utf-8", "replace"))
            send("501 5.0.0 Cancelled" if answer.strip() == b"*" else "535 5.7.8 No")
        elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            send("250 2.0.0 Ok")
        elif verb == "DATA":
            send("354 End data with <CR><LF>.<CR><LF>")
            while True:
                found = [
                    (buffer.find(end), end)
                    for end in (END, *flaws.endings)
                    if buffer.find(end) >= 0
                ]
                if found:
                    at, end = min(found)
                    server.messages.append(bytes(buffer[:at]))
                    buffer[: at + len(end)] = b""
                    send("250 2.0.0 Ok: queued")
                    break
                if not fill():
                    return
        elif verb == "QUIT":
            send("221 2.0.0 Bye")
            return
        else:
            send("500 5.5.2 Error: command not recognized")


@contextmanager
def flawed_server(flaws: Flaws) -> Iterator[FlawedServer]:
    listener = socket.create_server((LOOPBACK, 0))
    server = FlawedServer(listener.getsockname()[1], flaws)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(30)

            def session(conn: socket.socket = conn) -> None:
                try:
                    _serve(server, conn)
                except (OSError, ssl.SSLError):
                    pass
                finally:
                    conn.close()

            threading.Thread(target=session, daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        listener.close()
