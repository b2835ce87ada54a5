"""`report --plot` reads at a glance: legends beside the data, a handful of lines over
time, a title that wraps, no drop to zero for the sliver of a last interval."""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from smtpbench.report.plots import PANEL_TITLES, TITLE_WIDTH, _whole_rows, build_figure
from tests.fake_engine import INFO, synthetic_snapshot


def test_legends_sit_beside_the_panels_not_on_them() -> None:
    figure = build_figure(synthetic_snapshot(seconds=30))
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    # This stand-in has no per-interval reply counts: that panel says so instead.
    with_legends = [ax for ax in figure.axes if ax.get_legend() is not None]
    assert len(with_legends) == 3
    for ax in with_legends:
        legend = ax.get_legend()
        panel = ax.get_window_extent(renderer)
        box = legend.get_window_extent(renderer)
        assert box.x0 >= panel.x1, ax.get_title(loc="left")


def test_latency_over_time_draws_a_few_named_lines() -> None:
    figure = build_figure(synthetic_snapshot(seconds=30))
    over_time = next(ax for ax in figure.axes if ax.get_title(loc="left") == PANEL_TITLES[1])
    labels = [line.get_label() for line in over_time.get_lines()]
    assert len(labels) <= 10
    assert "DATA end p99" in labels and "message (from intended start) p99" in labels
    assert "EHLO p99" not in labels  # in the distribution panel, not here


def test_a_long_title_wraps() -> None:
    snapshot = synthetic_snapshot(seconds=5)
    long = dataclasses.replace(
        snapshot.info,
        load="ramp 0/s -> 300/s over 10m -> 300/s over 20m -> 0/s over 5m, for 35m "
        "(poisson arrivals), cap 1000",
        target="embedded sink mail-relay-under-test.internal.example.net:2525",
    )
    figure = build_figure(dataclasses.replace(snapshot, info=long))
    title = figure._suptitle.get_text()  # type: ignore[union-attr]
    assert all(len(line) <= TITLE_WIDTH for line in title.splitlines())
    assert "mail-relay-under-test.internal.example.net:2525" in title.replace("\n", " ")
    assert INFO.scenario in title


def test_a_sliver_of_a_last_interval_is_left_out() -> None:
    assert _whole_rows(np.array([1.0, 2.0, 3.0, 3.04])) == slice(0, 3)
    assert _whole_rows(np.array([1.0, 2.0, 3.0])) == slice(0, 3)
    assert _whole_rows(np.array([1.0, 2.0, 2.8])) == slice(0, 3)
