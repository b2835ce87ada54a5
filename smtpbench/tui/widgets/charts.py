"""Rate and latency over time, drawn with plotext: axes carry units, x is seconds
before now."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from smtpbench.metrics.histogram import FloatArray
from smtpbench.metrics.kinds import MESSAGE_LATENCY
from smtpbench.tui.view import View


def _line(chart: PlotextPlot, x: FloatArray, y: FloatArray, label: str, color: str) -> float:
    """Plots the finite points of a line; returns their maximum (0 when none)."""
    keep = np.isfinite(y)
    if not keep.any():
        return 0.0
    chart.plt.plot(x[keep].tolist(), y[keep].tolist(), label=label, color=color, marker="braille")
    return float(y[keep].max())


def _frame(chart: PlotextPlot, view: View, title: str, top: float) -> None:
    # Title and units go in the border, so every row inside is for the plot itself.
    chart.border_title = title
    chart.border_subtitle = "seconds before now"
    plt = chart.plt
    # Early in a run the window shrinks to what there is, so lines do not hug the edge.
    plt.xlim(-min(view.window, max(view.snapshot.elapsed, 10.0)), 0)
    plt.ylim(0, top * 1.15 if top > 0 else 1)


class SeriesChart(PlotextPlot):
    """A chart of per-second rows: there is nothing new to draw until a row is added
    or the focus, window or size change, so it redraws about once a second however
    often the dashboard refreshes, which leaves the CPU to the load."""

    _drawn: tuple[object, ...] | None = None

    def show(self, view: View) -> None:
        key = (len(view.snapshot.series), view.focus, view.window, self.size)
        if key != self._drawn:
            self._drawn = key
            self.plot_view(view)

    def plot_view(self, view: View) -> None:
        raise NotImplementedError


class RateChart(SeriesChart):
    """Target rate against sessions started, completed, failed and dropped per second."""

    def plot_view(self, view: View) -> None:
        series = view.snapshot.series
        rows = view.window_slice()
        x = view.seconds_ago()
        self.plt.clear_data()
        self.plt.clear_figure()
        top = 0.0
        if len(x):
            top = max(
                _line(self, x, series.target_rate[rows], "target", "gray"),
                _line(self, x, series.rate("started")[rows], "started", "cyan"),
                _line(self, x, series.rate("completed")[rows], "completed", "green"),
                _line(self, x, series.rate("failed")[rows], "failed", "red"),
                _line(self, x, series.rate("dropped")[rows], "dropped", "magenta"),
            )
        _frame(self, view, "Rate (sessions/s)", top)
        self.refresh()


class LatencyChart(SeriesChart):
    """Service time p50 and p99 of the command in focus, and the message latency p99
    from intended start, which is what shows a server or a tool falling behind."""

    def plot_view(self, view: View) -> None:
        series = view.snapshot.series
        rows = view.window_slice()
        x = view.seconds_ago()
        row = int(view.focus)
        self.plt.clear_data()
        self.plt.clear_figure()
        top = 0.0
        if len(x):
            top = max(
                _line(self, x, series.p50[rows, row] * 1e3, "p50 service", "green"),
                _line(self, x, series.p99[rows, row] * 1e3, "p99 service", "yellow"),
                _line(
                    self,
                    x,
                    series.p99[rows, MESSAGE_LATENCY] * 1e3,
                    "p99 message, from intended start",
                    "red",
                ),
            )
        _frame(self, view, f"Latency, {view.focus.label} (ms)", top)
        self.refresh()
