"""The value of one metric (``p99(DATA)``, ``rate(4xx)``, ``rate(4.7.1)``, ``throughput``
...) on a run's snapshot: what thresholds and comparisons both read. ``None`` means no
data."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from smtpbench.metrics.snapshot import Counters, Snapshot
from smtpbench.protocol.steps import STEP_COUNT
from smtpbench.thresholds import REPLY_CLASSES, TRANSIT_COUNTS, TRANSIT_PERCENTILES, Metric

if TYPE_CHECKING:
    from smtpbench.transit.matching import TransitFigures


def measure(
    metric: Metric, snapshot: Snapshot, transit: TransitFigures | None = None
) -> float | None:
    """The metric's value on the snapshot (on ``transit``, the figures of a run with
    ``--through``, for a transit metric), or ``None`` when there is nothing to measure
    (no sample of that command, no reply at all, no session completed, no time elapsed,
    no transit figures yet, no message arrived)."""
    if metric.is_transit:
        return _transit(metric, transit)
    if metric.row is not None:
        return _latency(metric, snapshot, metric.row)
    c = snapshot.counters
    if metric.name == "throughput":
        if snapshot.elapsed <= 0:
            return None
        count = c.messages_accepted if metric.subject == "messages" else c.started
        return count / snapshot.elapsed
    if metric.name == "rate":
        return _rate(metric, snapshot)
    if metric.name in Counters.__dataclass_fields__:
        return float(getattr(c, metric.name))
    raise ValueError(f"cannot measure {metric}")


def _latency(metric: Metric, snapshot: Snapshot, row: int) -> float | None:
    if snapshot.latency_count(row) == 0:
        return None
    histogram = snapshot.histogram(row)
    if metric.name == "percentile":
        assert metric.q is not None
        value = histogram.percentile(metric.q)
    elif metric.name == "mean":
        value = histogram.mean
    elif metric.name == "min":
        value = histogram.minimum
    else:
        value = histogram.maximum
    return value if math.isfinite(value) else None


def _rate(metric: Metric, snapshot: Snapshot) -> float | None:
    c = snapshot.counters
    subject = metric.subject
    if subject == "errors":
        # Sessions smtpbench cut short at a stop are not the server's failures.
        completed = snapshot.server_completed
        return snapshot.server_failed / completed if completed else None
    if subject == "dropped":
        return c.dropped / c.scheduled if c.scheduled else None
    replies = snapshot.replies[:STEP_COUNT]
    if metric.step is not None:
        replies = replies[metric.step : metric.step + 1]
    total = int(replies.sum())
    if total == 0:
        return None
    assert subject is not None
    if metric.is_enhanced:
        # Of every reply (to that command), those that carried this enhanced code.
        return snapshot.enhanced_count(subject, metric.step) / total
    if subject in REPLY_CLASSES:
        first = int(subject[0]) * 100
        hits = int(replies[:, first : first + 100].sum())
    else:
        hits = int(np.asarray(replies[:, int(subject)]).sum())
    return hits / total


def _transit(metric: Metric, figures: TransitFigures | None) -> float | None:
    if figures is None:
        return None
    if metric.name in TRANSIT_COUNTS:
        return float(getattr(figures, metric.name))
    if metric.name == "max":
        value = figures.transit_max
    else:
        kept = figures.transit if metric.subject == "transit" else figures.queue
        value = kept[TRANSIT_PERCENTILES.index(metric.q or 0.0)]
    return value if math.isfinite(value) else None
