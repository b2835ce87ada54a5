"""A cluster run's figures per host: which engine ran where, what it started, how fast,
the CPU it used, how far its clock was from the driver's, and whether it was lost.

Kept beside the results as ``hosts.json``; ``report`` shows it again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from smtpbench.files import write_atomically

HOSTS_FILE = "hosts.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class HostRow:
    """One engine worker of a cluster run: where it ran, what it did, how it ended."""

    worker: str  # the Dask worker's address
    hostname: str
    index: int  # its share: worker ``index`` of the run's workers
    started: int  # sessions, by its final snapshot (its last one, if lost)
    rate: float | None  # sessions started a second over its run
    cpu_seconds: float | None  # of its engine process
    clock_offset: float  # seconds its clock is ahead of the driver's
    round_trip: float  # seconds, of the clock reading that measured the offset
    lost: bool = False
    lost_at: float | None = None  # seconds into the run (negative: before the start)
    lost_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Hosts:
    """Every engine of a cluster run, and what was said of the cluster as a whole."""

    cluster: str  # the scheduler's address
    rows: tuple[HostRow, ...]
    warnings: tuple[str, ...] = field(default=())  # clocks further off than allowed

    @property
    def partial(self) -> bool:
        """Some engine was lost: the run's figures lack what it did after its last report."""
        return any(row.lost for row in self.rows)

    @property
    def lost(self) -> tuple[HostRow, ...]:
        return tuple(row for row in self.rows if row.lost)


def _number(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def hosts_dict(hosts: Hosts) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "cluster": hosts.cluster,
        "partial": hosts.partial,
        "warnings": list(hosts.warnings),
        "engines": [
            {
                **asdict(row),
                "rate": _number(row.rate),
                "cpu_seconds": _number(row.cpu_seconds),
            }
            for row in hosts.rows
        ],
    }


def write_hosts(folder: Path, hosts: Hosts) -> None:
    """``hosts.json`` in the results folder, whole or not at all (``OutputError``)."""
    text = json.dumps(hosts_dict(hosts), indent=2, allow_nan=False)
    write_atomically(folder / HOSTS_FILE, text + "\n")


def read_hosts(folder: Path) -> Hosts | None:
    """The breakdown of a results folder; None for a run that was not on a cluster;
    ``ValueError`` naming the file when it cannot be read."""
    path = Path(folder) / HOSTS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        rows = tuple(
            HostRow(
                worker=str(entry["worker"]),
                hostname=str(entry["hostname"]),
                index=int(entry["index"]),
                started=int(entry["started"]),
                rate=_float_or_none(entry["rate"]),
                cpu_seconds=_float_or_none(entry["cpu_seconds"]),
                clock_offset=float(entry["clock_offset"]),
                round_trip=float(entry["round_trip"]),
                lost=bool(entry.get("lost", False)),
                lost_at=_float_or_none(entry.get("lost_at")),
                lost_reason=entry.get("lost_reason"),
            )
            for entry in data["engines"]
        )
        return Hosts(str(data["cluster"]), rows, tuple(str(w) for w in data["warnings"]))
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a hosts file smtpbench wrote ({err})") from None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _ms(value: float) -> str:
    """Milliseconds, signed; a reading that rounds to zero shows as 0, not -0."""
    text = f"{value * 1000:+.2f}"
    return f"{'0.00' if text in ('+0.00', '-0.00') else text} ms"


def hosts_table(hosts: Hosts) -> Table:
    """One row per engine, lost ones marked; the sessions column adds up to the run's."""
    title = f"Hosts ({hosts.cluster})"
    if hosts.partial:
        title += ": partial run, an engine was lost"
    table = Table(title=title, title_justify="left")
    table.add_column("engine", justify="right")
    table.add_column("host")
    table.add_column("worker")
    table.add_column("started", justify="right")
    table.add_column("rate /s", justify="right")
    table.add_column("CPU s", justify="right")
    table.add_column("clock", justify="right")
    table.add_column("state")
    for row in hosts.rows:
        state = "ran to the end"
        if row.lost:
            at = f" at {row.lost_at:.1f}s" if row.lost_at is not None else ""
            state = f"[red]lost{at}[/]"
        table.add_row(
            str(row.index + 1),
            escape(row.hostname),
            escape(row.worker),
            f"{row.started:,}",
            "-" if row.rate is None else f"{row.rate:,.1f}",
            "-" if row.cpu_seconds is None else f"{row.cpu_seconds:.2f}",
            _ms(row.clock_offset),
            state,
        )
    total = sum(row.started for row in hosts.rows)
    table.add_section()
    table.add_row("", "all", "", f"{total:,}", "", "", "", "")
    return table
