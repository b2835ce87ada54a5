"""The receiving sink of ``run --through``: our sink on the listen address, in a thread of
its own, noting each message that arrives.

The server under test relays the test domain to it. It runs in the driver
process (the one that shows the run), on its own trio loop in a thread, so it
works the same under the dashboard and headless. Each accepted message becomes
an ``Arrival``: wall-clock time (``time.time()``, the driver's clock), its
identifier header, and its body's size and digest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from smtpbench.transit.identity import find_id, fingerprint

if TYPE_CHECKING:
    from smtpbench.servers.sink import Sink

RECEIVER_HOSTNAME = "transit.smtpbench.test"
START_TIMEOUT = 10.0  # seconds for the receiver to be listening


class ReceiverError(Exception):
    """The receiving sink could not listen; says where and why."""


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # wall clock
    ident: str | None  # the X-Smtpbench-Id header, None when the message had none
    size: int  # bytes of the normalised body
    digest: str | None  # None when the message was too big to keep
    recipients: int = 1  # the RCPT TOs the receiving sink took for this delivery


class Receiver:
    """``start()`` listens (``ReceiverError`` if it cannot); ``arrivals`` grows as messages
    come (appended on the receiver's thread, read anywhere); ``stop()`` ends it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.address: tuple[str, int] = (host, port)
        self.arrivals: list[Arrival] = []
        self.sink: Sink | None = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._main, name="smtpbench-transit", daemon=True)

    def start(self) -> tuple[str, int]:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise ReceiverError(
                f"--through {self.host}:{self.port}: the receiving sink did not start"
            )
        if self._error is not None:
            raise ReceiverError(self._error)
        return self.address

    def stop(self) -> None:
        token, scope = self._token, self._scope
        if token is not None and scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
        self._thread.join(5)

    def _noted(self, data: bytes | None, size: int, recipients: int) -> None:
        at = time.time()
        if data is None:
            self.arrivals.append(Arrival(at, None, size, None, recipients))
            return
        print_ = fingerprint(data)
        self.arrivals.append(Arrival(at, find_id(data), print_.size, print_.digest, recipients))

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as err:  # the thread must say why it ended, not die silently
            if not self._ready.is_set():
                self._error = f"--through {self.host}:{self.port}: {err}"
                self._ready.set()

    async def _serve(self) -> None:
        # The sink is read only when a run measures transit.
        from smtpbench.servers.sink import SinkConfig, serve_sink

        config = SinkConfig(
            host=self.host, port=self.port, hostname=RECEIVER_HOSTNAME, on_message=self._noted
        )
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            try:
                self.sink = await nursery.start(serve_sink, config)
            except OSError as err:
                self._error = (
                    f"--through {self.host}:{self.port}: cannot listen there: {err.strerror or err}"
                )
                self._ready.set()
                nursery.cancel_scope.cancel()
                return
            self.address = self.sink.address
            self._ready.set()
