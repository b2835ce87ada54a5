"""The engine's side: what it sent and the server accepted, one line per message, in a file.

A ``TransitSends`` lives in each engine process. The conversation hands it each
message's content as the transaction begins (``prepare``: the body's
fingerprint, kept until the outcome); the session tells it the outcome
(``accepted`` with the session's intended start and the time of the ``250``,
or ``refused``). Engine times are on the trio clock; one anchor per process,
taken when the run starts, turns them into wall-clock seconds (``time.time()``),
the clock the receiving sink notes arrivals on. Lines are buffered and written
at least once a second and at the end, so the driver can follow them live:

    <session> <message> <intended start> <250 time> <body size> <body digest> <recipients>

``recipients``: how many recipients took the message (over every attempt, with
``[delivery] mode = "mta"``), so that a relay's deliveries of it in parts are
told from duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from smtpbench.transit.identity import Fingerprint, fingerprint

FLUSH_EVERY = 0.25  # seconds: buffered lines go out at least this often while messages end


class TransitSends:
    """Notes accepted messages for matching downstream; writes them to ``path``."""

    __slots__ = ("_file", "_last_write", "_lines", "_offset", "_pending", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("a", encoding="ascii")
        self._pending: dict[tuple[int, int], Fingerprint] = {}
        self._lines: list[str] = []
        self._offset = 0.0  # wall clock minus engine clock
        self._last_write = time.monotonic()

    @property
    def pending(self) -> int:
        """Messages prepared whose outcome has not come yet (each one a fingerprint kept)."""
        return len(self._pending)

    def anchor(self, clock: Callable[[], float]) -> None:
        """Ties the engine clock ``clock`` to the wall clock; once, as the run starts."""
        self._offset = time.time() - clock()

    def prepare(self, session: int, message: int, content: bytes) -> None:
        """Message ``message`` of session ``session`` is about to go out with ``content``."""
        self._pending[(session, message)] = fingerprint(content)

    def refused(self, session: int, message: int) -> None:
        self._pending.pop((session, message), None)

    def accepted(
        self, session: int, message: int, intended: float, done: float, recipients: int
    ) -> None:
        """The server took the message for ``recipients`` recipients: ``intended`` start
        and ``done`` (its 250) on the engine clock."""
        print_ = self._pending.pop((session, message), None)
        if print_ is None:
            return
        offset = self._offset
        self._lines.append(
            f"{session} {message} {intended + offset:.6f} {done + offset:.6f} "
            f"{print_.size} {print_.digest} {recipients}\n"
        )
        if time.monotonic() - self._last_write >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._file.write("".join(self._lines))
            self._file.flush()
            self._lines.clear()
        self._last_write = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._file.close()
