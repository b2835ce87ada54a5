"""Rate and latency over time, drawn with plotext. Every line is named in a legend on
the pane's border, off the data; axes carry their unit and round ticks; x is seconds
before now. Service time and latency from intended start never share an axis: the
latency chart shows one or the other (``l`` switches)."""

from __future__ import annotations

import math

import numpy as np
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from smtpbench.metrics.histogram import FloatArray
from smtpbench.metrics.kinds import MESSAGE_LATENCY
from smtpbench.tui.view import SERVICE, View, format_window

# Colours a terminal of 16 tells apart: target white on top, failed red, dropped yellow.
RATE_LINES = (
    ("started", "cyan"),
    ("failed", "red"),
    ("dropped", "yellow"),
)
TARGET_COLOUR = "white"
P50_COLOUR, P99_COLOUR = "green", "magenta"
TIGHT = 4 / 3  # an axis ending this far above the data leaves no row idle for nothing
AXIS_ROWS = 3  # rows of the chart that are not plot: the frame's top, the x axis, its ticks


def nice_step(span: float, most: int) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that cuts ``span`` into at most
    ``most`` steps."""
    if span <= 0 or most < 1:
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power
    return 10.0 * power


def y_ticks(top: float, rows: int) -> tuple[float, list[float], list[str]]:
    """The axis top and round ticks from 0, each exactly on a row: the plot's rows are
    evenly spaced from 0 to the axis top, so the axis top is chosen for the ticks to
    fall on rows (``step`` every ``r`` rows; the top row itself may go unlabelled).
    Of the round steps with one to four labels above 0, at most one every other row
    where there is room, the one with the most labels among those whose axis ends
    within a third above the data, else the one that ends closest above it."""
    top = top if top > 0 else 1.0
    gaps = max(1, rows - 1)  # rows between the bottom row and the top row
    least = 2 if gaps >= 4 else 1  # rows between two labels
    found: list[tuple[float, float, int]] = []  # (axis top, step, labels)
    power = 10.0 ** math.floor(math.log10(top))
    for e in (power / 10, power):
        for m in (1.0, 2.0, 2.5, 5.0):
            step = m * e
            if not top / 8 <= step <= top:
                continue
            # The most rows per step whose axis still holds the data.
            per = min(gaps, math.floor(step * gaps / top + 1e-9))
            if per < least:
                continue
            labels = gaps // per
            if not 1 <= labels <= 4:
                continue
            found.append((step * gaps / per, step, labels))
    tight = [f for f in found if f[0] <= TIGHT * top]
    if tight:
        axis_top, step, _ = max(tight, key=lambda f: (f[2], -f[0]))
    elif found:
        axis_top, step, _ = min(found)
    else:
        axis_top = step = nice_top(top)
    count = math.floor(axis_top / step + 1e-9)
    ticks = [step * i for i in range(count + 1)]
    return axis_top, ticks, [_tick_label(value, step) for value in ticks]


def nice_top(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 or 10 times a power of ten at or
    above ``value``."""
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if factor * power >= value * (1 - 1e-9):
            return factor * power
    return 10.0 * power


def _tick_label(value: float, step: float) -> str:
    if step >= 1 and float(step).is_integer():
        return f"{value:,.0f}"
    return f"{value:g}"


TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600)


def x_ticks(span: float) -> tuple[list[float], list[str]]:
    """``-60s  -45s  -30s  -15s  now``, ``-5m ... now``: at most five steps over the
    window, in steps a clock has."""
    most = 5 if span > 20 else 2
    step = next((s for s in TIME_STEPS if span / s <= most + 1e-9), TIME_STEPS[-1])
    ticks = [-float(step * i) for i in range(int(span // step + 1e-9), -1, -1)]
    return ticks, [_seconds_label(value, step) for value in ticks]


def _seconds_label(value: float, step: int) -> str:
    if value == 0:
        return "now"
    if step >= 60:
        return f"{value / 60:g}m"
    return f"{value:g}s"


def legend(*entries: tuple[str, str]) -> str:
    """Textual markup for the border: ``━started`` in the line's colour."""
    return " ".join(f"[{colour}]━{name}[/]" for name, colour in entries)


def _line(chart: PlotextPlot, x: FloatArray, y: FloatArray, color: str) -> float:
    """Plots the finite points of a line; returns their maximum (0 when none)."""
    keep = np.isfinite(y)
    if not keep.any():
        return 0.0
    chart.plt.plot(x[keep].tolist(), y[keep].tolist(), color=color, marker="braille")
    return float(y[keep].max())


class SeriesChart(PlotextPlot):
    """A chart of per-second rows: there is nothing new to draw until a row is added
    or the focus, window, view or size change, so it redraws about once a second
    however often the dashboard refreshes, which leaves the CPU to the load."""

    _drawn: tuple[object, ...] | None = None
    _top = 0.0  # the highest value plotted, for the y axis
    _ticked_for: tuple[int, float] | None = None  # the height and top the ticks fit

    def render(self) -> RenderResult:
        # The y ticks depend on the rows the plot has: set them for the size drawn at,
        # so that a resize between two snapshots never leaves a label on the wrong row.
        key = (self.size.height, self._top)
        if key != self._ticked_for:
            self._ticked_for = key
            rows = max(2, self.size.height - AXIS_ROWS)
            axis_top, ticks, labels = y_ticks(self._top * 1.1, rows)
            self.plt.ylim(0, axis_top)
            self.plt.yticks(ticks, labels)
        return super().render()

    def show(self, view: View) -> None:
        key = (len(view.snapshot.series), view.focus, view.window, view.latency, self.size)
        if key != self._drawn:
            self._drawn = key
            self.plt.clear_data()
            self.plt.clear_figure()
            self.plot_view(view)
            self.refresh()

    def plot_view(self, view: View) -> None:
        raise NotImplementedError

    def frame(self, view: View, title: str, key: str, top: float) -> None:
        """Title and legend go on the border, so every row inside is for the plot."""
        self.border_title = title
        self.border_subtitle = key
        plt = self.plt
        # Early in a run the window shrinks to what there is, so lines do not hug the edge.
        span = min(view.window, max(view.snapshot.elapsed, 10.0))
        plt.xlim(-span, 0)
        plt.xticks(*x_ticks(span))
        self._top = top
        self._ticked_for = None  # the figure was cleared: ticks again when rendered


class RateChart(SeriesChart):
    """Sessions started, failed and dropped per second, and the target on top of them."""

    def plot_view(self, view: View) -> None:
        series = view.snapshot.series
        rows = view.window_slice()
        x = view.seconds_ago()
        top = 0.0
        entries = []
        if len(x):
            for column, colour in RATE_LINES:
                # Failed: the server's; sessions cut short at a stop are not.
                if column == "failed":
                    values = view.snapshot.server_failed_rate()
                else:
                    values = series.rate(column)
                top = max(top, _line(self, x, values[rows], colour))
            # Last, so that it is drawn over the lines that meet it.
            top = max(top, _line(self, x, series.target_rate[rows], TARGET_COLOUR))
        if not np.isnan(series.target_rate).all():
            entries.append(("target", TARGET_COLOUR))
        entries += RATE_LINES
        self.frame(view, f"Sessions/s, last {format_window(view.window)}", legend(*entries), top)


class LatencyChart(SeriesChart):
    """p50 and p99 of the command in focus (service time), or of the message latency
    from intended start, which is what shows a server or the tool falling behind."""

    def plot_view(self, view: View) -> None:
        series = view.snapshot.series
        rows = view.window_slice()
        x = view.seconds_ago()
        service = view.latency == SERVICE
        row = int(view.focus) if service else MESSAGE_LATENCY
        p50 = series.p50[rows, row]
        p99 = series.p99[rows, row]
        finite = p99[np.isfinite(p99)]
        scale, unit = _time_unit(float(finite.max()) if len(finite) else 0.0)
        top = 0.0
        if len(x):
            top = max(
                _line(self, x, p50 * scale, P50_COLOUR),
                _line(self, x, p99 * scale, P99_COLOUR),
            )
        if service:
            title = f"{view.focus.label} service time ({unit})"
        else:
            title = f"message from intended start ({unit})"
        key = legend(("p50", P50_COLOUR), ("p99", P99_COLOUR))
        key += f" [dim]last {format_window(view.window)}[/]"
        self.frame(view, title, key, top)


def _time_unit(top: float) -> tuple[float, str]:
    """The scale and unit in which ``top`` seconds reads as a plain number."""
    if top < 1e-3:
        return 1e6, "us"
    if top < 1.0:
        return 1e3, "ms"
    return 1.0, "s"
