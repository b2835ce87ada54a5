"""``run --through``: the receiving sink started before the engine, the send files the
engines write, the drain after sending ends, and the figures into the outcome."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.files import OutputError
from smtpbench.report.thresholds import all_passed, evaluate, write_threshold_results
from smtpbench.thresholds import Threshold
from smtpbench.transit.matching import TransitFigures, TransitTracker
from smtpbench.transit.receiver import Receiver
from smtpbench.transit.report import write_transit
from smtpbench.transit.sends import TransitSends
from smtpbench.units import format_duration

if TYPE_CHECKING:
    from smtpbench.outcome import RunOutcome

DEFAULT_DRAIN = 30.0  # seconds to wait for messages still on their way once sending ends
DRAIN_POLL = 0.1  # seconds between looks during the drain


@dataclass(frozen=True, slots=True)
class TransitOptions:
    """``--through HOST:PORT`` and ``--through-drain SECONDS``."""

    host: str
    port: int
    drain: float = DEFAULT_DRAIN


class TransitRun:
    """One run's receiving sink, send files and tracker."""

    def __init__(self, options: TransitOptions, run_tag: str, workers: int) -> None:
        self.options = options
        self.run_tag = run_tag
        self.folder = Path(tempfile.mkdtemp(prefix="smtpbench-transit-"))
        # One engine here, or one per process (a group adds ".<worker>" to the name).
        self.log = self.folder / "sends"
        files = [self.log, *(Path(f"{self.log}.{i}") for i in range(workers))]
        self.receiver = Receiver(options.host, options.port)
        self.tracker = TransitTracker(run_tag, files, f"{options.host}:{options.port}", 0.0)

    def start(self) -> None:
        """Listens (``ReceiverError`` if it cannot); the series counts seconds from now."""
        host, port = self.receiver.start()
        self.tracker.through = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.tracker.start = time.time()

    def sends(self) -> TransitSends:
        """The send file of an engine in this process."""
        return TransitSends(self.log)

    def figures(self, *, final: bool = False) -> TransitFigures:
        self.tracker.update(self.receiver.arrivals)
        return self.tracker.figures(final=final)

    def line(self) -> str:
        from smtpbench.transit.report import transit_line

        self.tracker.update(self.receiver.arrivals)
        return transit_line(self.tracker.figures(series=False))

    def _waiting(self) -> int:
        self.tracker.update(self.receiver.arrivals)
        return self.tracker.waiting

    def _announce(self, console: Console | None) -> float:
        waiting = self._waiting()
        if waiting and console is not None and self.options.drain > 0:
            console.print(
                f"waiting up to {format_duration(self.options.drain)} for {waiting:,} "
                f"{'message' if waiting == 1 else 'messages'} still on their way through "
                "the server (--through-drain)",
                highlight=False,
            )
        return time.monotonic()

    async def drain(self, console: Console | None = None) -> TransitFigures:
        """Waits until every accepted message arrived, or the drain period is over; Ctrl-C,
        SIGTERM or SIGHUP cut it short (what arrived so far is kept)."""
        # Listening for signals first: the run's own handler is gone by now.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            begun = self._announce(console)
            if not self._waiting():
                return self.figures(final=True)  # nothing on its way: no drain
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cut_short_on_signal, signals, nursery.cancel_scope, console)
                while self._waiting() and time.monotonic() - begun < self.options.drain:
                    await trio.sleep(DRAIN_POLL)
                nursery.cancel_scope.cancel()
        self.tracker.drained = time.monotonic() - begun
        return self.figures(final=True)

    def drain_blocking(self, console: Console | None = None) -> TransitFigures:
        """``drain`` for a caller with no trio loop (the dashboard's process); Ctrl-C cuts
        it short."""
        begun = self._announce(console)
        if not self._waiting():
            return self.figures(final=True)  # nothing on its way: no drain
        try:
            while self._waiting() and time.monotonic() - begun < self.options.drain:
                time.sleep(DRAIN_POLL)
        except KeyboardInterrupt:
            if console is not None:
                console.print("SIGINT: the wait for messages downstream is cut short")
        self.tracker.drained = time.monotonic() - begun
        return self.figures(final=True)

    def close(self) -> None:
        self.receiver.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def _cut_short_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope, console: Console | None
) -> None:
    async for signum in signals:
        if console is not None:
            name = signal.Signals(signum).name
            console.print(f"{name}: the wait for messages downstream is cut short")
        scope.cancel()
        return


@contextmanager
def transit_session(options: TransitOptions | None, workers: int) -> Iterator[TransitRun | None]:
    """The run's ``TransitRun``, listening, or None without ``--through``; its ``run_tag``
    is the run's id."""
    if options is None:
        yield None
        return
    run = TransitRun(options, uuid.uuid4().hex, workers)
    try:
        run.start()
        yield run
    finally:
        run.close()


@asynccontextmanager
async def transit_run(
    options: TransitOptions | None, workers: int
) -> AsyncIterator[TransitRun | None]:
    """``transit_session`` for a trio caller."""
    with transit_session(options, workers) as run:
        yield run


def with_transit(outcome: RunOutcome, figures: TransitFigures) -> RunOutcome:
    """The outcome with the transit figures, written into its results folder. Thresholds
    on transit had no data when the run ended: they are judged now, ``thresholds.json``
    written again and the exit code decided again where thresholds decided it."""
    results = outcome.thresholds
    judged_again = any(r.threshold.metric.is_transit for r in results)
    if judged_again:
        checks = [r.threshold for r in results]
        results = tuple(evaluate(checks, outcome.snapshot, figures))
        code = outcome.exit_code
        if code in (exitcodes.OK, exitcodes.THRESHOLDS_FAILED) and outcome.verdict is None:
            code = exitcodes.OK if all_passed(results) else exitcodes.THRESHOLDS_FAILED
        outcome = dataclasses.replace(outcome, thresholds=results, exit_code=code)
    if outcome.unwritten is None:
        try:
            write_transit(outcome.folder, figures)
            if judged_again:
                write_threshold_results(outcome.folder, results, outcome.aborted_by)
        except OutputError as err:
            outcome = dataclasses.replace(
                outcome, unwritten=str(err), exit_code=exitcodes.RESULTS_NOT_WRITTEN
            )
    return dataclasses.replace(outcome, transit=figures)


def check_transit_thresholds(checks: Iterable[Threshold], through: bool) -> None:
    """ValueError naming a threshold on transit in a run that does not measure it."""
    if through:
        return
    for check in checks:
        if check.metric.is_transit:
            raise ValueError(
                f"threshold {check}: transit is measured only in a run with --through "
                "(see docs/transit.md)"
            )
