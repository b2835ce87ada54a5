"""Whether runs can be merged: a merge adds every count, so it means something only for
runs that split one load between them (the same scenario, model and server, at the
same time). The same run twice is refused outright (it would double every count);
the rest is refused unless the person asking says they know (``--force``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smtpbench.metrics.merge import run_ids
from smtpbench.metrics.snapshot import Snapshot

# Runs on several machines start within a moment of each other; start times are written
# to the second.
CLOCK_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class MergeCheck:
    twice: str | None = None  # the same run given twice: never merged
    differences: list[str] = field(default_factory=list)  # merged only with --force


def _target_kind(target: str) -> str:
    # Each run starts an embedded sink of its own on a free port: alike, not the same.
    return "an embedded sink" if target.startswith("embedded sink") else target


def _span(snapshot: Snapshot) -> tuple[datetime, datetime] | None:
    try:
        start = datetime.fromisoformat(snapshot.info.started_at)
    except ValueError:
        return None
    return start, start + timedelta(seconds=max(0.0, snapshot.elapsed))


def _differ(label: str, values: Sequence[str], names: Sequence[str]) -> str | None:
    if len(set(values)) < 2:
        return None
    shown = "; ".join(f"{name}: {value}" for name, value in zip(names, values, strict=True))
    return f"the {label} differ ({shown})"


def check_merge(snapshots: Sequence[Snapshot], names: Sequence[str]) -> MergeCheck:
    """What stands against adding ``snapshots`` (read from the folders ``names``) up."""
    seen: dict[str, str] = {}
    for snapshot, name in zip(snapshots, names, strict=True):
        for run in run_ids(snapshot.info):
            if run in seen:
                return MergeCheck(
                    twice=f"{name} holds the same run as {seen[run]} (run id {run}): "
                    "merging it again would count every session twice"
                )
            seen[run] = name
    infos = [s.info for s in snapshots]
    found = [
        _differ("scenarios", [i.scenario for i in infos], names),
        _differ("load models", [i.mode for i in infos], names),
        _differ("targets", [_target_kind(i.target) for i in infos], names),
        _differ(
            "kinds of run",
            ["a replay" if s.divergence is not None else "a run" for s in snapshots],
            names,
        ),
    ]
    spans = [_span(s) for s in snapshots]
    if all(span is not None for span in spans):
        starts = [span[0] for span in spans if span is not None]
        ends = [span[1] for span in spans if span is not None]
        if max(starts) > min(ends) + CLOCK_SLACK:
            found.append("the runs did not overlap in time (each started after another ended)")
    return MergeCheck(differences=[f for f in found if f is not None])
