"""A deterministic stand-in for the engine, for dashboard tests: the same snapshot
every time, built by feeding a real Recorder synthetic samples from a fixed seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from smtpbench.metrics.kinds import MESSAGE_LATENCY, SESSION_LATENCY, START_LAG, ErrorClass
from smtpbench.metrics.recorder import Recorder
from smtpbench.metrics.snapshot import (
    FailureRecord,
    RunInfo,
    RunState,
    Snapshot,
    TranscriptLine,
)
from smtpbench.protocol.steps import Step

INFO = RunInfo(
    scenario="newsletter-burst",
    target="mx1.example.net:25",
    load="300/s for 5m (uniform arrivals), cap 1000",
    mode="rate",
    planned_duration=300.0,
    planned_sessions=None,
    seed=7,
    started_at="2026-11-30T09:00:00+00:00",
    version="0.1.0",
)
STEPS_MEDIAN = {
    Step.CONNECT: 0.0004,
    Step.BANNER: 0.0012,
    Step.EHLO: 0.0008,
    Step.MAIL: 0.0007,
    Step.RCPT: 0.0021,
    Step.DATA: 0.0009,
    Step.DATA_END: 0.041,
    Step.QUIT: 0.0003,
}


def synthetic_snapshot(seconds: int = 72, rate: int = 300) -> Snapshot:
    rng = np.random.default_rng(7)
    recorder = Recorder(INFO)
    recorder.state = RunState.RUNNING
    recorder.target_rate = float(rate)
    for second in range(1, seconds + 1):
        # Ramp up over the first 20 s, then hold; the server slows down near the end.
        started = min(rate, rate * second // 20)
        slow = 1.0 + max(0, second - 50) / 10
        recorder.scheduled += started
        recorder.started += started
        recorder.completed += started - 2
        recorder.messages_accepted += started - 3
        recorder.messages_rejected += 1
        recorder.recipients_accepted += 3 * started - 5
        recorder.recipients_rejected += 5
        recorder.in_flight = 12
        for step, median in STEPS_MEDIAN.items():
            n = started * (3 if step is Step.RCPT else 1)
            for value in rng.lognormal(np.log(median * slow), 0.5, n):
                recorder.latency(step, float(value))
            if step is not Step.CONNECT:
                code = {Step.BANNER: 220, Step.DATA: 354, Step.QUIT: 221}.get(step, 250)
                for _ in range(n):
                    recorder.reply(step, code)
        for value in rng.exponential(0.0004, started):
            recorder.latency(START_LAG, float(value))
        for value in rng.lognormal(np.log(0.058 * slow), 0.4, started):
            recorder.latency(MESSAGE_LATENCY, float(value))
            recorder.latency(SESSION_LATENCY, float(value) * 1.1)
        for _ in range(5):
            recorder.reply(Step.RCPT, 550)
            recorder.error(ErrorClass.REPLY, Step.RCPT)
        recorder.reply(Step.DATA_END, 451)
        recorder.error(ErrorClass.REPLY, Step.DATA_END)
        recorder.failed += 2
        if second % 10 == 0:
            recorder.error(ErrorClass.TIMEOUT, Step.DATA_END)
            recorder.error(ErrorClass.RESET, Step.CONNECT)
        recorder.flush(float(second))
    recorder.failure(
        FailureRecord(
            time=70.2,
            session=48102,
            step="DATA end",
            error="unexpected reply",
            detail="451 4.3.0 Temporary failure",
            transcript=(
                TranscriptLine("EHLO smtpbench.localhost", "250 mx1.example.net"),
                TranscriptLine("MAIL FROM:<news@example.com>", "250 2.1.0 Ok"),
                TranscriptLine("RCPT TO:<ann@example.org>", "250 2.1.5 Ok"),
                TranscriptLine("DATA", "354 End data with <CR><LF>.<CR><LF>"),
                TranscriptLine("(message content, 30210 bytes)", "451 4.3.0 Temporary failure"),
            ),
        )
    )
    recorder.failure(
        FailureRecord(
            time=71.0,
            session=48213,
            step="RCPT",
            error="unexpected reply",
            detail="550 5.1.1 User unknown",
            transcript=(
                TranscriptLine("EHLO smtpbench.localhost", "250 mx1.example.net"),
                TranscriptLine("MAIL FROM:<news@example.com>", "250 2.1.0 Ok"),
                TranscriptLine("RCPT TO:<bob@example.org>", "550 5.1.1 User unknown"),
            ),
        )
    )
    return recorder.snapshot(float(seconds))


class FakeEngine:
    """Implements the ``EngineHandle``; records every control word."""

    def __init__(self, snapshot: Snapshot | None = None, remaining: float = 228.0) -> None:
        self._snapshot = snapshot or synthetic_snapshot()
        self._remaining = remaining
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.final: Snapshot | None = None
        self.error: str | None = None

    def finish(self, state: RunState = RunState.INTERRUPTED) -> None:
        import dataclasses

        self.final = dataclasses.replace(self._snapshot, state=state)

    def snapshot(self) -> Snapshot | None:
        return self.final or self._snapshot

    def remaining(self) -> float | None:
        return self._remaining

    def _record(self, word: str, *args: Any) -> None:
        self.calls.append((word, args))

    def pause(self) -> None:
        self._record("pause")

    def resume(self) -> None:
        self._record("resume")

    def scale_rate(self, factor: float) -> None:
        self._record("scale_rate", factor)

    def interrupt(self) -> None:
        self._record("interrupt")

    def abort(self) -> None:
        self._record("abort")
