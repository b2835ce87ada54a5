"""Running a scenario in-process against a server the test started."""

from __future__ import annotations

from smtpbench.engine.control import RunControl
from smtpbench.engine.runner import LoadRun
from smtpbench.engine.transport import resolve
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.run.prepare import run_info
from smtpbench.scenario import MessageFactory, Scenario, default_scenario, with_overrides


def scenario_for(port: int, **overrides: object) -> Scenario:
    """The default scenario pointed at 127.0.0.1:port, with overrides."""
    return with_overrides(default_scenario(), host="127.0.0.1", port=port, **overrides)  # type: ignore[arg-type]


async def run_against(
    scenario: Scenario, control: RunControl | None = None, seed: int = 1
) -> Snapshot:
    assert scenario.target.host is not None
    address = await resolve(scenario.target.host, scenario.target.port)
    factory = MessageFactory(scenario, seed=seed)
    recorder = Recorder(run_info(scenario, str(address), factory.seed))
    return await LoadRun(scenario, address, factory, recorder, control).run()
