"""The results folder of a run: what ``report`` and ``compare`` read later, offline.

    results/<YYYYmmdd-HHMMSS>-<scenario>/
        scenario.toml   the resolved scenario, every value explicit: run it again with it
        summary.json    the figures a person or a script reads (format below, versioned)
        metrics.npz     histogram counts, reply codes, errors and the per-second series

``summary.json`` (``"format": "smtpbench-results"``, ``"version": 1``) holds
``info`` (scenario, target, load, seed, start time), ``state`` (``done`` or
``interrupted``), ``elapsed`` seconds, ``counters``, ``rates``, ``latency``
(per row: ``view`` = ``service`` or ``from intended start``, ``count``, ``mean``,
``min``, ``p50``, ``p90``, ``p99``, ``p99.9``, ``max``, all in seconds),
``replies`` (step -> code -> count), ``enhanced`` (step -> enhanced status code
-> count; added within version 1, so older folders without it read as none),
``errors`` (class -> step -> count) and ``recent_failures``. ``docs/results.md``
describes every field.

``metrics.npz`` holds the exact counts; the summary is derived from it, so the
two always agree, and histograms of several runs add up exactly.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from tokenize import TokenError
from typing import Any

import numpy as np

from smtpbench.files import OutputError, write_atomically
from smtpbench.metrics.client_groups import ClientRow
from smtpbench.metrics.histogram import BUCKETS, OCTAVES, SUB_BUCKETS, UNIT, HistogramSet
from smtpbench.metrics.intervals import Intervals
from smtpbench.metrics.kinds import (
    ERROR_CLASSES,
    LATENCY_ROWS,
    MAX_REPLY_CODE,
    ErrorClass,
    latency_label,
)
from smtpbench.metrics.series import SERIES_COUNTERS, Series
from smtpbench.metrics.snapshot import (
    SUMMARY_PERCENTILES,
    Counters,
    EnhancedCounts,
    FailureRecord,
    RunInfo,
    RunState,
    Snapshot,
    TranscriptLine,
    enhanced_counts,
)
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.steps import STEP_COUNT, Step

RESULTS_FORMAT = "smtpbench-results"
RESULTS_VERSION = 1
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.npz"
SCENARIO_FILE = "scenario.toml"


class ResultsError(Exception):
    """A results folder that cannot be read: says which file and what is wrong."""


def results_folder_name(started: datetime, scenario: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario).strip("-") or "run"
    return f"{started:%Y%m%d-%H%M%S}-{safe}"


def new_results_folder(base: Path, started: datetime, scenario: str) -> Path:
    """A fresh folder under ``base``; a suffix keeps two runs in the same second apart."""
    name = results_folder_name(started, scenario)
    folder = base / name
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = base / f"{name}-{suffix}"
    folder.mkdir(parents=True)
    return folder


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 9)


def summary_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The summary as plain data: what summary.json holds and ``report --format json`` prints."""
    percentiles = snapshot.percentiles(SUMMARY_PERCENTILES)
    latency: dict[str, Any] = {}
    for row in range(LATENCY_ROWS):
        count = snapshot.latency_count(row)
        if count == 0:
            continue
        histogram = snapshot.histogram(row)
        entry: dict[str, Any] = {
            "view": "service" if row < STEP_COUNT else "from intended start",
            "count": count,
            "mean": _number(histogram.mean),
            "min": _number(histogram.minimum),
        }
        for q, value in zip(SUMMARY_PERCENTILES, percentiles[row], strict=True):
            entry[f"p{q:g}"] = _number(value)
        entry["max"] = _number(histogram.maximum)
        latency[latency_label(row)] = entry
    replies = {
        Step(step).label: {
            str(code): {"count": count, "meaning": reply_meaning(code)}
            for code, count in snapshot.reply_codes(Step(step)).items()
        }
        for step in range(STEP_COUNT)
        if snapshot.replies[step].any()
    }
    enhanced = {
        Step(step).label: dict(sorted(codes.items()))
        for step in range(STEP_COUNT)
        if (codes := snapshot.enhanced_codes(Step(step)))
    }
    errors: dict[str, dict[str, int]] = {}
    for error in ErrorClass:
        row = snapshot.errors[error]
        if row.any():
            errors[error.label] = {Step(s).label: int(n) for s, n in enumerate(row) if n}
    elapsed = snapshot.elapsed
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "info": asdict(snapshot.info),
        "state": snapshot.state.value,
        "elapsed": round(elapsed, 6),
        "counters": asdict(snapshot.counters),
        "rates": {
            "target_sessions_per_second": snapshot.target_rate,
            "achieved_sessions_per_second": round(snapshot.achieved_rate, 3),
            "messages_accepted_per_second": round(snapshot.messages_per_second, 3),
        },
        "latency": latency,
        "replies": replies,
        "enhanced": enhanced,
        "errors": errors,
        "recent_failures": [asdict(f) for f in snapshot.failures],
        **({"divergence": divergence_dict(snapshot)} if snapshot.divergence is not None else {}),
        **({"clients": [row.to_dict() for row in snapshot.clients]} if snapshot.clients else {}),
    }


def divergence_dict(snapshot: Snapshot) -> dict[str, dict[str, float | int]]:
    """Replays: per step, replies compared with the recording and codes that differed."""
    out: dict[str, dict[str, float | int]] = {}
    for step in Step:
        compared, differed = snapshot.divergence_of(step)
        if compared:
            out[step.label] = {
                "compared": compared,
                "differed": differed,
                "share": round(differed / compared, 6),
            }
    return out


def write_results(folder: Path, snapshot: Snapshot, scenario_toml: str) -> None:
    """Writes all three files, each under a temporary name renamed into place (a file is
    whole or absent); metrics first, so a summary never points at missing data.
    ``OutputError`` names the file that could not be written (a full disk)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the folder: {err.strerror or err}") from None
    series = snapshot.series
    metrics = io.BytesIO()
    np.savez_compressed(
        metrics,
        layout=np.array([SUB_BUCKETS, OCTAVES, BUCKETS, STEP_COUNT, LATENCY_ROWS]),
        unit=np.array(UNIT),
        latency_counts=snapshot.latency.counts,
        latency_total=snapshot.latency.total,
        latency_min=snapshot.latency.minimum,
        latency_max=snapshot.latency.maximum,
        replies=snapshot.replies,
        errors=snapshot.errors,
        series_time=series.time,
        series_counters=series.counters,
        series_target_rate=series.target_rate,
        series_p50=series.p50,
        series_p99=series.p99,
        series_count=series.count,
        **(snapshot.intervals.to_arrays() if snapshot.intervals is not None else {}),
        **({"divergence": snapshot.divergence} if snapshot.divergence is not None else {}),
    )
    write_atomically(folder / METRICS_FILE, metrics.getvalue())
    write_atomically(folder / SCENARIO_FILE, scenario_toml)
    text = json.dumps(summary_dict(snapshot), indent=2, allow_nan=False)
    write_atomically(folder / SUMMARY_FILE, text + "\n")


def read_results(folder: Path) -> Snapshot:
    """The snapshot a run ended with, rebuilt from its results folder."""
    folder = Path(folder)
    summary_path = folder / SUMMARY_FILE
    metrics_path = folder / METRICS_FILE
    if not folder.is_dir():
        raise ResultsError(f"{folder}: no such results folder")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{summary_path}: missing; is this a results folder?") from None
    except json.JSONDecodeError as err:
        raise ResultsError(f"{summary_path}: line {err.lineno}: not valid JSON") from None
    except UnicodeDecodeError as err:
        raise ResultsError(f"{summary_path}: not UTF-8 (byte {err.start + 1})") from None
    except RecursionError:
        raise ResultsError(f"{summary_path}: not valid JSON: nested too deeply") from None
    except OSError as err:
        raise ResultsError(f"{summary_path}: cannot read: {err.strerror or err}") from None
    if not isinstance(summary, dict):
        raise ResultsError(f"{summary_path}: expected a JSON object")
    if summary.get("format") != RESULTS_FORMAT:
        raise ResultsError(f"{summary_path}: format: expected {RESULTS_FORMAT!r}")
    if summary.get("version") != RESULTS_VERSION:
        raise ResultsError(
            f"{summary_path}: version: {summary.get('version')!r} is not supported "
            f"(this smtpbench reads version {RESULTS_VERSION})"
        )
    arrays = _read_metrics(metrics_path)
    layout = np.array([SUB_BUCKETS, OCTAVES, BUCKETS, STEP_COUNT, LATENCY_ROWS])
    found = arrays.get("layout")
    before_xclient = np.array([SUB_BUCKETS, OCTAVES, BUCKETS, _STEPS_BEFORE_XCLIENT, 21])
    if found is not None and found.shape == layout.shape and np.array_equal(found, before_xclient):
        arrays = _with_xclient_step(arrays)
        found = arrays["layout"]
    if found is None or found.shape != layout.shape or not np.array_equal(found, layout):
        raise ResultsError(f"{metrics_path}: layout: histogram layout differs from this version")
    arrays = _with_scheduled_series(arrays)
    try:
        return _snapshot_from(summary, arrays)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
        raise ResultsError(
            f"{folder}: {SUMMARY_FILE} or {METRICS_FILE}: missing or malformed field {err}"
        ) from None


def _with_scheduled_series(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of a folder written before the series kept the sessions scheduled per
    interval: that column as -1 in every row (not known), the others as they were."""
    counters = arrays.get("series_counters")
    if counters is None or counters.ndim != 2 or counters.shape[1] != len(SERIES_COUNTERS) - 1:
        return arrays
    unknown = np.full((counters.shape[0], 1), -1, dtype=counters.dtype)
    return {**arrays, "series_counters": np.hstack([counters, unknown])}


_STEPS_BEFORE_XCLIENT = 18  # results written before XCLIENT was a step


def _with_xclient_step(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of a folder written when there were 18 steps, as today's: an empty XCLIENT
    step after QUIT, which moves the rows after the steps (start lag, message, session)
    down by one. Nothing counted changes."""
    at = _STEPS_BEFORE_XCLIENT
    out = dict(arrays)
    out["layout"] = np.array([SUB_BUCKETS, OCTAVES, BUCKETS, STEP_COUNT, LATENCY_ROWS])
    out["latency_counts"] = np.insert(arrays["latency_counts"], at, 0, axis=0)
    out["latency_total"] = np.insert(arrays["latency_total"], at, 0.0)
    out["latency_min"] = np.insert(arrays["latency_min"], at, np.inf)
    out["latency_max"] = np.insert(arrays["latency_max"], at, -np.inf)
    out["replies"] = np.insert(arrays["replies"], at, 0, axis=0)
    out["errors"] = np.insert(arrays["errors"], at, 0, axis=1)
    for name in ("series_p50", "series_p99", "series_count"):
        if name in arrays and arrays[name].ndim == 2:
            out[name] = np.insert(arrays[name], at, 0, axis=1)
    if "divergence" in arrays:
        out["divergence"] = np.insert(arrays["divergence"], at, 0, axis=1)
    if "intervals_latency_index" in arrays:  # flat (row, bucket) indices
        index = arrays["intervals_latency_index"].astype(np.int64)
        out["intervals_latency_index"] = np.where(index >= at * BUCKETS, index + BUCKETS, index)
    return out


def _read_metrics(path: Path) -> dict[str, np.ndarray]:
    """Every array of metrics.npz; ``ResultsError`` saying what is wrong with the file
    (missing, cut short, not an archive of arrays)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ResultsError(f"{path}: not an archive of arrays (.npz)")
        with data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing") from None
    except zipfile.BadZipFile as err:
        raise ResultsError(f"{path}: damaged or cut short (was the disk full?): {err}") from None
    # numpy reads each array's header with the tokenizer: a damaged one can fail there.
    except (OSError, ValueError, EOFError, zlib.error, KeyError, SyntaxError, TokenError) as err:
        raise ResultsError(f"{path}: unreadable: {err}") from None


def _snapshot_from(summary: dict[str, Any], arrays: dict[str, np.ndarray]) -> Snapshot:
    latency = HistogramSet(LATENCY_ROWS)
    latency.counts = arrays["latency_counts"].astype(np.int64)
    latency.total = arrays["latency_total"].astype(np.float64)
    latency.minimum = arrays["latency_min"].astype(np.float64)
    latency.maximum = arrays["latency_max"].astype(np.float64)
    series = Series(
        arrays["series_time"],
        arrays["series_counters"],
        arrays["series_target_rate"],
        arrays["series_p50"],
        arrays["series_p99"],
        arrays["series_count"],
    )
    failures = tuple(
        FailureRecord(
            time=f["time"],
            session=f["session"],
            step=f["step"],
            error=f["error"],
            detail=f["detail"],
            transcript=tuple(TranscriptLine(**line) for line in f["transcript"]),
        )
        for f in summary["recent_failures"]
    )
    replies = arrays["replies"]
    errors = arrays["errors"]
    if replies.shape != (STEP_COUNT, MAX_REPLY_CODE) or errors.shape != (
        ERROR_CLASSES,
        STEP_COUNT,
    ):
        raise ValueError("replies/errors shape")
    return Snapshot(
        info=RunInfo(**summary["info"]),
        state=RunState(summary["state"]),
        elapsed=float(summary["elapsed"]),
        target_rate=summary["rates"]["target_sessions_per_second"],
        counters=Counters(**summary["counters"]),
        latency=latency,
        replies=replies,
        errors=errors,
        series=series,
        failures=failures,
        intervals=Intervals.from_arrays(arrays),
        divergence=_divergence(arrays.get("divergence")),
        enhanced=_enhanced(summary.get("enhanced", {})),
        # Figures per client: only runs from several addresses have them.
        clients=tuple(ClientRow.from_dict(row) for row in summary.get("clients", [])),
    )


_ENHANCED_CODE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


def _enhanced(table: Any) -> EnhancedCounts:
    """``enhanced`` of summary.json: step label -> code -> count (absent in older folders)."""
    counts: dict[tuple[int, str], int] = {}
    for label, codes in table.items():
        step = Step.from_label(label)
        for code, n in codes.items():
            if not _ENHANCED_CODE.match(code) or type(n) is not int or n < 0:
                raise ValueError(f"enhanced.{label}.{code}")
            counts[int(step), code] = n
    return enhanced_counts(counts)


def _divergence(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    if array.shape != (2, STEP_COUNT):
        raise ValueError("divergence shape")
    return array.astype(np.int64)
