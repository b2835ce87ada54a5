"""The most recent failing sessions, each with its transcript in short."""

from __future__ import annotations

from textual.content import Content

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.metrics.snapshot import FailureRecord
from smtpbench.tui.view import View
from smtpbench.tui.widgets.columns import Cell, Column, aligned
from smtpbench.tui.widgets.pane import Pane
from smtpbench.units import format_clock

SHOWN = 6
COLUMNS = (
    Column(style="dim"),
    Column(right=True),
    Column(),
    Column(style="red", stretch=2),
    Column(style="dim", stretch=1),
)


def short_transcript(failure: FailureRecord) -> str:
    """``EHLO 250, MAIL 250, RCPT 550``: the verbs sent and the codes got."""
    parts = []
    for line in failure.transcript:
        if line.is_left_out:
            parts.append("…")
            continue
        if line.sent == "(connect)":
            verb = "banner"  # the reply to connecting
        elif line.sent.startswith("("):
            verb = "content"  # "(message content, N bytes)"
        else:
            verb = line.sent.split(" ", 1)[0]
        code = line.reply.split(" ", 1)[0] if line.reply else "no reply"
        parts.append(f"{verb} {code}")
    return ", ".join(parts)


class RecentFailures(Pane):
    def show(self, view: View) -> None:
        failures = view.snapshot.failures[-SHOWN:]
        if not failures:
            self.put([Content.styled("no failures so far", "dim")], "none")
            return
        rows: list[list[Cell]] = [
            [
                format_clock(failure.time),
                f"#{failure.session}",
                failure.step,
                # Cut short by smtpbench at a stop: the tool's doing, not the server's.
                Content.styled(f"{failure.error}: {failure.detail}", "yellow")
                if failure.error == ErrorClass.CANCELLED.label
                else f"{failure.error}: {failure.detail}",
                f"({short_transcript(failure)})",
            ]
            for failure in reversed(failures)
        ]
        width = self.content_size.width
        key = (tuple((f.session, f.time) for f in failures), width)
        self.put(aligned(COLUMNS, rows, width), key)
