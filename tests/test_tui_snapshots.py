"""What the dashboard looks like at 80x24 and 160x48, fed by a deterministic stand-in
engine. Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` after a
deliberate change, and look at the SVGs before committing them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from smtpbench.tui.app import DashboardApp
from tests.fake_engine import FakeEngine

SnapCompare = Callable[..., bool]


def test_dashboard_at_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(DashboardApp(FakeEngine()), terminal_size=(80, 24))


def test_dashboard_at_160x48(snap_compare: SnapCompare) -> None:
    assert snap_compare(DashboardApp(FakeEngine()), terminal_size=(160, 48))


def test_dashboard_focus_on_rcpt_at_120x40(snap_compare: SnapCompare) -> None:
    assert snap_compare(DashboardApp(FakeEngine()), terminal_size=(120, 40), press=["5"])


def test_dashboard_stopped_with_results_at_80x24(snap_compare: SnapCompare) -> None:
    """After q: the state word, the planned duration kept, the results path whole."""

    async def stop(pilot: object) -> None:
        app = pilot.app  # type: ignore[attr-defined]
        app.source.finish()
        app.save = lambda snapshot, final: Path("results/20261130-090000-newsletter-burst")
        app.pull()
        await pilot.pause()  # type: ignore[attr-defined]

    assert snap_compare(DashboardApp(FakeEngine()), terminal_size=(80, 24), run_before=stop)
