"""A run's summary as GitHub-flavoured Markdown, ready to paste into a pull request."""

from __future__ import annotations

import math
from collections.abc import Sequence

from smtpbench.metrics.snapshot import SUMMARY_PERCENTILES, Snapshot
from smtpbench.report.exports import latency_rows
from smtpbench.report.reply_rows import all_reply_rows
from smtpbench.report.thresholds import ThresholdResult
from smtpbench.transit.matching import PERCENTILES as TRANSIT_PERCENTILES
from smtpbench.transit.matching import TransitFigures
from smtpbench.transit.report import count_rows, time_rows, transit_title
from smtpbench.units import format_clock, format_duration


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    marks = {"l": ":--", "r": "--:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _duration(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def transit_markdown(figures: TransitFigures) -> list[str]:
    """The transit tables (run ``--through``): what arrived, then the times of arrived
    messages, as the end-of-run summary shows them."""
    columns = [f"p{q:g}" for q in TRANSIT_PERCENTILES]
    rows = [
        [label, *(_duration(_finite(v)) for v in values), _duration(_finite(largest))]
        for label, values, largest in time_rows(figures)
    ]
    counts = [[label, f"{n:,}"] for label, n in count_rows(figures)]
    return [
        f"**{transit_title(figures)}**",
        "",
        _table(["messages", "count"], "lr", counts),
        "",
        _table(["of arrived messages", *columns, "max"], "l" + "r" * (len(columns) + 1), rows),
        "",
    ]


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def markdown_report(
    snapshot: Snapshot,
    thresholds: Sequence[ThresholdResult] | None = None,
    transit: TransitFigures | None = None,
) -> str:
    info = snapshot.info
    c = snapshot.counters
    elapsed = snapshot.elapsed
    parts = [
        f"### smtpbench: {info.scenario}",
        "",
        f"{info.load}, against {info.target}: **{snapshot.state.word.lower()}** after "
        f"{format_clock(elapsed)} (seed {info.seed}, {info.tool}, "
        f"started {info.started_at})",
        "",
    ]
    if thresholds:
        failed = sum(not r.passed for r in thresholds)
        verdict = f"❌ {failed} of {len(thresholds)} failed" if failed else "✅ all passed"
        parts += [
            f"**Thresholds: {verdict}**",
            "",
            _table(
                ["threshold", "measured", "result"],
                "lrl",
                [
                    [
                        f"`{r.threshold}`",
                        r.measured_text,
                        ("✅ " if r.passed else "❌ ") + r.outcome_text,
                    ]
                    for r in thresholds
                ],
            ),
            "",
        ]
    sessions = f"{c.started:,} started ({snapshot.achieved_rate:,.1f}/s"
    share = snapshot.schedule_share
    if snapshot.target_rate is not None and share is not None and not snapshot.is_replay:
        sessions += f", {share:.1%} of schedule"
    sessions += ")"
    parts += [
        _table(
            ["sessions", "ok", "failed", "dropped", "messages accepted", "refused"],
            "rrrrrr",
            [
                [
                    sessions,
                    f"{c.completed - c.failed:,}",
                    f"{snapshot.server_failed:,}"
                    + (
                        f" (+{snapshot.cancelled:,} cancelled at stop)"
                        if snapshot.cancelled
                        else ""
                    ),
                    f"{c.dropped:,}",
                    f"{c.messages_accepted:,} ({snapshot.messages_per_second:,.1f}/s)",
                    f"{c.messages_rejected:,}",
                ]
            ],
        ),
        "",
    ]
    rows = latency_rows(snapshot)
    columns = [f"p{q:g}" for q in SUMMARY_PERCENTILES]
    for view, title in (
        ("service", "Service time per command (sent to reply complete)"),
        ("from intended start", "From intended start (what a sender feels)"),
    ):
        chosen = [r for r in rows if r["view"] == view]
        if not chosen:
            continue
        header = ["command" if view == "service" else "measure", "count", *columns, "max"]
        align = "l" + "r" * (len(header) - 1)
        if view == "service":
            header.append("errors")
            align += "r"
        body = []
        for r in chosen:
            line = [
                r["command"],
                f"{r['count']:,}",
                *(_duration(r[f"{c}_s"]) for c in columns),
                _duration(r["max_s"]),
            ]
            if view == "service":
                line.append(f"{r['errors']:,}")
            body.append(line)
        parts += [f"**{title}**", "", _table(header, align, body), ""]
    if transit is not None:
        parts += transit_markdown(transit)
    # Enhanced status codes under the basic codes of their class, in italics.
    replies = [
        [
            row.step.label,
            f"*{row.code}*" if row.enhanced else row.code,
            f"*{row.meaning}*" if row.enhanced else row.meaning,
            f"{row.count:,}",
            f"{row.share:.1%}",
        ]
        for row in all_reply_rows(snapshot)
    ]
    if replies:
        parts += [
            "**Reply codes per command**",
            "",
            _table(["command", "code", "meaning", "count", "share"], "lrlrr", replies),
            "",
        ]
    errors = snapshot.errors_by_class()
    if errors:
        parts += [
            "**Errors by class**",
            "",
            _table(
                ["class", "count"],
                "lr",
                [[e.label, f"{n:,}"] for e, n in sorted(errors.items(), key=lambda i: -i[1])],
            ),
            "",
        ]
    return "\n".join(parts)
