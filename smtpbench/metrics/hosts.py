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

from rich.table import Table

from smtpbench.files import write_atomically

HOSTS_FILE = "hosts.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class HostRow:
    """One engine of the run: where it ran and what it did."""

    worker: int  # the engine's index in the run (its share of the schedule)
    host: str  # the machine's name
    address: str  # the Dask worker it ran in
    sessions_started: int = 0
    achieved_rate: float = 0.0  # sessions started per second of its run
    cpu_seconds: float | None = None  # its engine process's CPU time
    clock_offset: float | None = None  # seconds its clock is ahead of the driver's
    round_trip: float | None = None  # seconds of the round trip the offset was read in
    lost: bool = False
    lost_at: float | None = None  # seconds into the run when it was found gone
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
                "achieved_rate": _number(row.achieved_rate),
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
                worker=int(entry["worker"]),
                host=str(entry["host"]),
                address=str(entry["address"]),
                sessions_started=int(entry["sessions_started"]),
                achieved_rate=float(entry["achieved_rate"] or 0.0),
                cpu_seconds=_float_or_none(entry.get("cpu_seconds")),
                clock_offset=_float_or_none(entry.get("clock_offset")),
                round_trip=_float_or_none(entry.get("round_trip")),
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:+.1f} ms"


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
            str(row.worker + 1),
            row.host,
            row.address,
            f"{row.sessions_started:,}",
            f"{row.achieved_rate:,.1f}",
            "-" if row.cpu_seconds is None else f"{row.cpu_seconds:.2f}",
            _ms(row.clock_offset),
            state,
        )
    total = sum(row.sessions_started for row in hosts.rows)
    table.add_section()
    table.add_row("", "all", "", f"{total:,}", "", "", "", "")
    return table
