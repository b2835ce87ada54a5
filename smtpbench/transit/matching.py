"""The driver's side: sends (from the engines' files) matched with arrivals (from the
receiving sink), into transit figures.

Per message accepted by the server under test: time from its intended start to
the ``250`` (as the run measures it) and to its arrival downstream. A message
is *not arrived* when nothing with its identifier came by the end of the drain
period; a *duplicate* is an arrival of one identifier after arrivals that
already brought it to as many recipients as the server took it for (a relay
that delivers a message in parts, a few recipients each time, makes no
duplicates; one that delivers it twice does); an arrival is *altered* when its
body's size or digest differs from what was sent.
Arrivals that name this run but no accepted message are *unexpected* (the
client gave up on a message the server then relayed), and those without this
run's identifier are *foreign* (another run's mail, or other mail).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smtpbench.metrics.histogram import Histogram
from smtpbench.thresholds import TRANSIT_PERCENTILES
from smtpbench.transit.identity import split_id

if TYPE_CHECKING:
    from smtpbench.transit.receiver import Arrival

PERCENTILES = TRANSIT_PERCENTILES  # what thresholds on transit can ask for


@dataclass(frozen=True, slots=True)
class Send:
    intended: float  # wall clock
    done: float  # the 250, wall clock
    size: int
    digest: str
    recipients: int  # how many took it at the server under test


@dataclass(frozen=True, slots=True)
class SecondRow:
    """One second of the run, by when messages were accepted (their 250)."""

    second: int  # from the run's start
    accepted: int
    arrived: int
    transit_p50: float  # NaN when none arrived
    transit_p99: float


@dataclass(frozen=True, slots=True)
class TransitFigures:
    through: str  # the receiving sink's address
    accepted: int  # messages the server under test accepted (250)
    arrived: int  # of those, how many arrived downstream (once or more)
    not_arrived: int
    duplicates: int  # arrivals of a message already brought to all its recipients
    altered: int  # arrivals whose body differs from what was sent
    unexpected: int  # arrivals of this run naming no accepted message
    foreign: int  # arrivals without this run's identifier
    to_accept: tuple[float, ...]  # percentiles (PERCENTILES) of intended start to 250, arrived
    transit: tuple[float, ...]  # percentiles of intended start to arrival
    transit_max: float
    queue: tuple[float, ...]  # percentiles of 250 to arrival: the relay's queue and work
    waiting: bool  # figures taken while messages may still arrive
    drained: float  # seconds waited after sending ended (0 while the run is live)
    seconds: tuple[SecondRow, ...]


class TransitTracker:
    """Follows the engines' send files and the receiver's arrivals; ``figures()`` at any time."""

    def __init__(self, run_tag: str, send_files: list[Path], through: str, start: float) -> None:
        self.run_tag = run_tag
        self.send_files = send_files
        self.through = through
        self.start = start  # wall clock: second 0 of the series
        self._offsets = [0] * len(send_files)
        self._partial = [b""] * len(send_files)
        self.sends: dict[tuple[int, int], Send] = {}
        self.first: dict[tuple[int, int], Arrival] = {}  # first arrival of each known message
        self.brought: dict[tuple[int, int], int] = {}  # recipients its arrivals brought
        self._early: dict[tuple[int, int], list[Arrival]] = {}  # arrived before its send line
        self._seen = 0  # arrivals taken so far
        self.duplicates = 0
        self.altered = 0
        self.foreign = 0
        self.drained = 0.0

    # -- reading ----------------------------------------------------------------------

    def update(self, arrivals: list[Arrival]) -> None:
        """Reads new send lines and takes the arrivals not seen yet."""
        for index, path in enumerate(self.send_files):
            self._read_sends(index, path)
        count = len(arrivals)
        for arrival in arrivals[self._seen : count]:
            self._arrived(arrival)
        self._seen = count

    def _read_sends(self, index: int, path: Path) -> None:
        try:
            with path.open("rb") as file:
                file.seek(self._offsets[index])
                data = file.read()
        except FileNotFoundError:
            return
        self._offsets[index] += len(data)
        data = self._partial[index] + data
        lines = data.split(b"\n")
        self._partial[index] = lines.pop()  # a line not written whole yet
        for line in lines:
            fields = line.split()
            if len(fields) not in (6, 7):
                continue
            key = (int(fields[0]), int(fields[1]))
            self.sends[key] = Send(
                float(fields[2]),
                float(fields[3]),
                int(fields[4]),
                fields[5].decode("ascii"),
                # An engine of an earlier version (a cluster host not upgraded yet)
                # writes no recipients: one, as matching counted before.
                int(fields[6]) if len(fields) == 7 else 1,
            )
            for arrival in self._early.pop(key, ()):
                self._match(key, arrival)

    def _arrived(self, arrival: Arrival) -> None:
        parts = split_id(arrival.ident) if arrival.ident is not None else None
        if parts is None or parts[0] != self.run_tag:
            self.foreign += 1
            return
        key = (parts[1], parts[2])
        if key in self.sends:
            self._match(key, arrival)
        else:
            self._early.setdefault(key, []).append(arrival)

    def _match(self, key: tuple[int, int], arrival: Arrival) -> None:
        send = self.sends[key]
        if arrival.digest != send.digest or arrival.size != send.size:
            self.altered += 1
        brought = self.brought.get(key, 0)
        if brought >= send.recipients:
            self.duplicates += 1
        self.brought[key] = brought + arrival.recipients
        if key not in self.first:
            self.first[key] = arrival

    # -- figures ----------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Accepted messages not arrived yet."""
        return len(self.sends) - len(self.first)

    def figures(self, *, final: bool = False, series: bool = True) -> TransitFigures:
        """The figures so far (``final``: after the drain); ``series`` False leaves the
        per-second rows out, for live lines."""
        keys = list(self.first)
        sends = self.sends
        intended = np.array([sends[k].intended for k in keys], dtype=np.float64)
        done = np.array([sends[k].done for k in keys], dtype=np.float64)
        arrived = np.array([self.first[k].at for k in keys], dtype=np.float64)
        transit = np.maximum(arrived - intended, 0.0)
        unexpected = sum(len(early) for early in self._early.values())
        return TransitFigures(
            through=self.through,
            accepted=len(sends),
            arrived=len(keys),
            not_arrived=len(sends) - len(keys),
            duplicates=self.duplicates,
            altered=self.altered,
            unexpected=unexpected,
            foreign=self.foreign,
            to_accept=_percentiles(done - intended),
            transit=_percentiles(transit),
            transit_max=float(transit.max()) if transit.size else math.nan,
            queue=_percentiles(np.maximum(arrived - done, 0.0)),
            waiting=not final,
            drained=self.drained,
            seconds=self._seconds() if series else (),
        )

    def _seconds(self) -> tuple[SecondRow, ...]:
        if not self.sends:
            return ()
        by_second: dict[int, list[float]] = {}
        accepted: dict[int, int] = {}
        for key, send in self.sends.items():
            second = max(0, int(send.done - self.start))
            accepted[second] = accepted.get(second, 0) + 1
            arrival = self.first.get(key)
            if arrival is not None:
                by_second.setdefault(second, []).append(max(arrival.at - send.intended, 0.0))
        rows = []
        for second in range(max(accepted) + 1):
            values = by_second.get(second, [])
            p50, p99 = (
                Histogram.of(values).percentiles([50.0, 99.0]) if values else (math.nan, math.nan)
            )
            rows.append(
                SecondRow(second, accepted.get(second, 0), len(values), float(p50), float(p99))
            )
        return tuple(rows)


def _percentiles(values: np.ndarray) -> tuple[float, ...]:
    if values.size == 0:
        return tuple(math.nan for _ in PERCENTILES)
    return tuple(float(v) for v in Histogram.of(values).percentiles(PERCENTILES))


__all__ = ["SecondRow", "Send", "TransitFigures", "TransitTracker"]
