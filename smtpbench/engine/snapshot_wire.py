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
from smtpbench.metrics.snapshot import Snapshot


@dataclasses.dataclass(frozen=True, slots=True)
class PackedSnapshot:
    """A snapshot without its dense histograms, and their non-zero buckets."""

    rest: Snapshot  # the snapshot with an empty histogram set in place of its own
    index: np.ndarray  # flat indices of the non-zero buckets
    counts: np.ndarray
    total: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    rows: int
    reply_index: np.ndarray  # the reply counts, likewise (steps x 600, nearly all zero)
    reply_counts: np.ndarray
    reply_shape: tuple[int, ...]


_EMPTY = HistogramSet(0)
_NO_REPLIES = np.zeros((0, 0), dtype=np.int64)


def pack(snapshot: Snapshot) -> PackedSnapshot:
    latency = snapshot.latency
    flat = latency.counts.ravel()
    index = np.flatnonzero(flat)
    replies = snapshot.replies.ravel()
    reply_index = np.flatnonzero(replies)
    return PackedSnapshot(
        rest=dataclasses.replace(snapshot, latency=_EMPTY, replies=_NO_REPLIES),
        index=index,
        counts=flat[index],
        total=latency.total,
        minimum=latency.minimum,
        maximum=latency.maximum,
        rows=latency.rows,
        reply_index=reply_index,
        reply_counts=replies[reply_index],
        reply_shape=snapshot.replies.shape,
    )


def unpack(packed: Any) -> Any:
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
    return dataclasses.replace(packed.rest, latency=latency, replies=replies)
