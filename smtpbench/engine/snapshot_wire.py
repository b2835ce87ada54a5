"""Snapshots on their way from an engine process to the parent, made small.

A snapshot's latency histograms are a dense (rows x 5377) int64 array, about
0.9 MB, and its reply counts another 86 kB, almost all zeros. Pickling that
four times a second costs the engine's event loop a couple of milliseconds each
time (pickling holds the GIL), which shows in the latency figures; the non-zero
entries alone are a small fraction of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from smtpbench.metrics.histogram import HistogramSet
from smtpbench.metrics.series import SeriesBuilder, series_rows
from smtpbench.metrics.snapshot import Snapshot


@dataclasses.dataclass(frozen=True, slots=True)
class PackedSnapshot:
    """A snapshot without its dense histograms, and their non-zero buckets."""

    # An empty histogram set in place of its own, and only the new series rows; the
    # enhanced status code counts cross as they are (a short tuple, already a copy).
    rest: Snapshot
    index: np.ndarray  # flat indices of the non-zero buckets
    counts: np.ndarray
    total: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    rows: int
    reply_index: np.ndarray  # the reply counts, likewise (steps x 600, nearly all zero)
    reply_counts: np.ndarray
    reply_shape: tuple[int, ...]
    series_from: int  # the series rows sent before: ``rest.series`` continues from there


_EMPTY = HistogramSet(0)
_NO_REPLIES = np.zeros((0, 0), dtype=np.int64)


class Packer:
    """The engine's side: each snapshot made small, its series sent a row only once.

    Packing runs on the engine's event loop, so it touches only what changed size: the
    non-zero buckets (whose indices the recorder keeps), the series rows added since the
    last snapshot, and the small arrays."""

    def __init__(self) -> None:
        self._rows_sent = 0

    def pack(self, snapshot: Snapshot, used: np.ndarray | None = None) -> PackedSnapshot:
        """``used``: the flat indices of the non-zero latency buckets, when known."""
        latency = snapshot.latency
        flat = latency.counts.ravel()
        index = np.flatnonzero(flat) if used is None else used
        replies = snapshot.replies.ravel()
        reply_index = np.flatnonzero(replies)
        series = snapshot.series
        sent, self._rows_sent = self._rows_sent, len(series)
        return PackedSnapshot(
            rest=dataclasses.replace(
                snapshot,
                latency=_EMPTY,
                replies=_NO_REPLIES,
                errors=snapshot.errors.copy(),
                series=series_rows(series, sent),
            ),
            index=index.copy(),
            counts=flat[index],
            total=latency.total.copy(),
            minimum=latency.minimum.copy(),
            maximum=latency.maximum.copy(),
            rows=latency.rows,
            reply_index=reply_index,
            reply_counts=replies[reply_index],
            reply_shape=snapshot.replies.shape,
            series_from=sent,
        )


class Unpacker:
    """The parent's side: whole snapshots back, the series rebuilt from its rows."""

    def __init__(self) -> None:
        self._series: SeriesBuilder | None = None

    def unpack(self, packed: Any) -> Any:
        """The snapshot back (anything else passes through unchanged)."""
        if not isinstance(packed, PackedSnapshot):
            return packed
        latency = HistogramSet(packed.rows)
        latency.counts.ravel()[packed.index] = packed.counts
        latency.total = packed.total.copy()
        latency.minimum = packed.minimum.copy()
        latency.maximum = packed.maximum.copy()
        replies = np.zeros(packed.reply_shape, dtype=np.int64)
        replies.ravel()[packed.reply_index] = packed.reply_counts
        rows = packed.rest.series
        if self._series is None:
            self._series = SeriesBuilder(rows.p50.shape[1])
        if packed.series_from != len(self._series):
            raise ValueError(
                f"series rows out of step: {packed.series_from} sent before, "
                f"{len(self._series)} received"
            )
        self._series.extend(rows)
        return dataclasses.replace(
            packed.rest, latency=latency, replies=replies, series=self._series.view()
        )
