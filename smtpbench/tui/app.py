"""The live dashboard: pulls a snapshot from the engine several times a second,
draws every pane from it, and turns keys into control words."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widgets import Footer

from smtpbench.files import OutputError
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.thresholds import ThresholdGuard, ThresholdResult, evaluate
from smtpbench.run.handle import EngineHandle
from smtpbench.run.stopping import CUT_SHORT, RunWatch, Stopper
from smtpbench.thresholds import ThresholdSettings
from smtpbench.tui.screens import HelpScreen, SummaryScreen, TranscriptScreen
from smtpbench.tui.view import INTENDED, SERVICE, WINDOWS, View, format_window
from smtpbench.tui.widgets.charts import LatencyChart, RateChart
from smtpbench.tui.widgets.commands import CommandTable, listed_steps
from smtpbench.tui.widgets.counters import RunCounters
from smtpbench.tui.widgets.failures import RecentFailures
from smtpbench.tui.widgets.header import RunHeader
from smtpbench.tui.widgets.histogram import LatencyHistogram
from smtpbench.tui.widgets.replies import ReplyCodes
from smtpbench.tui.widgets.transit import TransitLine

REFRESH = 0.25  # seconds between redraws
COMPACT_WIDTH = 110  # below this, or below COMPACT_HEIGHT rows, panes fold away
COMPACT_HEIGHT = 32
RATE_STEP = 1.10

# Writes a results folder for a snapshot; ``final`` says whether it is the run's end.
SaveResults = Callable[[Snapshot, bool], Path]


class PaneWidget(Protocol):
    def show(self, view: View) -> None: ...


class DashboardApp(App[int]):
    CSS_PATH = "dashboard.tcss"
    TITLE = "smtpbench"
    # The footer is for the keys: no palette hint taking the place of "? Help".
    ENABLE_COMMAND_PALETTE = False
    # In the footer in this order, so that a narrow terminal cuts the least needed last:
    # stop and help always show.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "stop", "Stop"),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("p", "pause", "Pause"),
        Binding("plus,equals_sign", "rate(1)", "Rate ±10%", key_display="+/-"),
        Binding("minus", "rate(-1)", "Rate -10%", show=False),
        Binding("up", "focus_step(-1)", "Focus", key_display="↑↓"),
        Binding("down", "focus_step(1)", "Focus", show=False),
        Binding("l", "latency_view", "Latency"),
        Binding("left_square_bracket", "window(-1)", "Window", key_display="[ ]"),
        Binding("right_square_bracket", "window(1)", "Window", show=False),
        Binding("t", "transcripts", "Failures"),
        Binding("r", "summary", "Summary"),
        Binding("s", "save", "Snapshot"),
        *(Binding(str(n), f"pick({n})", show=False) for n in range(1, 10)),
    ]

    focus_step: reactive[Step] = reactive(Step.DATA_END)
    window: reactive[int] = reactive(60)
    latency: reactive[str] = reactive(SERVICE)

    def __init__(
        self,
        source: EngineHandle,
        save: SaveResults | None = None,
        thresholds: ThresholdSettings | None = None,
        keep_going: bool = False,
        transit: Callable[[], str] | None = None,
        where: str = "",
    ) -> None:
        super().__init__()
        self.where = where  # where the load runs when not on this machine (a cluster)
        self.keep_going = keep_going  # run on when no session can connect
        self.transit = transit  # run --through: the line of transit figures so far
        self.source = source
        self.save = save
        self.run_watch = RunWatch(thresholds or ThresholdSettings(), keep_going)
        self.stopper = Stopper(source)
        self.thresholds: tuple[ThresholdResult, ...] = ()
        self.note = ""
        self.paused = False
        self.results_folder: Path | None = None
        self._last: Snapshot | None = None

    # -- layout -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        if self.transit is not None:
            yield TransitLine(self.transit, id="transit")
        with Horizontal(id="charts"):
            yield RateChart(id="rate")
            yield LatencyChart(id="latency")
            yield LatencyHistogram(id="histogram")
        with Horizontal(id="tables"):
            yield CommandTable(id="commands")
            with Vertical(id="side"):
                yield ReplyCodes(id="replies")
                yield RunCounters(id="counters")
        yield RecentFailures(id="failures")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#commands").border_title = "Commands (service time)"
        self.query_one("#replies").border_title = "Reply codes"
        self.query_one("#counters").border_title = "Sessions"
        self.query_one("#failures").border_title = "Recent failures (t: transcripts)"
        self._fit(self.size.width, self.size.height)
        self.set_interval(REFRESH, self.pull)
        # Draw once the layout has given every pane its size: some panes fit to it.
        self.call_after_refresh(self.pull)
        # SIGTERM stops like q does, so the results of what ran are still written.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.action_stop)

    def on_resize(self) -> None:
        self._fit(self.size.width, self.size.height)
        self.call_after_refresh(self.draw)

    def _fit(self, width: int, height: int) -> None:
        self.screen.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "compact")

    # -- drawing ------------------------------------------------------------

    def pull(self) -> None:
        """Takes the latest snapshot; at the end of the run, writes the results once."""
        final = self.source.final
        if final is not None and self.results_folder is None and self.save is not None:
            self.results_folder = self.save(final, True)
            self.note = f"results written to {self.results_folder}  (q to leave)"
        elif self.source.error and not self.note:
            self.note = self.source.error
        snapshot = self.source.snapshot()
        if snapshot is None:
            return
        if snapshot is not self._last:
            self._check(snapshot)
        self._last = snapshot
        self.draw()

    @property
    def guard(self) -> ThresholdGuard:
        return self.run_watch.guard

    @property
    def stopping(self) -> bool:
        return self.stopper.requested

    def _check(self, snapshot: Snapshot) -> None:
        """The thresholds as they stand; stops the run when one failed for good
        (abort-on-fail) or nothing answers at the target."""
        checks = self.guard.settings.checks
        if checks:
            self.thresholds = tuple(evaluate(checks, snapshot))
        if not self.running:
            return
        reason = self.run_watch.check(snapshot)
        if reason is not None:
            self.stopper.interrupt()
            self.note = (
                f"threshold failed: {reason.threshold.threshold}; stopping the run"
                if reason.threshold is not None
                else reason.text
            )

    def view(self) -> View | None:
        if self._last is None:
            return None
        remaining = self.source.remaining() if self.source.final is None else 0.0
        return View(
            self._last,
            remaining,
            self.focus_step,
            self.window,
            self.note,
            self.thresholds,
            self.latency,
            self.where,
        )

    def draw(self) -> None:
        view = self.view()
        if view is None:
            return
        try:
            widgets = self._panes()
        except NoMatches:
            return  # not composed yet, or already torn down: a late timer or resize
        for widget in widgets:
            widget.show(view)

    def _panes(self) -> tuple[PaneWidget, ...]:
        return (
            self.query_one(RunHeader),
            self.query_one(RateChart),
            self.query_one(LatencyChart),
            self.query_one(LatencyHistogram),
            self.query_one(CommandTable),
            self.query_one(ReplyCodes),
            self.query_one(RunCounters),
            self.query_one(RecentFailures),
            *self.query(TransitLine),
        )

    def watch_focus_step(self) -> None:
        self.draw()

    def watch_window(self) -> None:
        self.draw()

    def watch_latency(self) -> None:
        self.draw()

    def _say(self, note: str) -> None:
        self.note = note
        self.draw()

    # -- keys ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.source.final is None and not self.stopping

    def action_pause(self) -> None:
        if not self.running:
            return
        if self.paused:
            self.source.resume()
            self._say("resumed")
        else:
            self.source.pause()
            self._say("paused: no new sessions start; p to resume")
        self.paused = not self.paused

    def action_rate(self, direction: int) -> None:
        if not self.running:
            return
        factor = RATE_STEP if direction > 0 else 1 / RATE_STEP
        self.source.scale_rate(factor)
        self._say(f"rate {'+' if direction > 0 else '-'}10%")

    def _steps(self) -> list[Step]:
        view = self.view()
        return listed_steps(view) if view is not None else [self.focus_step]

    def action_focus_step(self, delta: int) -> None:
        steps = self._steps()
        index = steps.index(self.focus_step) if self.focus_step in steps else 0
        self.focus_step = steps[(index + delta) % len(steps)]

    def action_pick(self, number: int) -> None:
        steps = self._steps()
        if 1 <= number <= len(steps):
            self.focus_step = steps[number - 1]

    def action_window(self, delta: int) -> None:
        index = WINDOWS.index(self.window) if self.window in WINDOWS else 1
        wanted = index + delta
        self.window = WINDOWS[max(0, min(len(WINDOWS) - 1, wanted))]
        edge = (
            " (the shortest)" if wanted < 0 else " (the longest)" if wanted >= len(WINDOWS) else ""
        )
        self._say(f"charts show the last {format_window(self.window)}{edge}; [ and ] change it")

    def action_latency_view(self) -> None:
        self.latency = INTENDED if self.latency == SERVICE else SERVICE
        if self.latency == SERVICE:
            self._say("latency chart: service time of the command in focus; l switches")
        else:
            self._say("latency chart: message latency from intended start; l switches")

    def action_save(self) -> None:
        if self._last is None or self.save is None:
            return
        try:
            folder = self.save(self._last, False)
        except OutputError as err:  # a full disk: the run goes on, unsaved
            self._say(f"snapshot not saved: {err}")
            return
        self._say(f"snapshot saved to {folder}")

    def action_stop(self) -> None:
        if self.source.final is not None or self.source.error:
            self.exit(0)
            return
        said = self.stopper.stop()
        self._say(said if said == CUT_SHORT else f"{said}; q again cuts them short")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_transcripts(self) -> None:
        if self._last is not None:
            self.push_screen(TranscriptScreen(self._last))

    def action_summary(self) -> None:
        if self._last is not None:
            self.push_screen(SummaryScreen(self._last))
