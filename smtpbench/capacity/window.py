"""One part of a run as a run of its own: the difference of two snapshots of it.

Everything a snapshot counts only grows (counters, histogram buckets, reply codes,
errors), so what happened between two snapshots is their difference, and any
threshold measures on it as on a whole run. Minimum and maximum cannot be taken
apart: the later snapshot's bound the part's, so a percentile is still the
bucket's (within 0.4%), clamped to bounds that may be wider than the part's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from smtpbench.metrics.histogram import HistogramSet
from smtpbench.metrics.snapshot import Counters, EnhancedCounts, Snapshot, enhanced_counts

# Levels, not counts: the part keeps the later snapshot's.
_LEVELS = ("in_flight", "waiting")


def _counters(before: Counters, after: Counters) -> Counters:
    return Counters(
        **{
            name: getattr(after, name)
            if name in _LEVELS
            else getattr(after, name) - getattr(before, name)
            for name in Counters.__dataclass_fields__
        }
    )


def _enhanced(before: EnhancedCounts, after: EnhancedCounts) -> EnhancedCounts:
    counts = {(step, code): n for step, code, n in after}
    for step, code, n in before:
        counts[step, code] = counts.get((step, code), 0) - n
    return enhanced_counts(counts)


def between(before: Snapshot, after: Snapshot) -> Snapshot:
    """What happened from ``before`` to ``after`` (two snapshots of one run), as a
    snapshot whose elapsed time is the time between them."""
    latency = HistogramSet(after.latency.rows)
    latency.counts = after.latency.counts - before.latency.counts
    latency.total = after.latency.total - before.latency.total
    latency.minimum = after.latency.minimum.copy()
    latency.maximum = after.latency.maximum.copy()
    empty = latency.counts.sum(axis=1) == 0
    latency.minimum[empty] = np.inf
    latency.maximum[empty] = -np.inf
    divergence = None
    if after.divergence is not None and before.divergence is not None:
        divergence = after.divergence - before.divergence
    return dataclasses.replace(
        after,
        elapsed=max(0.0, after.elapsed - before.elapsed),
        counters=_counters(before.counters, after.counters),
        latency=latency,
        replies=after.replies - before.replies,
        errors=after.errors - before.errors,
        failures=tuple(f for f in after.failures if f.time > before.elapsed),
        intervals=None,
        divergence=divergence,
        enhanced=_enhanced(before.enhanced, after.enhanced),
        _percentiles={},
    )
