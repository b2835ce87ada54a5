"""Figures per client: when sessions connect from a pool of source addresses
(``target.source``) or claim clients (``[client]``), a server treats each client on
its own (limits, greylisting, reputation), so the run's figures are broken down by
the client each session was.

Per client: sessions and failed ones, messages accepted and refused, replies by
class (2xx to 5xx), and two latencies kept as sparse histogram buckets (the same
buckets as the run's histograms, so percentiles read the same way and parts from
workers add up exactly): each message from its intended start to its final reply,
and each DATA end's service time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from smtpbench.metrics.histogram import BUCKETS, Histogram, bucket_of

MAX_CLIENTS: Final = 1024  # kept apart; more than that fold into "(other clients)"
OTHER: Final = "(other clients)"
Buckets = tuple[tuple[int, int], ...]  # (bucket, count), sorted by bucket


@dataclass(frozen=True, slots=True)
class ClientRow:
    """One client's figures, as a snapshot carries them (immutable, small)."""

    client: str
    sessions: int = 0
    failed: int = 0
    accepted: int = 0
    refused: int = 0
    replies: tuple[int, int, int, int] = (0, 0, 0, 0)  # 2xx, 3xx, 4xx, 5xx
    message: Buckets = ()
    data_end: Buckets = ()

    def histogram(self, which: str) -> Histogram:
        """``message`` or ``data_end`` as a histogram: percentiles as the run's read."""
        counts = np.zeros(BUCKETS, dtype=np.int64)
        for bucket, count in getattr(self, which):
            counts[bucket] = count
        return Histogram(counts, 0.0, 0.0, np.inf)  # bounds that clip nothing

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "sessions": self.sessions,
            "failed": self.failed,
            "messages_accepted": self.accepted,
            "messages_refused": self.refused,
            "replies": dict(zip(("2xx", "3xx", "4xx", "5xx"), self.replies, strict=True)),
            "message_buckets": [list(pair) for pair in self.message],
            "data_end_buckets": [list(pair) for pair in self.data_end],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientRow:
        replies = data["replies"]
        return cls(
            client=str(data["client"]),
            sessions=int(data["sessions"]),
            failed=int(data["failed"]),
            accepted=int(data["messages_accepted"]),
            refused=int(data["messages_refused"]),
            replies=(
                int(replies["2xx"]),
                int(replies["3xx"]),
                int(replies["4xx"]),
                int(replies["5xx"]),
            ),
            message=_buckets(data["message_buckets"]),
            data_end=_buckets(data["data_end_buckets"]),
        )


def _buckets(pairs: Iterable[Any]) -> Buckets:
    out = []
    for bucket, count in pairs:
        bucket, count = int(bucket), int(count)
        if not 0 <= bucket < BUCKETS or count < 0:
            raise ValueError(f"a latency bucket out of range: {bucket}, {count}")
        out.append((bucket, count))
    return tuple(sorted(out))


@dataclass(slots=True)
class _Tally:
    sessions: int = 0
    failed: int = 0
    accepted: int = 0
    refused: int = 0
    replies: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    message: dict[int, int] = field(default_factory=dict)
    data_end: dict[int, int] = field(default_factory=dict)


class SessionTally:
    """One session's figures, kept while it runs, for its client's row."""

    __slots__ = ("accepted", "data_end", "message", "refused", "replies")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0
        self.replies = [0, 0, 0, 0]
        self.message: list[float] = []
        self.data_end: list[float] = []

    def reply(self, code: int, data_end: float | None) -> None:
        if 200 <= code < 600:
            self.replies[code // 100 - 2] += 1
        if data_end is not None:
            self.data_end.append(data_end)

    def message_ended(self, accepted: bool, latency: float | None) -> None:
        if accepted:
            self.accepted += 1
        else:
            self.refused += 1
        if latency is not None:
            self.message.append(latency)


class ClientGroups:
    """The engine's side: each session's figures added to its client's, when it ends."""

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}

    def session_ended(self, client: str, failed: bool, tally: SessionTally) -> None:
        accepted, refused, replies = tally.accepted, tally.refused, tally.replies
        message, data_end = tally.message, tally.data_end
        tallies = self._tallies
        tally = tallies.get(client)
        if tally is None:
            if len(tallies) >= MAX_CLIENTS:
                client = OTHER
                tally = tallies.get(client)
            if tally is None:
                tally = tallies[client] = _Tally()
        tally.sessions += 1
        tally.failed += failed
        tally.accepted += accepted
        tally.refused += refused
        for index, n in enumerate(replies):
            tally.replies[index] += n
        for values, into in ((message, tally.message), (data_end, tally.data_end)):
            if values:
                for bucket in bucket_of(values).tolist():
                    into[bucket] = into.get(bucket, 0) + 1

    def rows(self) -> tuple[ClientRow, ...]:
        return tuple(
            ClientRow(
                client,
                t.sessions,
                t.failed,
                t.accepted,
                t.refused,
                (t.replies[0], t.replies[1], t.replies[2], t.replies[3]),
                tuple(sorted(t.message.items())),
                tuple(sorted(t.data_end.items())),
            )
            for client, t in sorted(self._tallies.items())
        )


def add_client_rows(parts: Iterable[tuple[ClientRow, ...]]) -> tuple[ClientRow, ...]:
    """Several workers' or runs' figures per client, added up (exactly: counts and
    histogram buckets)."""
    total: dict[str, ClientRow] = {}
    for part in parts:
        for row in part:
            seen = total.get(row.client)
            total[row.client] = row if seen is None else _add(seen, row)
    return tuple(total[client] for client in sorted(total))


def _add(a: ClientRow, b: ClientRow) -> ClientRow:
    return ClientRow(
        a.client,
        a.sessions + b.sessions,
        a.failed + b.failed,
        a.accepted + b.accepted,
        a.refused + b.refused,
        (
            a.replies[0] + b.replies[0],
            a.replies[1] + b.replies[1],
            a.replies[2] + b.replies[2],
            a.replies[3] + b.replies[3],
        ),
        _add_buckets(a.message, b.message),
        _add_buckets(a.data_end, b.data_end),
    )


def _add_buckets(a: Buckets, b: Buckets) -> Buckets:
    merged = dict(a)
    for bucket, count in b:
        merged[bucket] = merged.get(bucket, 0) + count
    return tuple(sorted(merged.items()))


__all__ = [
    "MAX_CLIENTS",
    "OTHER",
    "ClientGroups",
    "ClientRow",
    "SessionTally",
    "add_client_rows",
]
