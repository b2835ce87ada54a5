"""A run's figures as JSON and CSV, for scripts, spreadsheets and other tools.

JSON is the ``summary.json`` document (see docs/results.md) with a
``thresholds`` list added when thresholds were checked, and a ``transit``
object (``transit.json``) when the run had ``--through``. CSV is the latency
table: one line per command (service time), per measure from intended start
and, with ``--through``, per transit measure (view ``transit``: p50, p90 and
p99 only), every duration in seconds. The replies CSV is the reply-codes
table: one line per command and code, the enhanced status codes under the
basic codes of their class.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from smtpbench.metrics.kinds import LATENCY_ROWS, latency_label
from smtpbench.metrics.results import summary_dict
from smtpbench.metrics.snapshot import SUMMARY_PERCENTILES, Snapshot
from smtpbench.protocol.steps import STEP_COUNT
from smtpbench.report.reply_rows import all_reply_rows
from smtpbench.report.thresholds import ThresholdResult
from smtpbench.transit.matching import PERCENTILES as TRANSIT_PERCENTILES
from smtpbench.transit.matching import TransitFigures
from smtpbench.transit.report import figures_dict, time_rows

CSV_COLUMNS = (
    "command",
    "view",
    "count",
    "rate_per_s",
    "mean_s",
    "min_s",
    *(f"p{q:g}_s" for q in SUMMARY_PERCENTILES),
    "max_s",
    "errors",
)


def report_dict(
    snapshot: Snapshot,
    thresholds: Sequence[ThresholdResult] | None = None,
    transit: TransitFigures | None = None,
) -> dict[str, Any]:
    data = summary_dict(snapshot)
    if thresholds:
        data["thresholds"] = [result.as_dict() for result in thresholds]
    if transit is not None:
        data["transit"] = figures_dict(transit)
    return data


def report_json(
    snapshot: Snapshot,
    thresholds: Sequence[ThresholdResult] | None = None,
    transit: TransitFigures | None = None,
) -> str:
    data = report_dict(snapshot, thresholds, transit)
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def latency_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    """One dict per latency row with samples (commands in session order, then start
    lag, message, session); values in seconds, errors counted at that command."""
    percentiles = snapshot.percentiles(SUMMARY_PERCENTILES)
    rows = []
    for row in range(LATENCY_ROWS):
        count = snapshot.latency_count(row)
        errors = snapshot.step_errors(row) if row < STEP_COUNT else 0  # type: ignore[arg-type]
        if count == 0 and errors == 0:
            continue
        histogram = snapshot.histogram(row)
        entry: dict[str, Any] = {
            "command": latency_label(row),
            "view": "service" if row < STEP_COUNT else "from intended start",
            "count": count,
            "rate_per_s": round(count / snapshot.elapsed, 3) if snapshot.elapsed > 0 else None,
            "mean_s": _seconds(histogram.mean),
            "min_s": _seconds(histogram.minimum),
        }
        for q, value in zip(SUMMARY_PERCENTILES, percentiles[row], strict=True):
            entry[f"p{q:g}_s"] = _seconds(value)
        entry["max_s"] = _seconds(histogram.maximum)
        entry["errors"] = errors if row < STEP_COUNT else None
        rows.append(entry)
    return rows


def transit_rows(figures: TransitFigures) -> list[dict[str, Any]]:
    """The transit measures as latency rows (view ``transit``), over the messages that
    arrived: the percentiles transit keeps (p50, p90, p99), the others None."""
    rows = []
    for label, values, largest in time_rows(figures):
        kept = dict(zip(TRANSIT_PERCENTILES, values, strict=True))
        entry: dict[str, Any] = {
            "command": label,
            "view": "transit",
            "count": figures.arrived,
            "rate_per_s": None,
            "mean_s": None,
            "min_s": None,
        }
        for q in SUMMARY_PERCENTILES:
            entry[f"p{q:g}_s"] = _seconds(kept.get(q, math.nan))
        entry["max_s"] = None if largest is None else _seconds(largest)
        entry["errors"] = None
        rows.append(entry)
    return rows


def latency_csv(snapshot: Snapshot, transit: TransitFigures | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = latency_rows(snapshot) + (transit_rows(transit) if transit is not None else [])
    for entry in rows:
        writer.writerow({key: "" if value is None else value for key, value in entry.items()})
    return out.getvalue()


REPLY_CSV_COLUMNS = ("command", "code", "kind", "meaning", "count", "share")


def replies_csv(snapshot: Snapshot) -> str:
    """``kind`` is ``basic`` (a reply code) or ``enhanced`` (RFC 3463, listed under the basic
    codes of its class); ``share`` is of every reply to the command, as a fraction."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPLY_CSV_COLUMNS)
    for row in all_reply_rows(snapshot):
        kind = "enhanced" if row.enhanced else "basic"
        share = f"{row.share:.6g}"
        writer.writerow([row.step.label, row.code, kind, row.meaning, row.count, share])
    return out.getvalue()


def _seconds(value: float) -> float | None:
    return round(float(value), 9) if np.isfinite(value) else None
