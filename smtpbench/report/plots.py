"""A run as a picture: four panels stacked, each answering one question (how much went
through, how slow the commands that matter were over time, how each command's latency is
distributed, which replies came back), each with its legend beside it, off the data.

Time panels leave out the run's last interval when it is a sliver (the drain ends a
fraction of a second into it): a rate over 0.04 s is noise, not a drop to zero. The
figure's title wraps instead of running off the edges.

Drawn with matplotlib's object interface (no pyplot, no display needed): a PNG, or a
self-contained HTML page with the same figure inline as SVG.
"""

from __future__ import annotations

import html
import io
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from smtpbench.metrics.kinds import MESSAGE_LATENCY, latency_label
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.units import format_duration

PANEL_TITLES = (
    "How much went through: per second over time",
    "How slow over time: p99 (solid) and p50 (dashed)",
    "Latency distribution per command (whole run; service time unless marked)",
    "Reply codes over time (all commands)",
)
# The commands an admin reads over time: the greeting, recipients, the message's
# acceptance; the rest are in the distribution panel. Then the message as a sender sees it.
OVER_TIME = (Step.BANNER, Step.RCPT, Step.DATA_END, Step.BDAT)
PARTIAL = 0.5  # a last interval shorter than this share of a second is left out of rates
TITLE_WIDTH = 130  # characters per line of the figure's title
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


def _legend_beside(ax: Axes, **options: object) -> None:
    """The legend to the right of the panel, never over its data."""
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **options
    )


def _whole_rows(times: np.ndarray) -> slice:
    """The rows of a time series without a last interval that is only a sliver."""
    if len(times) >= 2 and times[-1] - times[-2] < PARTIAL:
        return slice(0, len(times) - 1)
    return slice(0, len(times))


def _throughput(ax: Axes, snapshot: Snapshot) -> None:
    series = snapshot.series
    ax.set_title(PANEL_TITLES[0], loc="left", fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("per second")
    if len(series) == 0:
        ax.text(0.5, 0.5, "no interval recorded", ha="center", transform=ax.transAxes)
        return
    keep = _whole_rows(series.time)
    t = series.time[keep]
    edges = np.concatenate(([0.0], t))
    if not np.isnan(series.target_rate).all():
        target = series.target_rate[keep]
        ax.stairs(
            target, edges, color="grey", ls="--", lw=1.5, baseline=None, label="sessions asked for"
        )
    started = series.rate("started")[keep]
    ax.stairs(started, edges, color="tab:blue", lw=1.5, baseline=None, label="sessions started")
    accepted = series.rate("messages_accepted")[keep]
    ax.stairs(accepted, edges, color="tab:green", lw=1.5, baseline=None, label="messages accepted")
    for name, colour in (("failed", "tab:red"), ("dropped", "tab:purple")):
        # Failed: the server's; sessions smtpbench cut short at a stop are not.
        values = (snapshot.server_failed_rate() if name == "failed" else series.rate(name))[keep]
        if values.any():
            ax.stairs(values, edges, color=colour, lw=1.5, baseline=None, label=f"sessions {name}")
    ax.set_xlim(0, max(float(t[-1]), 1.0) if len(t) else 1.0)
    ax.set_ylim(bottom=0)
    _legend_beside(ax)
    ax.grid(alpha=0.3)


def _latency_over_time(ax: Axes, snapshot: Snapshot, rows: list[int], colours: dict) -> None:
    series = snapshot.series
    ax.set_title(PANEL_TITLES[1], loc="left", fontsize=11)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency")
    keep = _whole_rows(series.time)
    drawn = False
    for row in [r for r in rows if r in OVER_TIME or r == MESSAGE_LATENCY]:
        if len(series) == 0 or np.isnan(series.p99[keep, row]).all():
            continue
        colour = colours[row]
        t = series.time[keep]
        ax.plot(t, series.p99[keep, row], color=colour, lw=1.8, label=f"{_label(row)} p99")
        ax.plot(t, series.p50[keep, row], color=colour, ls="--", lw=1, label=f"{_label(row)} p50")
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no latency recorded", ha="center", transform=ax.transAxes)
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_seconds_formatter())
    _legend_beside(ax)
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
    _legend_beside(ax)
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
    keep = _whole_rows(intervals.end)
    table = intervals.reply_table()[keep]
    ends = intervals.end[keep]
    widths = np.diff(ends, prepend=0.0)
    widths[widths <= 0] = 1.0
    codes = [int(code) for code in np.flatnonzero(table.sum(axis=0))]
    by_class: dict[int, list[int]] = {}
    for code in codes:
        by_class.setdefault(code // 100, []).append(code)
    bottom = np.zeros(len(ends))
    starts = ends - widths
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
    ax.set_xlim(0, max(float(ends[-1]), 1.0))
    _legend_beside(ax, ncol=2 if len(codes) > 8 else 1, title="code", title_fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def build_figure(snapshot: Snapshot) -> Figure:
    """The four panels, one above the other, titled with what was run."""
    figure = Figure(figsize=(14, 17), dpi=100, layout="constrained")
    a, b, c, d = figure.subplots(4, 1)
    rows = _rows(snapshot)
    colours = _colours(rows)
    _throughput(a, snapshot)
    _latency_over_time(b, snapshot, rows, colours)
    _distribution(c, snapshot, rows, colours)
    _replies_over_time(d, snapshot)
    info = snapshot.info
    c_ = snapshot.counters
    lines = [
        f"smtpbench {info.scenario}: {info.load}, against {info.target}",
        f"{snapshot.state.word.lower()} after {snapshot.elapsed:.1f}s, {c_.started:,} sessions "
        f"({snapshot.server_failed:,} failed, {c_.dropped:,} dropped), "
        f"{c_.messages_accepted:,} messages accepted",
    ]
    title = "\n".join(textwrap.fill(line, TITLE_WIDTH) for line in lines)
    figure.suptitle(title, fontsize=12)
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
