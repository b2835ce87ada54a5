"""What every run works out once, before its engine starts, whatever runs it: the seed,
the scenario with that seed (what ``scenario.toml`` saves, so the run can be repeated),
the run's description, a replay's recordings read and merged into one timeline, where
session records go, and the engine job that carries all of it to engine processes and
cluster actors."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from smtpbench import __version__
from smtpbench.build_info import engine_build
from smtpbench.engine.process import EngineJob
from smtpbench.engine.session_records import partial_log_path
from smtpbench.engine.transport import Address
from smtpbench.metrics.snapshot import RunInfo
from smtpbench.run.options import RunOptions
from smtpbench.scenario import Scenario, run_seed, scenario_to_toml, summarize_load
from smtpbench.transit.run import TransitRun

if TYPE_CHECKING:
    from smtpbench.engine.replay import PreparedReplay

ON_CLUSTER = "as each cluster host has it (not noted)"


def run_info(
    scenario: Scenario,
    target: str,
    seed: int,
    transit: TransitRun | None = None,
    engine: str | None = None,
) -> RunInfo:
    """What the results say of the run; with ``--through`` its id is the one the messages
    carry. ``engine``: how the engine runs (by default as in this process, which its
    engine processes share)."""
    load = scenario.load
    return RunInfo(
        scenario=scenario.name,
        target=target,
        load=summarize_load(scenario),
        mode=load.mode,
        planned_duration=load.duration,
        planned_sessions=load.sessions,
        seed=seed,
        started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        version=__version__,
        run_id=transit.run_tag if transit is not None else uuid.uuid4().hex,
        delivery=scenario.delivery.mode,
        engine=engine_build() if engine is None else engine,
    )


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run worked out, ready for any engine."""

    scenario: Scenario  # with the seed used
    info: RunInfo
    address: Address
    replay: PreparedReplay | None = None
    sessions_log: Path | None = None  # where session records gather until the end
    transit: TransitRun | None = None

    @property
    def seed(self) -> int:
        assert self.scenario.seed is not None  # prepare() always sets it
        return self.scenario.seed

    def job(self) -> EngineJob:
        """What an engine outside this process needs, as plain data."""
        transit = self.transit
        return EngineJob(
            scenario_to_toml(self.scenario),
            self.address,
            self.seed,
            self.info,
            sessions_log=str(self.sessions_log) if self.sessions_log is not None else None,
            replay=self.replay,
            password=self.scenario.auth.password,
            transit_log=str(transit.log) if transit is not None else None,
        )


def prepare(
    options: RunOptions, address: Address, label: str, transit: TransitRun | None = None
) -> PreparedRun:
    """The run ``options`` ask for, against ``address`` (named ``label``)."""
    seed = run_seed(options.scenario)
    scenario = dataclasses.replace(options.scenario, seed=seed)
    # Engines on a cluster's hosts run whatever those hosts have installed.
    engine = ON_CLUSTER if options.cluster is not None else None
    info = run_info(scenario, label, seed, transit, engine)
    replay = options.replay
    if replay is not None:
        info = replay.run_info(info)
    log = partial_log_path(options.results_base) if options.record_sessions else None
    return PreparedRun(scenario, info, address, replay, log, transit)
