"""A run as a picture: throughput, latency percentiles over time per command, the latency
distribution per command and reply codes over time, in four panels.

Drawn with matplotlib's object interface (no pyplot, no display needed): a PNG, or a
self-contained HTML page with the same figure inline as SVG.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from smtpbench.metrics.kinds import MESSAGE_LATENCY, latency_label
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.units import format_duration

PANEL_TITLES = (
    "Throughput over time",
    "Latency over time per command (p99 solid, p50 dashed)",
    "Latency distribution per command (whole run)",
    "Reply codes over time",
)
_NINES = 4  # the distribution's x axis runs to 99.99%
_CODE_COLOURS = {2: "Greens", 3: "Blues", 4: "Oranges", 5: "Reds"}


def _seconds_formatter() -> FuncFormatter:
    return FuncFormatter(lambda value, _: format_duration(value))


def _rows(snapshot: Snapshot) -> list[int]:
    """Commands timed, in session order, then message latency from intended start."""
    rows = [int(step) for step in snapshot.steps_seen() if snapshot.latency_count(step)]
    if snapshot.latency_count(MESSAGE_LATENCY):
        rows.append(MESSAGE_LATENCY)
    return rows


def _colours(rows: list[int]) -> dict[int, tuple[float, float, float, float]]:
    palette = matplotlib.colormaps["tab10" if len(rows) <= 10 else "tab20"]
    return {row: palette(k % palette.N) for k, row in enumerate(rows)}


def _label(row: int) -> str:
    return "message (from intended start)" if row == MESSAGE_LATENCY else latency_label(row)


def _throughput(ax: Axes, snapshot: Snapshot) -> None:
    series = snapshot.series
    ax.set_title(PANEL_TITLES[0], loc="left", fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("per second")
    if len(series) == 0:
        ax.text(0.5, 0.5, "no interval recorded", ha="center", transform=ax.transAxes)
        return
    t = series.time
    edges = np.concatenate(([0.0], t))
    if not np.isnan(series.target_rate).all():
        ax.stairs(series.target_rate, edges, color="grey", ls="--", label="target sessions")
    ax.stairs(series.rate("started"), edges, color="tab:blue", lw=1.5, label="sessions started")
    accepted = series.rate("messages_accepted")
    ax.stairs(accepted, edges, color="tab:green", lw=1.5, label="messages accepted")
    for name, colour in (("failed", "tab:red"), ("dropped", "black")):
        values = series.rate(name)
        if values.any():
            ax.stairs(values, edges, color=colour, label=f"sessions {name}")
    ax.set_xlim(0, max(float(t[-1]), 1.0))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)


def _latency_over_time(ax: Axes, snapshot: Snapshot, rows: list[int], colours: dict) -> None:
    series = snapshot.series
    ax.set_title(PANEL_TITLES[1], loc="left", fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency")
    drawn = False
    for row in rows:
        if len(series) == 0 or np.isnan(series.p99[:, row]).all():
            continue
        colour = colours[row]
        ax.plot(series.time, series.p99[:, row], color=colour, marker=".", label=_label(row))
        ax.plot(series.time, series.p50[:, row], color=colour, ls="--", lw=1, alpha=0.6)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", transform=ax.transAxes)
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_seconds_formatter())
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(alpha=0.3, which="both")


def _distribution(ax: Axes, snapshot: Snapshot, rows: list[int], colours: dict) -> None:
    ax.set_title(PANEL_TITLES[2], loc="left", fontsize=11)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency")
    if not rows:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", transform=ax.transAxes)
        return
    # HdrHistogram's view: x is how many nines, so the tail gets as much room as the body.
    nines = np.linspace(0, _NINES, 200)
    qs = (1 - 10.0**-nines) * 100
    values = snapshot.latency.percentiles(tuple(qs))
    for row in rows:
        ax.plot(nines, values[row], color=colours[row], label=_label(row))
    ax.xaxis.set_major_locator(FixedLocator(list(range(_NINES + 1))))
    labels = ["0%", "90%", "99%", "99.9%", "99.99%"]
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: labels[round(x)]))
    ax.set_xlim(0, _NINES)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_seconds_formatter())
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(alpha=0.3, which="both")


def _replies_over_time(ax: Axes, snapshot: Snapshot) -> None:
    ax.set_title(PANEL_TITLES[3], loc="left", fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("replies per second (all commands)")
    intervals = snapshot.intervals
    if intervals is None or len(intervals) == 0:
        ax.text(
            0.5, 0.5, "this results folder has no per-interval reply counts",
            ha="center", transform=ax.transAxes,
        )  # fmt: skip
        return
    table = intervals.reply_table()
    widths = np.diff(intervals.end, prepend=0.0)
    widths[widths <= 0] = 1.0
    codes = [int(code) for code in np.flatnonzero(table.sum(axis=0))]
    by_class: dict[int, list[int]] = {}
    for code in codes:
        by_class.setdefault(code // 100, []).append(code)
    bottom = np.zeros(len(intervals))
    starts = intervals.end - widths
    for first, members in sorted(by_class.items()):
        shades = matplotlib.colormaps[_CODE_COLOURS.get(first, "Greys")]
        for k, code in enumerate(members):
            rate = table[:, code] / widths
            shade = shades(0.45 + 0.45 * k / max(1, len(members) - 1) if len(members) > 1 else 0.7)
            ax.bar(
                starts, rate, width=widths, bottom=bottom, align="edge", color=shade,
                edgecolor="white", linewidth=0.3, label=str(code),
            )  # fmt: skip
            bottom += rate
    ax.set_xlim(0, max(float(intervals.end[-1]), 1.0))
    ax.legend(fontsize=8, loc="upper left", ncol=4, title="code", title_fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def build_figure(snapshot: Snapshot) -> Figure:
    """The four panels, titled with what was run."""
    figure = Figure(figsize=(15, 9.5), dpi=100, layout="constrained")
    (a, b), (c, d) = figure.subplots(2, 2)
    rows = _rows(snapshot)
    colours = _colours(rows)
    _throughput(a, snapshot)
    _latency_over_time(b, snapshot, rows, colours)
    _distribution(c, snapshot, rows, colours)
    _replies_over_time(d, snapshot)
    info = snapshot.info
    c_ = snapshot.counters
    figure.suptitle(
        f"smtpbench {info.scenario}: {info.load}, against {info.target}\n"
        f"{snapshot.state.value} after {snapshot.elapsed:.1f}s, {c_.started:,} sessions "
        f"({c_.failed:,} failed, {c_.dropped:,} dropped), {c_.messages_accepted:,} messages "
        f"accepted; service time per command unless marked",
        fontsize=12,
    )
    return figure


def write_plot(path: Path, snapshot: Snapshot) -> None:
    """A PNG for ``.png``; a self-contained HTML page (inline SVG) for ``.html``/``.htm``."""
    figure = build_figure(snapshot)
    suffix = path.suffix.lower()
    if suffix == ".png":
        figure.savefig(path, format="png")
        return
    if suffix not in (".html", ".htm"):
        raise ValueError(f"{path}: a plot is a .png or an .html file")
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: searchable
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    title = html.escape(f"smtpbench {snapshot.info.scenario}, {snapshot.info.started_at}")
    path.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:1em}svg{max-width:100%;height:auto}</style>"
        f"</head><body>\n{svg}\n</body></html>\n",
        encoding="utf-8",
    )
