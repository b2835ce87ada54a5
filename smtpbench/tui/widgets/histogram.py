"""The latency distribution of the command in focus, as bars over 1-2-5 bins."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text

from smtpbench.metrics.histogram import BUCKET_LOWER
from smtpbench.tui.view import View
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_duration

# 1 us, 2 us, 5 us, 10 us, ... 500 s: bins a person reads at a glance.
EDGES = np.array([m * 10.0**e for e in range(-6, 3) for m in (1, 2, 5)])
BAR = 16


class LatencyHistogram(Pane):
    def show(self, view: View) -> None:
        histogram = view.snapshot.histogram(view.focus)
        self.border_title = f"{view.focus.label} distribution"
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="dim")
        table.add_column()
        table.add_column(justify="right")
        count = histogram.count
        if count == 0:
            self.put(Text(f"no {view.focus.label} samples yet", style="dim"), 1, view.focus)
            return
        # Each HDR bucket falls into the 1-2-5 bin of its lower bound.
        bins = np.searchsorted(EDGES, BUCKET_LOWER, side="right")
        counts = np.bincount(bins, weights=histogram.counts, minlength=len(EDGES) + 1)
        used = np.nonzero(counts)[0]
        first, last = int(used.min()), int(used.max())
        peak = counts[first : last + 1].max()
        for index in range(first, last + 1):
            low = EDGES[index - 1] if index > 0 else 0.0
            n = int(counts[index])
            bar = "#" * max(1 if n else 0, round(BAR * n / peak))
            table.add_row(
                f">={format_duration(low)}" if low else "<1us",
                Text(bar, style="cyan"),
                f"{n / count:6.1%}",
            )
        self.put(table, table.row_count, (view.focus, first, counts[first : last + 1].tobytes()))
