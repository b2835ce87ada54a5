"""Per-session records (``run --record-sessions``): each session runs with a tap in
place of the recorder, and its record is appended to a log as it ends."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from smtpbench.engine.runner import SessionRunner
from smtpbench.engine.session import SessionSettings, run_session
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.sessions import SessionLog, SessionTap
from smtpbench.scenario import MessageFactory, SessionPlan


def partial_log_path(results_base: Path) -> Path:
    """Where records go while the run lasts: beside the results folder that does not
    exist yet; the file moves into it at the end."""
    results_base.mkdir(parents=True, exist_ok=True)
    return results_base / f".sessions-{os.getpid()}.ndjson.partial"


def recording_runner(log: SessionLog) -> SessionRunner:
    async def run(
        settings: SessionSettings,
        recorder: Recorder,
        factory: MessageFactory,
        plan: SessionPlan,
        intended: float,
    ) -> None:
        tap = SessionTap(recorder, plan.number, intended - recorder.clock_start)
        try:
            await run_session(settings, cast(Recorder, tap), factory, plan, intended)
        finally:
            log.write(tap.record())

    return run
