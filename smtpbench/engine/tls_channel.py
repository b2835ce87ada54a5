"""TLS for a session machine: an ``ssl.SSLObject`` over two memory buffers, no socket.

The session feeds it what the socket gave and writes what it hands back, so
the same machine runs plain and TLS connections alike and the reactor only
ever moves raw bytes. A server that closes without ``close_notify`` is simply
closed (as mail servers often do, and as ``trio.SSLStream`` with
``https_compatible`` takes it).
"""

from __future__ import annotations

import contextlib
import ssl

_CHUNK = 65536


class TlsChannel:
    """One TLS session of a client connection."""

    __slots__ = ("_incoming", "_outgoing", "obj")

    def __init__(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )

    def handshake(self) -> bool:
        """One step of the handshake: True once it is done. ``ssl.SSLError`` when it
        fails (a certificate not accepted, an alert, the server gone)."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def received(self, data: bytes) -> None:
        """Bytes from the socket; ``b""`` when the server closed its side."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def read(self) -> bytes | None:
        """The plaintext that the bytes received so far make up: None when they do not
        complete a record yet, ``b""`` once the server has closed."""
        parts = []
        try:
            while True:
                chunk = self.obj.read(_CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
        except ssl.SSLWantReadError:
            if not parts:
                return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            if not parts:
                return b""
        return b"".join(parts)

    def encrypt(self, data: bytes) -> bytes:
        """``data`` as records to send, with anything else the TLS session has to send."""
        self.obj.write(data)
        return self._outgoing.read()

    def pending_output(self) -> bytes:
        """What the TLS session wants sent now (handshake messages, alerts)."""
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """The close_notify alert to send, best effort (the peer may be gone)."""
        with contextlib.suppress(ssl.SSLError):
            self.obj.unwrap()
        return self._outgoing.read()


__all__ = ["TlsChannel"]
