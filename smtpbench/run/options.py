"""What a run is asked to do, once the command line and the scenario are read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smtpbench.engine.cluster import ClusterSettings
from smtpbench.engine.shares import worker_count
from smtpbench.scenario import Scenario
from smtpbench.transit.run import TransitOptions

if TYPE_CHECKING:
    from smtpbench.engine.replay import PreparedReplay


@dataclass(frozen=True, slots=True)
class RunOptions:
    scenario: Scenario
    results_base: Path = Path("results")
    progress_interval: float = 2.0  # seconds between lines when not on a terminal
    terminal: bool = False  # draw a live panel instead of printing lines
    record_sessions: bool = False  # write every session's record to sessions.ndjson
    # Recordings to replay instead of the scenario's sessions, read and merged already.
    replay: PreparedReplay | None = None
    workers: int = 1  # engine processes; 1 runs the engine in this process
    keep_going: bool = False  # run on when no session can connect
    through: TransitOptions | None = None  # run --through: the receiving sink's address
    cluster: ClusterSettings | None = None  # run --cluster: engines on a Dask cluster

    @property
    def worker_count(self) -> int:
        """The local workers the load can use: at most ``workers``, never more than the
        sessions in flight it allows or the sessions it starts."""
        return worker_count(self.scenario.load, self.workers)
