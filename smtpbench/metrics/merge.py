"""Several runs as one: the runs of several machines or processes that split one load
between them, added together exactly.

Histograms, reply codes (enhanced ones too), errors and counters add up, so every percentile of
the merged run is the one a single run recording all the samples would report.
The per-second series and the per-interval counts are added interval by
interval, by position from each run's start (the runs are expected to have
started together); each interval's p50 and p99 are computed again from the
added interval histograms. A run whose intervals were paired to save memory
cannot be lined up second by second: then the merged run keeps no intervals
and its per-second percentiles are left empty (NaN), while everything else is
still exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smtpbench.metrics.client_groups import add_client_rows
from smtpbench.metrics.histogram import HistogramSet, percentiles_of
from smtpbench.metrics.intervals import Intervals, sparse
from smtpbench.metrics.kinds import LATENCY_ROWS
from smtpbench.metrics.recorder import RECENT_FAILURES
from smtpbench.metrics.series import Series
from smtpbench.metrics.snapshot import Counters, RunInfo, RunState, Snapshot, add_enhanced


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def merged_info(infos: Sequence[RunInfo]) -> RunInfo:
    first = infos[0]
    durations = [i.planned_duration for i in infos if i.planned_duration is not None]
    sessions = [i.planned_sessions for i in infos if i.planned_sessions is not None]
    modes = _unique([i.mode for i in infos])
    return RunInfo(
        scenario=" + ".join(_unique([i.scenario for i in infos])),
        target=", ".join(_unique([i.target for i in infos])),
        load=f"{len(infos)} runs merged: " + "; ".join(_unique([i.load for i in infos])),
        mode=modes[0] if len(modes) == 1 else "mixed",
        planned_duration=max(durations) if durations else None,
        planned_sessions=sum(sessions) if len(sessions) == len(infos) else None,
        seed=first.seed,
        started_at=min(i.started_at for i in infos),
        version=first.version,
        run_id="+".join(sorted(set().union(*(run_ids(i) for i in infos))))
        if all(i.run_id for i in infos)
        else "",
        delivery="mta" if any(i.delivery == "mta" for i in infos) else "open",
        engine=" + ".join(_unique([i.engine for i in infos]))
        if all(i.engine for i in infos)
        else "",
    )


def run_ids(info: RunInfo) -> frozenset[str]:
    """The runs a result holds: its own, or those a merge added up."""
    return frozenset(info.run_id.split("+")) if info.run_id else frozenset()


def merge_snapshots(snapshots: Sequence[Snapshot]) -> Snapshot:
    """One snapshot holding the samples of all of them."""
    if not snapshots:
        raise ValueError("nothing to merge")
    latency = HistogramSet(LATENCY_ROWS)
    for snapshot in snapshots:
        latency.merge(snapshot.latency)
    counters = Counters(
        **{
            name: sum(getattr(s.counters, name) for s in snapshots)
            for name in Counters.__dataclass_fields__
        }
    )
    rates = [s.target_rate for s in snapshots if s.target_rate is not None]
    interrupted = any(s.state is RunState.INTERRUPTED for s in snapshots)
    failures = sorted((f for s in snapshots for f in s.failures), key=lambda f: f.time)
    intervals = _merge_intervals(snapshots)
    return Snapshot(
        info=merged_info([s.info for s in snapshots]),
        state=RunState.INTERRUPTED if interrupted else RunState.DONE,
        elapsed=max(s.elapsed for s in snapshots),
        target_rate=sum(rates) if rates else None,
        counters=counters,
        latency=latency,
        replies=sum((s.replies for s in snapshots), np.zeros_like(snapshots[0].replies)),
        errors=sum((s.errors for s in snapshots), np.zeros_like(snapshots[0].errors)),
        series=_merge_series([s.series for s in snapshots], intervals),
        failures=tuple(failures[-RECENT_FAILURES:]),
        intervals=intervals,
        divergence=_merge_divergence(snapshots),
        enhanced=add_enhanced(s.enhanced for s in snapshots),
        clients=add_client_rows(s.clients for s in snapshots),
    )


def _merge_divergence(snapshots: Sequence[Snapshot]) -> np.ndarray | None:
    """Replays: compared and differed counts add up."""
    arrays = [s.divergence for s in snapshots if s.divergence is not None]
    if not arrays:
        return None
    return np.sum(arrays, axis=0)


def _lined_up(snapshot: Snapshot) -> bool:
    """Whether the run has one interval per row of its series (none were paired)."""
    iv = snapshot.intervals
    return iv is not None and len(iv) == len(snapshot.series)


def _merge_intervals(snapshots: Sequence[Snapshot]) -> Intervals | None:
    if not all(_lined_up(s) for s in snapshots):
        return None
    parts = [s.intervals for s in snapshots if s.intervals is not None]
    n = max(len(iv) for iv in parts)
    end = np.zeros(n)
    latency, replies = [], []
    for i in range(n):
        having = [iv for iv in parts if i < len(iv)]
        end[i] = max(iv.end[i] for iv in having)
        latency.append(sparse(sum(iv.latency_counts(i) for iv in having)))  # type: ignore[arg-type]
        replies.append(sparse(sum(iv.reply_counts(i) for iv in having)))  # type: ignore[arg-type]
    return Intervals(end, tuple(latency), tuple(replies))


def _padded(arrays: Sequence[np.ndarray], n: int, fill: float = 0) -> np.ndarray:
    out = np.full((len(arrays), n, *arrays[0].shape[1:]), fill, dtype=arrays[0].dtype)
    for k, array in enumerate(arrays):
        out[k, : len(array)] = array
    return out


def _merge_series(series: Sequence[Series], intervals: Intervals | None) -> Series:
    n = max(len(s) for s in series)
    time = _padded([s.time for s in series], n).max(axis=0)
    counters = _padded([s.counters for s in series], n).sum(axis=0)
    target = _padded([s.target_rate for s in series], n, np.nan)
    with np.errstate(invalid="ignore"):
        target_rate = np.where(np.isnan(target).all(axis=0), np.nan, np.nansum(target, axis=0))
    count = _padded([s.count for s in series], n).sum(axis=0)
    p50 = np.full((n, LATENCY_ROWS), np.nan)
    p99 = np.full((n, LATENCY_ROWS), np.nan)
    if intervals is not None:
        rows = LATENCY_ROWS
        for i in range(n):
            # As the recorder computes them: this interval's counts alone, unclipped.
            p50[i], p99[i] = percentiles_of(
                intervals.latency_counts(i), np.zeros(rows), np.full(rows, np.inf), (50.0, 99.0)
            ).T
    return Series(time, counters, target_rate, p50, p99, count)
