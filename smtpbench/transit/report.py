"""Transit figures shown and kept: the end-of-run table, the live line, and the results
files ``transit.json`` (figures and per-second series) and ``transit.csv`` (the series)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from smtpbench.files import write_atomically
from smtpbench.transit.matching import PERCENTILES, SecondRow, TransitFigures
from smtpbench.units import format_duration

TRANSIT_JSON = "transit.json"
TRANSIT_CSV = "transit.csv"


def _p(q: float) -> str:
    return f"p{q:g}"


def transit_title(figures: TransitFigures) -> str:
    title = f"Transit through the server to {figures.through}"
    if figures.drained:
        title += f" (waited {format_duration(figures.drained)} after sending ended)"
    return title


def count_rows(figures: TransitFigures) -> list[tuple[str, int]]:
    """What arrived, as every report lists it: (label, count)."""
    return [
        ("accepted (250)", figures.accepted),
        ("arrived downstream", figures.arrived),
        ("not arrived", figures.not_arrived),
        ("duplicates", figures.duplicates),
        ("altered (body size or digest)", figures.altered),
        ("unexpected (not accepted here)", figures.unexpected),
        ("foreign (not this run's)", figures.foreign),
    ]


def time_rows(figures: TransitFigures) -> list[tuple[str, tuple[float, ...], float | None]]:
    """The times of arrived messages, as every report lists them: (label, percentiles
    (``PERCENTILES``), the largest or None where it is not kept); NaN: none arrived."""
    return [
        ("intended start to 250", figures.to_accept, None),
        ("intended start to arrival", figures.transit, figures.transit_max),
        ("250 to arrival (queue)", figures.queue, None),
    ]


def transit_table(figures: TransitFigures) -> Group:
    """The summary's transit tables: what arrived, then each latency's percentiles."""
    styles = {
        "arrived downstream": "green",
        "not arrived": "red" if figures.not_arrived else "",
        "duplicates": "yellow" if figures.duplicates else "",
        "altered (body size or digest)": "red" if figures.altered else "",
        "foreign (not this run's)": "dim",
    }
    table = Table(show_header=True)
    table.add_column("messages", style="bold")
    table.add_column("count", justify="right")
    for label, value in count_rows(figures):
        style = styles.get(label, "")
        table.add_row(label, f"[{style}]{value:,}[/]" if style else f"{value:,}")
    times = Table(show_header=True)
    times.add_column("of arrived messages", style="bold")
    for q in PERCENTILES:
        times.add_column(_p(q), justify="right")
    times.add_column("max", justify="right")
    for label, values, largest in time_rows(figures):
        most = "" if largest is None else format_duration(largest)
        times.add_row(label, *(format_duration(v) for v in values), most)
    return Group(Text(transit_title(figures), style="italic"), table, times)


def transit_line(figures: TransitFigures) -> str:
    """One line for live output and the dashboard."""
    p50, _, p99 = figures.transit
    parts = [
        f"transit {figures.arrived:,}/{figures.accepted:,} arrived",
        f"p50 {format_duration(p50)}",
        f"p99 {format_duration(p99)}",
        f"queue p50 {format_duration(figures.queue[0])}",
    ]
    if figures.not_arrived:
        parts.append(f"{figures.not_arrived:,} {'waiting' if figures.waiting else 'not arrived'}")
    if figures.duplicates:
        parts.append(f"{figures.duplicates:,} duplicates")
    if figures.altered:
        parts.append(f"{figures.altered:,} altered")
    return "  ".join(parts)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 9)


def figures_dict(figures: TransitFigures) -> dict[str, Any]:
    out: dict[str, Any] = {
        key: getattr(figures, key)
        for key in (
            "through",
            "accepted",
            "arrived",
            "not_arrived",
            "duplicates",
            "altered",
            "unexpected",
            "foreign",
        )
    }
    out["drained_seconds"] = round(figures.drained, 3)
    for name in ("to_accept", "transit", "queue"):
        out[f"{name}_seconds"] = {
            _p(q): _number(v) for q, v in zip(PERCENTILES, getattr(figures, name), strict=True)
        }
    out["transit_seconds"]["max"] = _number(figures.transit_max)
    out["seconds"] = [
        {**dataclasses.asdict(row), "transit_p50": _number(row.transit_p50),
         "transit_p99": _number(row.transit_p99)}
        for row in figures.seconds
    ]  # fmt: skip
    return out


def _csv_row(row: SecondRow) -> str:
    def cell(value: float) -> str:
        return "" if math.isnan(value) else f"{value:.6f}"

    return (
        f"{row.second},{row.accepted},{row.arrived},{row.accepted - row.arrived},"
        f"{cell(row.transit_p50)},{cell(row.transit_p99)}\n"
    )


def write_transit(folder: Path, figures: TransitFigures) -> None:
    """``transit.json`` and ``transit.csv`` in the results folder (``OutputError``)."""
    write_atomically(folder / TRANSIT_JSON, json.dumps(figures_dict(figures), indent=2) + "\n")
    header = "second,accepted,arrived,not_arrived,transit_p50_s,transit_p99_s\n"
    write_atomically(folder / TRANSIT_CSV, header + "".join(map(_csv_row, figures.seconds)))


def _seconds_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def figures_from_dict(data: dict[str, Any]) -> TransitFigures:
    """The inverse of ``figures_dict``: ``transit.json`` read back (KeyError, TypeError or
    ValueError when it is not one)."""

    def percentiles(name: str) -> tuple[float, ...]:
        table = data[f"{name}_seconds"]
        return tuple(_seconds_or_nan(table[_p(q)]) for q in PERCENTILES)

    return TransitFigures(
        through=str(data["through"]),
        accepted=int(data["accepted"]),
        arrived=int(data["arrived"]),
        not_arrived=int(data["not_arrived"]),
        duplicates=int(data["duplicates"]),
        altered=int(data["altered"]),
        unexpected=int(data["unexpected"]),
        foreign=int(data["foreign"]),
        to_accept=percentiles("to_accept"),
        transit=percentiles("transit"),
        transit_max=_seconds_or_nan(data["transit_seconds"]["max"]),
        queue=percentiles("queue"),
        waiting=False,
        drained=float(data["drained_seconds"]),
        seconds=tuple(
            SecondRow(
                int(row["second"]),
                int(row["accepted"]),
                int(row["arrived"]),
                _seconds_or_nan(row["transit_p50"]),
                _seconds_or_nan(row["transit_p99"]),
            )
            for row in data["seconds"]
        ),
    )


def read_transit(folder: Path) -> TransitFigures | None:
    """The stored figures of a results folder, None when the run had no ``--through``;
    ``ValueError`` naming the file when it cannot be read."""
    path = folder / TRANSIT_JSON
    if not path.exists():
        return None
    try:
        return figures_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a transit file smtpbench wrote ({err})") from None
