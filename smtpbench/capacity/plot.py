"""The capacity plot: each command's p99 against the rate asked for (one point per step,
held or broken), and the sessions started per second against the rate asked for; the
highest rate that held and the first that did not marked on both."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from smtpbench.capacity.verdict import StepResult
from smtpbench.units import format_duration

COMMANDS = ("banner", "EHLO", "MAIL", "RCPT", "DATA end", "BDAT", "QUIT")


def capacity_figure(steps: Sequence[StepResult], held: float | None, broke: float | None) -> Figure:
    ordered = sorted(steps, key=lambda s: s.rate)
    rates = np.array([s.rate for s in ordered])
    ok = np.array([s.held for s in ordered])
    figure = Figure(figsize=(10, 8), layout="constrained")
    latency, reach = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    palette = matplotlib.colormaps["tab10"]
    labels = [c for c in COMMANDS if any(c in s.p99 for s in ordered)]
    if any(s.start_lag_p99 is not None for s in ordered):
        labels.append("start lag")
    for k, label in enumerate(labels):
        if label == "start lag":
            values = np.array(
                [np.nan if s.start_lag_p99 is None else s.start_lag_p99 for s in ordered]
            )
        else:
            values = np.array([s.p99.get(label, np.nan) for s in ordered])
        colour = palette(k % palette.N)
        style = ":" if label == "start lag" else "-"
        latency.plot(rates, values, style, color=colour, label=f"p99 {label}")
        latency.scatter(rates[ok], values[ok], color=colour, marker="o", s=25)
        latency.scatter(rates[~ok], values[~ok], color=colour, marker="x", s=50)
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_duration(v)))
    latency.set_ylabel("p99 of the step's steady part")
    latency.set_title("p99 per command against the rate asked for (o held, x broke)")
    latency.grid(True, which="major", alpha=0.3)
    reach.plot(rates, rates, "--", color="grey", label="asked for")
    reach.plot(
        rates, [s.achieved for s in ordered], "-o", color="black", label="sessions started/s"
    )
    reach.plot(
        rates, [s.messages for s in ordered], "-", color="tab:green", label="messages accepted/s"
    )
    reach.set_xlabel("rate asked for (sessions/s)")
    reach.set_ylabel("per second")
    reach.set_title("what was reached")
    reach.grid(True, alpha=0.3)
    for axes in (latency, reach):
        if held is not None:
            axes.axvline(
                held, color="tab:green", linestyle="--", linewidth=1, label=f"held {held:g}/s"
            )
        if broke is not None:
            axes.axvline(
                broke, color="tab:red", linestyle="--", linewidth=1, label=f"broke {broke:g}/s"
            )
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return figure


def capacity_figure_png(
    steps: Sequence[StepResult], held: float | None, broke: float | None
) -> bytes:
    figure = capacity_figure(steps, held, broke)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()
