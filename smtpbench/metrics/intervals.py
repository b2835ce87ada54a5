"""Each interval's own latency histograms and reply counts, kept sparse: what the
HdrHistogram interval log, reply codes over time and exact merges of runs read.

One entry per non-empty bucket of an interval: a flat index (``row * BUCKETS +
bucket`` for latency, ``step * 600 + code`` for replies) and its count. Intervals
are one second (the recorder's flush) until the entries kept pass a budget;
then neighbouring intervals are added together in pairs, so that a long run at a
high rate keeps bounded memory at a coarser time resolution, and every count
is still there. Only a run's final snapshot carries them (see ``Recorder``).

A worker of a multi-process run also hands each one-second interval, as it
closes, to its parent (``take_fresh``), whatever the pairing did to the ones
kept: the parent adds the workers' seconds together as they come.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from smtpbench.metrics.histogram import BUCKETS, FloatArray, IntArray
from smtpbench.metrics.kinds import LATENCY_ROWS, MAX_REPLY_CODE
from smtpbench.protocol.steps import STEP_COUNT

# Latency entries kept (an index and a count, 16 bytes) before neighbouring intervals
# are paired: about 4 MB, so a long run's memory stays flat (a run at a few thousand
# sessions a second keeps one-second intervals for its first minutes, then coarser).
ENTRY_BUDGET = 250_000
Sparse = tuple[IntArray, IntArray]  # (flat index, count), both int64
IntervalDelta = tuple[float, Sparse, Sparse]  # one closed interval: end, latency, replies


def sparse(dense: IntArray) -> Sparse:
    flat = dense.ravel()
    index = np.flatnonzero(flat)
    return _frozen(index.astype(np.int64)), _frozen(flat[index].astype(np.int64))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _add(a: Sparse, b: Sparse) -> Sparse:
    index = np.concatenate((a[0], b[0]))
    counts = np.concatenate((a[1], b[1]))
    keys, inverse = np.unique(index, return_inverse=True)
    return _frozen(keys), _frozen(np.bincount(inverse, weights=counts).astype(np.int64))


@dataclass(frozen=True, slots=True)
class Intervals:
    """Per-interval counts: ``end[i]`` is the end of interval i in seconds since the
    start (it began at ``end[i - 1]``, or 0)."""

    end: FloatArray
    latency: tuple[Sparse, ...]
    replies: tuple[Sparse, ...]

    def __len__(self) -> int:
        return len(self.latency)

    def latency_counts(self, i: int) -> IntArray:
        """Interval i's histogram counts, dense: (latency rows, buckets)."""
        dense = np.zeros(LATENCY_ROWS * BUCKETS, dtype=np.int64)
        index, counts = self.latency[i]
        dense[index] = counts
        return dense.reshape(LATENCY_ROWS, BUCKETS)

    def reply_counts(self, i: int) -> IntArray:
        """Interval i's reply counts, dense: (steps, 600)."""
        dense = np.zeros(STEP_COUNT * MAX_REPLY_CODE, dtype=np.int64)
        index, counts = self.replies[i]
        dense[index] = counts
        return dense.reshape(STEP_COUNT, MAX_REPLY_CODE)

    def reply_table(self) -> IntArray:
        """Replies per interval and code, all commands together: (intervals, 600)."""
        table = np.zeros((len(self), MAX_REPLY_CODE), dtype=np.int64)
        for i, (index, counts) in enumerate(self.replies):
            np.add.at(table[i], index % MAX_REPLY_CODE, counts)
        return table

    # The results folder stores them as three flat arrays each (offsets, index, count).

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"intervals_end": self.end}
        for name, parts in (("latency", self.latency), ("replies", self.replies)):
            sizes = [len(index) for index, _ in parts]
            arrays[f"intervals_{name}_offsets"] = np.concatenate(([0], np.cumsum(sizes))).astype(
                np.int64
            )
            arrays[f"intervals_{name}_index"] = _concat([index for index, _ in parts])
            arrays[f"intervals_{name}_counts"] = _concat([counts for _, counts in parts])
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Intervals | None:
        """From a results folder; ``None`` when it has none (written by an older version)."""
        if "intervals_end" not in arrays:
            return None
        parts = []
        for name in ("latency", "replies"):
            offsets = arrays[f"intervals_{name}_offsets"]
            index = arrays[f"intervals_{name}_index"].astype(np.int64)
            counts = arrays[f"intervals_{name}_counts"].astype(np.int64)
            parts.append(
                tuple(
                    (_frozen(index[a:b]), _frozen(counts[a:b]))
                    for a, b in itertools.pairwise(offsets)
                )
            )
        end = arrays["intervals_end"].astype(np.float64)
        if not len(end) == len(parts[0]) == len(parts[1]):
            raise ValueError("intervals: lengths differ")
        return cls(end, parts[0], parts[1])


def _concat(arrays: list[IntArray]) -> IntArray:
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


class IntervalsBuilder:
    """The recorder's side: one ``append`` per closed interval."""

    def __init__(self, budget: int = ENTRY_BUDGET, *, keep_fresh: bool = False) -> None:
        self.budget = budget
        # Intervals closed since the last take_fresh(), when someone takes them.
        self._fresh: list[IntervalDelta] | None = [] if keep_fresh else None
        self._end: list[float] = []
        self._latency: list[Sparse] = []
        self._replies: list[Sparse] = []
        self._entries = 0
        self.span = 1  # recorder intervals per kept interval
        # A coarse interval being filled: its end so far, dense counts, recorder intervals.
        self._open_end = 0.0
        self._open_latency: IntArray | None = None
        self._open_replies: IntArray | None = None
        self._open_count = 0

    def append(self, end: float, latency: IntArray, replies: IntArray) -> None:
        """One closed recorder interval: (latency rows, buckets) and flat reply counts."""
        if self.span == 1:
            kept = (end, sparse(latency), sparse(replies))
            self._keep(*kept)
            if self._fresh is not None:
                self._fresh.append(kept)
        else:
            if self._fresh is not None:
                self._fresh.append((end, sparse(latency), sparse(replies)))
            if self._open_latency is None or self._open_replies is None:
                self._open_latency = latency.astype(np.int64, copy=True)
                self._open_replies = replies.astype(np.int64, copy=True)
            else:
                self._open_latency += latency
                self._open_replies += replies
            self._open_end = end
            self._open_count += 1
            if self._open_count < self.span:
                return
            self._keep(end, sparse(self._open_latency), sparse(self._open_replies))
            self._open_latency = self._open_replies = None
            self._open_count = 0
        while self._entries > self.budget and len(self._end) > 1:
            self._pair()

    def take_fresh(self) -> list[IntervalDelta]:
        """The one-second intervals closed since the last call, oldest first (only with
        ``keep_fresh``; otherwise none)."""
        fresh = self._fresh
        if not fresh:
            return []
        self._fresh = []
        return fresh

    def _keep(self, end: float, latency: Sparse, replies: Sparse) -> None:
        self._end.append(end)
        self._latency.append(latency)
        self._replies.append(replies)
        self._entries += len(latency[0])

    def _pair(self) -> None:
        """Adds neighbouring intervals together, halving their number."""
        ends, latency, replies = self._end, self._latency, self._replies
        self._end, self._latency, self._replies, self._entries = [], [], [], 0
        for i in range(0, len(ends) - 1, 2):
            self._keep(
                ends[i + 1],
                _add(latency[i], latency[i + 1]),
                _add(replies[i], replies[i + 1]),
            )
        if len(ends) % 2:
            self._keep(ends[-1], latency[-1], replies[-1])
        self.span *= 2

    def freeze(self) -> Intervals:
        """Everything so far, a coarse interval still being filled included."""
        end, latency, replies = list(self._end), list(self._latency), list(self._replies)
        if self._open_latency is not None and self._open_replies is not None:
            end.append(self._open_end)
            latency.append(sparse(self._open_latency))
            replies.append(sparse(self._open_replies))
        return Intervals(np.array(end, dtype=np.float64), tuple(latency), tuple(replies))
