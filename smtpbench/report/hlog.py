"""A run as an HdrHistogram interval log (``.hlog``), written with the ``hdrhistogram``
package, so that HdrHistogram's own tools (HistogramLogProcessor,
HistogramLogAnalyzer, ``hdrh``) read smtpbench results.

One tag per latency row with samples (``connect``, ``EHLO``, ``DATA_end``,
``message``, ``start_lag`` ...: the labels with spaces as underscores, which
tags cannot hold), one line per tag and interval (one second, or longer where
a long run's intervals were paired). Values are nanoseconds, HdrHistogram's
usual unit, so ``Interval_Max`` reads in milliseconds. Each of our buckets is
recorded at its middle, clamped to the row's exact minimum and maximum, which
is the value our own percentiles report; the log's 3 significant digits add
at most 0.1% to our histogram's 0.4%.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from smtpbench.metrics.histogram import BUCKET_MIDDLE, IntArray
from smtpbench.metrics.kinds import LATENCY_ROWS, latency_label
from smtpbench.metrics.snapshot import Snapshot

LOWEST_NS = 1
HIGHEST_NS = 2**52  # about 52 days: beyond the longest bucket
SIGNIFICANT_DIGITS = 3
NS = 1e9


def tag_of(row: int) -> str:
    return latency_label(row).replace(" ", "_")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)


def _record(histogram: HdrHistogram, counts: IntArray, low: float, high: float) -> None:
    buckets = np.flatnonzero(counts)
    values = np.clip(BUCKET_MIDDLE[buckets], low, high)
    nanoseconds = np.clip(np.rint(values * NS), LOWEST_NS, HIGHEST_NS).astype(np.int64)
    for value, count in zip(nanoseconds.tolist(), counts[buckets].tolist(), strict=True):
        histogram.record_value(value, count)


def _epoch(started_at: str) -> float:
    try:
        return datetime.fromisoformat(started_at).timestamp()
    except ValueError:
        return 0.0


def write_hlog(path: Path, snapshot: Snapshot) -> int:
    """Writes the log; returns how many tags (latency rows with samples) it holds."""
    rows = [row for row in range(LATENCY_ROWS) if snapshot.latency_count(row)]
    intervals = snapshot.intervals
    if intervals is not None and len(intervals):
        ends = [float(e) for e in intervals.end]
        counts_of = intervals.latency_counts
    else:  # a results folder without per-interval counts: the whole run as one interval
        ends = [snapshot.elapsed]
        counts_of = lambda _: snapshot.latency.counts  # noqa: E731
    started = _epoch(snapshot.info.started_at)
    info = snapshot.info
    with path.open("w", encoding="utf-8") as out:
        log = HistogramLogWriter(out)
        log.output_comment(
            f"[{info.tool}: {info.scenario}, {info.load}, against {info.target}; "
            "latency in nanoseconds, one tag per command; service time per command, "
            "message, session and start lag from intended start]"
        )
        log.output_comment("[Histogram log format version 1.3]")
        stamp = datetime.fromtimestamp(started).astimezone().isoformat()
        log.output_comment(f"[StartTime: {started:.3f} (seconds since epoch), {stamp}]")
        log.output_base_time(started * 1000.0)
        log.output_legend()
        histogram = new_histogram()
        begin = 0.0
        for i, end in enumerate(ends):
            counts = counts_of(i)
            for row in rows:
                if not counts[row].any():
                    continue
                histogram.reset()
                low, high = snapshot.latency.minimum[row], snapshot.latency.maximum[row]
                _record(histogram, counts[row], low, high)
                payload = histogram.encode().decode("ascii")
                maximum_ms = histogram.get_max_value() / 1e6
                out.write(
                    f"Tag={tag_of(row)},{begin:.3f},{end - begin:.3f},{maximum_ms:.3f},{payload}\n"
                )
            begin = end
    return len(rows)
