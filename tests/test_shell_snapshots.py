"""What the shell looks like at 80x24 and 120x40 after a short session with our sink,
on a clock that stands still (every time reads 0) and a fixed name in the title bar.
Update with ``pytest tests/test_shell_snapshots.py --snapshot-update`` after a
deliberate change, and look at the SVGs before committing them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from smtpbench.servers.sink import Sink
from smtpbench.shell.app import ShellApp
from tests.shell_helpers import say, shell_app, sink_in_thread, transcript, wait_for

SnapCompare = Callable[..., bool]
DONE = "ms · 250 Requested mail action okay, completed"


@pytest.fixture
def sink() -> Iterator[Sink]:
    with sink_in_thread() as running:
        yield running


async def short_session(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ShellApp)
    await wait_for(pilot, lambda: "220" in transcript(app), "the banner")
    await say(pilot, "EHLO client.example", DONE)
    await say(pilot, "MAIL FROM:<alice@example.org>", "2.1.0")
    await say(pilot, "RCPT TO:<nobody>", "RCPT")
    await pilot.press(*"RCPT TO:<b")  # left typed, not sent: the line as it looks


def test_shell_at_80x24(snap_compare: SnapCompare, sink: Sink) -> None:
    app = shell_app(sink.address[1], fixed_clock=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=short_session)


def test_shell_at_120x40(snap_compare: SnapCompare, sink: Sink) -> None:
    app = shell_app(sink.address[1], fixed_clock=True)
    assert snap_compare(app, terminal_size=(120, 40), run_before=short_session)
