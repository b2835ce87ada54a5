"""The latency distribution of the command in focus, as bars over 1-2-5 bins."""

from __future__ import annotations

import numpy as np
from textual.content import Content

from smtpbench.metrics.histogram import BUCKET_LOWER
from smtpbench.tui.view import View
from smtpbench.tui.widgets.columns import Cell, Column, aligned
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_duration

# 1 us, 2 us, 5 us, 10 us, ... 500 s: bins a person reads at a glance.
EDGES = np.array([m * 10.0**e for e in range(-6, 3) for m in (1, 2, 5)])
BAR = 16
# Each HDR bucket falls into the 1-2-5 bin of its lower bound.
BINS = np.searchsorted(EDGES, BUCKET_LOWER, side="right")
COLUMNS = (Column(right=True, style="dim"), Column(style="cyan"), Column(right=True))


class LatencyHistogram(Pane):
    def show(self, view: View) -> None:
        histogram = view.snapshot.histogram(view.focus)
        title = f"{view.focus.label} distribution"
        if self.border_title != title:  # setting it repaints the pane
            self.border_title = title
        count = histogram.count
        if count == 0:
            self.put([Content.styled(f"no {view.focus.label} samples yet", "dim")], view.focus)
            return
        counts = np.bincount(BINS, weights=histogram.counts, minlength=len(EDGES) + 1)
        used = np.nonzero(counts)[0]
        first, last = int(used.min()), int(used.max())
        shown = counts[first : last + 1]
        key = (view.focus, first, shown.tobytes())
        peak = shown.max()
        rows: list[list[Cell]] = []
        for index in range(first, last + 1):
            low = EDGES[index - 1] if index > 0 else 0.0
            n = int(counts[index])
            rows.append(
                [
                    f">={format_duration(low)}" if low else "<1us",
                    "#" * max(1 if n else 0, round(BAR * n / peak)),
                    f"{n / count:6.1%}",
                ]
            )
        self.put(aligned(COLUMNS, rows, gap=1), key)
