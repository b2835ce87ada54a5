"""The dashboard read as a mail admin would: every chart line named off the data, round
ticks, service time and latency from intended start apart, the keys that matter and the
results path always visible, feedback for every key, a stop that keeps the plan."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from textual.widgets._footer import FooterKey

from smtpbench.metrics.snapshot import RunState
from smtpbench.tui.app import DashboardApp
from smtpbench.tui.widgets.charts import LatencyChart, RateChart, x_ticks, y_ticks
from smtpbench.tui.widgets.header import RunHeader
from smtpbench.tui.widgets.pane import Pane
from tests.fake_engine import FakeEngine, synthetic_snapshot


def shown(pane: Pane) -> str:
    return "\n".join(pane.render_line(y).text for y in range(len(pane.lines)))


def run(scenario) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(scenario())


def test_ticks_are_round_and_start_at_zero() -> None:
    top, _, labels = y_ticks(60.5, 9)
    assert (top, labels) == (80.0, ["0", "20", "40", "60", "80"])
    assert y_ticks(102, 2)[2] == ["0", "150"]  # two rows: zero and a round top
    assert y_ticks(0.3, 7)[2] == ["0", "0.1", "0.2", "0.3"]
    assert x_ticks(60)[1] == ["-60s", "-45s", "-30s", "-15s", "now"]
    assert x_ticks(300)[1] == ["-5m", "-4m", "-3m", "-2m", "-1m", "now"]


@pytest.mark.parametrize("rows", range(2, 30))
@pytest.mark.parametrize("top", [0.0, 0.004, 0.3, 2.2, 9.9, 55.0, 60.5, 102.0, 330.0, 616.0, 5e4])
def test_every_tick_sits_on_a_row_of_its_own(top: float, rows: int) -> None:
    axis_top, ticks, labels = y_ticks(top, rows)
    assert axis_top >= top and ticks[0] == 0 and len(labels) == len(ticks)
    positions = [tick / axis_top * (rows - 1) for tick in ticks]
    assert all(abs(p - round(p)) < 1e-6 for p in positions), positions
    assert len({round(p) for p in positions}) == len(ticks)


def test_every_chart_line_is_named_on_the_border() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            rate = app.query_one(RateChart)
            for name in ("target", "started", "failed", "dropped"):
                assert name in str(rate.border_subtitle)
            latency = app.query_one(LatencyChart)
            assert "p50" in str(latency.border_subtitle)
            assert "p99" in str(latency.border_subtitle)
            assert str(latency.border_title) == "DATA end service time (ms)"

    run(scenario)


def test_l_shows_latency_from_intended_start_on_its_own_axis() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("l")
            await pilot.pause()
            latency = app.query_one(LatencyChart)
            assert str(latency.border_title) == "message from intended start (ms)"
            assert "from intended start" in app.note
            await pilot.press("l")
            await pilot.pause()
            assert "service time" in str(latency.border_title)

    run(scenario)


def test_brackets_say_the_window_and_the_charts_show_it() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert "charts show the last 2 min" in app.note
            assert "last 2 min" in str(app.query_one(RateChart).border_title)
            assert "last 2 min" in str(app.query_one(LatencyChart).border_subtitle)
            for _ in range(8):
                await pilot.press("right_square_bracket")
            assert "the longest" in app.note

    run(scenario)


def test_stop_and_help_stay_in_the_footer_at_80_columns() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            keys = {key.key: key for key in app.query(FooterKey)}
            for key in ("q", "question_mark"):
                region = keys[key].region
                assert region.width and region.right <= 80, key
            assert not any("palette" in key.description for key in keys.values())

    run(scenario)


def test_the_results_path_is_never_cut() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            path = "results/20261130-090000-newsletter-burst-with-a-long-name"
            app._say(f"results written to {path}  (q to leave)")
            await pilot.pause()
            text = shown(app.query_one(RunHeader))
            assert path in text.replace("\n", "")
            assert "…" not in text

    run(scenario)


@pytest.mark.parametrize("width", [160, 120, 80])
def test_the_header_says_what_runs_the_load(width: int) -> None:
    """A run on a cluster says so in the header, whatever the width: the target's line
    keeps it, the clock and bar give way first."""

    async def scenario() -> None:
        app = DashboardApp(FakeEngine(), where="cluster: 3 engines on 2 hosts")
        async with app.run_test(size=(width, 40)) as pilot:
            await pilot.pause()
            text = " ".join(shown(app.query_one(RunHeader)).split())
            assert "(cluster: 3 engines on 2 hosts)" in text
            assert "RUNNING" in text
        plain = DashboardApp(FakeEngine())
        async with plain.run_test(size=(width, 40)) as pilot:
            await pilot.pause()
            assert "(" not in shown(plain.query_one(RunHeader)).split("RUNNING")[0]

    run(scenario)


def test_hidden_reply_codes_are_counted() -> None:
    async def scenario() -> None:
        app = DashboardApp(FakeEngine())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            text = shown(app.query_one("#replies", Pane))
            assert "more: r lists all" in text

    run(scenario)


def test_a_stop_reads_stopped_with_the_planned_duration_kept() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        app = DashboardApp(engine)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            engine.finish(RunState.INTERRUPTED)
            app.pull()
            await pilot.pause()
            text = shown(app.query_one(RunHeader))
            assert "STOPPED" in text and "INTERRUPTED" not in text
            assert "00:01:12 / 00:05:00" in text  # 72 s of the 5 min planned
            assert "24%" in text and "100%" not in text

    run(scenario)


def test_sessions_cut_at_a_stop_are_not_counted_as_errors() -> None:
    from smtpbench.metrics.kinds import ErrorClass
    from smtpbench.protocol.steps import Step

    snapshot = synthetic_snapshot(seconds=5)
    errors = snapshot.errors.copy()
    errors[ErrorClass.CANCELLED, Step.DATA_END] = 40
    cut = dataclasses.replace(snapshot, errors=errors, state=RunState.INTERRUPTED)

    async def scenario() -> None:
        app = DashboardApp(FakeEngine(cut))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            commands = shown(app.query_one("#commands", Pane))
            data_end = next(line for line in commands.splitlines() if "DATA end" in line)
            share = snapshot.step_errors(Step.DATA_END) / snapshot.latency_count(Step.DATA_END)
            assert data_end.rstrip().endswith(f"{share:.1%}")
            assert "cancelled at stop 40" in shown(app.query_one("#counters", Pane))

    run(scenario)


def refused_everywhere() -> object:
    """A run whose every connect was refused: no connection ever opened."""
    from smtpbench.metrics.kinds import ErrorClass
    from smtpbench.metrics.recorder import Recorder
    from smtpbench.protocol.steps import Step
    from tests.fake_engine import INFO

    recorder = Recorder(dataclasses.replace(INFO, target="127.0.0.1:1"))
    recorder.state = RunState.RUNNING
    for _ in range(4):
        recorder.started += 1
        recorder.completed += 1
        recorder.failed += 1
        recorder.error(ErrorClass.REFUSED, Step.CONNECT)
    recorder.flush(1.0)
    return recorder.snapshot(1.0)


def test_nothing_listening_stops_the_dashboards_run_and_says_so() -> None:
    async def scenario() -> None:
        engine = FakeEngine(refused_everywhere())  # type: ignore[arg-type]
        app = DashboardApp(engine)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.pull()
            await pilot.pause()
            assert engine.calls == [("interrupt", ())]
            assert "nothing is listening on 127.0.0.1:1" in app.note
            assert "--keep-going" in app.note
            assert "nothing is listening" in shown(app.query_one(RunHeader))

    run(scenario)


def test_keep_going_lets_the_dashboards_run_go_on() -> None:
    async def scenario() -> None:
        engine = FakeEngine(refused_everywhere())  # type: ignore[arg-type]
        app = DashboardApp(engine, keep_going=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.pull()
            await pilot.pause()
            assert engine.calls == []

    run(scenario)
