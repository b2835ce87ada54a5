"""The sink pushing back like a real server: what it decides, with no I/O of its own.

``PushbackPolicy`` holds what the sink remembers across connections (sessions open,
per-client connection and message windows, the greylist) and answers, for each
connection, MAIL and RCPT, whether to defer and with which reply. Its clock is
injectable, so that tests step time exactly. ``LinkThrottle`` paces one connection's
reads; ``MaildirWriter`` keeps accepted messages in a Maildir, up to its limit.

A "client" is the connecting IP address, as Postfix's anvil counts it.
"""

from __future__ import annotations

import mailbox
import time
from collections import Counter
from collections.abc import Callable
from typing import Final, NamedTuple

from smtpbench.pushback import Pushback, RateLimit

# Triplets the greylist remembers; beyond, the oldest are forgotten first.
GREYLIST_MEMORY: Final = 1_000_000

Clock = Callable[[], float]


class Deferral(NamedTuple):
    """A reply that pushes back, and why (the key it is counted under)."""

    code: int
    enhanced: str
    text: str
    reason: str


class _Window:
    """Events in a fixed window that opens with the first event after the last one closed."""

    __slots__ = ("count", "start")

    def __init__(self, now: float) -> None:
        self.start = now
        self.count = 0

    def hit(self, now: float, limit: RateLimit) -> int:
        """Counts one event at ``now``; the count in its window, this one included."""
        if now - self.start >= limit.window:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count


class PushbackPolicy:
    """Decides deferrals for one sink; counts each in ``counts`` by reason
    (``max sessions``, ``client connection limit``, ``client connection rate``,
    ``client message rate``, ``greylist``, ``tarpit``)."""

    def __init__(
        self,
        settings: Pushback,
        counts: Counter[str],
        hostname: str = "sink.smtpbench.test",
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.counts = counts
        self.hostname = hostname
        self.clock = clock
        self.sessions = 0  # served now, all clients
        self.open_by_client: Counter[str] = Counter()
        self._connections: dict[str, _Window] = {}
        self._messages: dict[str, _Window] = {}
        self._first_seen: dict[tuple[str, str, str], float] = {}

    def _defer(self, code: int, enhanced: str, text: str, reason: str) -> Deferral:
        self.counts[reason] += 1
        return Deferral(code, enhanced, text, reason)

    @staticmethod
    def _hit(windows: dict[str, _Window], client: str, now: float, limit: RateLimit) -> int:
        window = windows.get(client)
        if window is None:
            window = windows[client] = _Window(now)
        return window.hit(now, limit)

    def open_session(self, client: str) -> Deferral | None:
        """A connection from ``client``: None if it is served (``close_session`` follows
        when it ends), else the 421 that replaces its banner."""
        settings = self.settings
        if settings.max_sessions is not None and self.sessions >= settings.max_sessions:
            return self._defer(
                421, "4.7.0", f"{self.hostname} Error: too many sessions, try later", "max sessions"
            )
        rate = settings.client_connection_rate
        attempts = 0
        if rate is not None:  # every attempt counts, refused or not, as anvil counts them
            attempts = self._hit(self._connections, client, self.clock(), rate)
        limit = settings.client_connection_limit
        if limit is not None and self.open_by_client[client] >= limit:
            return self._defer(
                421,
                "4.7.0",
                f"{self.hostname} Error: too many connections from {client}",
                "client connection limit",
            )
        if rate is not None and attempts > rate.count:
            return self._defer(
                421,
                "4.7.0",
                f"{self.hostname} Error: too many connections from {client}",
                "client connection rate",
            )
        self.sessions += 1
        self.open_by_client[client] += 1
        return None

    def close_session(self, client: str) -> None:
        self.sessions -= 1
        self.open_by_client[client] -= 1
        if self.open_by_client[client] <= 0:
            del self.open_by_client[client]

    def mail(self, client: str) -> Deferral | None:
        """A MAIL FROM the sink would take: None, or the 450 of the message rate limit."""
        rate = self.settings.client_message_rate
        if rate is None or self._hit(self._messages, client, self.clock(), rate) <= rate.count:
            return None
        return self._defer(
            450, "4.7.1", f"Error: too much mail from {client}", "client message rate"
        )

    def recipient(self, client: str, sender: str, recipient: str) -> Deferral | None:
        """A RCPT TO the sink would take: None, or the greylist's 450."""
        delay = self.settings.greylist
        if delay is None:
            return None
        now = self.clock()
        key = (client, sender.lower(), recipient.lower())
        first = self._first_seen.get(key)
        if first is None:
            if len(self._first_seen) >= GREYLIST_MEMORY:
                del self._first_seen[next(iter(self._first_seen))]
            self._first_seen[key] = first = now
        if now - first >= delay:
            return None
        return self._defer(
            450,
            "4.7.1",
            f"<{recipient}>: Recipient address rejected: Greylisted, try again in "
            f"{max(1, round(delay - (now - first)))}s",
            "greylist",
        )

    def tarpit(self, errors: int) -> float:
        """Seconds to hold a reply in a session that has had ``errors`` error replies."""
        after = self.settings.tarpit_after
        if after is None or errors < after:
            return 0.0
        self.counts["tarpit"] += 1
        return self.settings.tarpit_delay


class LinkThrottle:
    """One connection's reads paced to ``rate`` bytes a second."""

    __slots__ = ("_free_at", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._free_at = -float("inf")

    def read_size(self, most: int) -> int:
        """How much to read at once: about a tenth of a second's worth, at least 1 KiB."""
        return max(1024, min(most, self.rate // 10))

    def wait(self, size: int, now: float) -> float:
        """``size`` bytes were read at ``now``: seconds before reading on."""
        self._free_at = max(now, self._free_at) + size / self.rate
        return self._free_at - now


class MaildirWriter:
    """Accepted messages into a Maildir (``mailbox.Maildir``), byte for byte, up to
    ``limit``; the rest are counted in ``counts["over the limit"]``."""

    def __init__(self, path: str, limit: int, counts: Counter[str]) -> None:
        self.box = mailbox.Maildir(path, factory=None, create=True)  # OSError if it cannot
        self.limit = limit
        self.counts = counts

    def reserve(self) -> bool:
        """Whether the next message is to be written (then ``write`` follows); else it is
        counted as over the limit."""
        if self.counts["written"] < self.limit:
            self.counts["written"] += 1
            return True
        self.counts["over the limit"] += 1
        return False

    def write(self, data: bytes) -> str:
        """Writes one reserved message (blocking: call it in a thread, one at a time); its
        key in the Maildir. OSError if it could not be written (counted under ``failed``)."""
        try:
            return self.box.add(data)
        except OSError:
            self.counts["written"] -= 1
            self.counts["failed"] += 1
            raise
