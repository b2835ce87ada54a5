"""`smtpbench compare`: two real runs, the second against a slower, pickier sink;
regression rules and their exit code; rule parsing and colours."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.build_info import engine_build
from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.results import write_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.report.compare import change_text, check_rules, parse_rule
from smtpbench.thresholds import ThresholdError, parse_metric
from tests.runs import run_against, scenario_for
from tests.test_cli import smtpbench


async def _run(faults: dict[str, object]) -> Snapshot:
    plan = parse_fault_table(faults)
    async with embedded_sink(plan.to_argv()) as (_, port):
        with trio.fail_after(60):
            return await run_against(scenario_for(port, rate=50, duration=2))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Snapshot, Snapshot]:
    base = tmp_path_factory.mktemp("compare")
    before = trio.run(_run, {})
    after = trio.run(_run, {"delay": {"DATA": "20ms"}, "reply": {"RCPT": "451:20%"}})
    write_results(base / "before", before, 'name = "default"\n')
    write_results(base / "after", after, 'name = "default"\n')
    return base / "before", base / "after", before, after


def _compare(runs: tuple[Path, Path, Snapshot, Snapshot], *rules: str) -> tuple[int, str, str]:
    before, after, _, _ = runs
    args = [arg for rule in rules for arg in ("--fail-if", rule)]
    result = smtpbench("compare", str(before), str(after), *args, cwd=before.parent)
    return result.returncode, result.stdout, " ".join(result.stderr.split())


def test_side_by_side_per_command_and_percentile(
    runs: tuple[Path, Path, Snapshot, Snapshot],
) -> None:
    code, out, err = _compare(runs)
    assert code == exitcodes.OK, err
    assert "A (baseline)" in out and "change" in out
    data = next(line for line in out.splitlines() if line.startswith("│ DATA "))
    assert "p50" in data and "%" in data  # the 20 ms delay, as a change in percent
    # Reply-code differences: the refused recipients are new in the second run.
    line = next(line for line in out.splitlines() if "│  451 │" in line)
    assert "0.00% (0)" in line and "new +" in line
    assert "rate(4xx)" in out


def test_a_regression_rule_fails_with_exit_code_1(
    runs: tuple[Path, Path, Snapshot, Snapshot],
) -> None:
    code, out, _ = _compare(runs, "p99(DATA) +10%")
    assert code == exitcodes.THRESHOLDS_FAILED
    assert "Regression rules: 1 of 1 checks failed" in out
    row = next(line for line in out.splitlines() if line.startswith("│ p99(DATA) +10%"))
    assert "FAIL" in row
    code, out, _ = _compare(runs, "p99 +10%")  # every command: DATA among them
    assert code == exitcodes.THRESHOLDS_FAILED
    assert any("p99(DATA)" in line and "FAIL" in line for line in out.splitlines())


def test_rules_that_hold_exit_0(runs: tuple[Path, Path, Snapshot, Snapshot]) -> None:
    # DATA got slower, not faster; no session was dropped in either run.
    code, out, err = _compare(runs, "p99(DATA) -10%", "dropped +0", "p50(DATA) +1s")
    assert code == exitcodes.OK, err
    assert "Regression rules: all 3 checks passed" in out


def test_a_rule_in_percentage_points(runs: tuple[Path, Path, Snapshot, Snapshot]) -> None:
    _, _, before, after = runs
    [result] = check_rules([parse_rule("rate(4xx) +1pp")], [before, after])
    assert result.base == 0 and result.value > 0.01 and result.failed
    [held] = check_rules([parse_rule("rate(4xx) +50pp")], [before, after])
    assert not held.failed


def test_a_bad_rule_is_named(runs: tuple[Path, Path, Snapshot, Snapshot]) -> None:
    code, _, err = _compare(runs, "p99 ++10%")
    assert code == exitcodes.BAD_CONFIGURATION
    assert "--fail-if 'p99 ++10%'" in err


@pytest.mark.parametrize(
    ("text", "sign", "amount", "relative"),
    [
        ("p99 +10%", "+", 0.10, True),
        ("p99.9(DATA end) +5ms", "+", 0.005, False),
        ("throughput -5%", "-", 0.05, True),
        ("throughput -50/s", "-", 50.0, False),
        ("rate(errors) +0.5pp", "+", 0.005, False),
        ("mean +20%", "+", 0.20, True),
    ],
)
def test_rule_forms(text: str, sign: str, amount: float, relative: bool) -> None:
    rule = parse_rule(text)
    assert (rule.sign, rule.relative) == (sign, relative)
    assert rule.amount == pytest.approx(amount)


@pytest.mark.parametrize(
    "text", ["p99", "p99 10%", "p99(DTA) +10%", "throughput +1pp", "p99 +fast", "x +1%"]
)
def test_bad_rules(text: str) -> None:
    with pytest.raises(ThresholdError):
        parse_rule(text)


def test_rule_semantics() -> None:
    up = parse_rule("p99 +10%")
    assert up.fails(1.0, 1.11) and not up.fails(1.0, 1.09) and not up.fails(1.0, 0.5)
    down = parse_rule("throughput -5%")
    assert down.fails(100.0, 94.0) and not down.fails(100.0, 96.0) and not down.fails(100, 200)
    absolute = parse_rule("p99(DATA) +5ms")
    assert absolute.fails(0.010, 0.0151) and not absolute.fails(0.010, 0.0149)


def test_colours_say_better_or_worse() -> None:
    latency = parse_metric("p99(DATA)")
    assert change_text(latency, 1.0, 1.5).style == "bold red"
    assert change_text(latency, 1.0, 0.5).style == "green"
    assert change_text(latency, 1.0, 1.005).style == "dim"  # within the noise
    throughput = parse_metric("throughput")
    assert change_text(throughput, 100.0, 150.0).style == "green"
    assert str(change_text(parse_metric("rate(errors)"), 0.0, 0.02)) == "+2.00pp"


def test_runs_of_differently_built_engines_are_told_apart(
    runs: tuple[Path, Path, Snapshot, Snapshot], tmp_path: Path
) -> None:
    before, _, snapshot, _ = runs
    # Each run notes how its engine ran (this process's build: its engine shares it).
    assert snapshot.info.engine == engine_build()
    code, out, _ = _compare(runs)
    assert code == exitcodes.OK and "The runs' engines differ" not in out
    assert engine_build() in " ".join(out.split())
    # The same run as if made by the other build, and one from before engines were noted.
    other = "interpreted" if engine_build() != "interpreted" else "compiled with mypyc"
    elsewhere = dataclasses.replace(snapshot, info=dataclasses.replace(snapshot.info, engine=other))
    write_results(tmp_path / "other", elsewhere, 'name = "default"\n')
    result = smtpbench("compare", str(before), str(tmp_path / "other"), cwd=tmp_path)
    said = " ".join(result.stdout.split())
    assert result.returncode == exitcodes.OK
    assert f"The runs' engines differ ({' / '.join(sorted([other, engine_build()]))})" in said
    older = dataclasses.replace(snapshot, info=dataclasses.replace(snapshot.info, engine=""))
    write_results(tmp_path / "older", older, 'name = "default"\n')
    result = smtpbench("compare", str(before), str(tmp_path / "older"), cwd=tmp_path)
    said = " ".join(result.stdout.split())
    assert "not noted" in said and "The runs' engines differ" not in said
