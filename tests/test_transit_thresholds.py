"""Thresholds on transit (run --through): what they parse to, what they measure on the
transit figures, and a real run straight to the receiving sink whose verdicts come after
the drain, in thresholds.json, the exit code and ``report``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.cli import main
from smtpbench.report.measure import measure
from smtpbench.report.thresholds import evaluate
from smtpbench.thresholds import Kind, ThresholdError, parse_threshold
from smtpbench.transit.matching import TransitFigures
from smtpbench.transit.report import TRANSIT_JSON
from tests.servers import LOOPBACK, free_port


def figures(**changes: object) -> TransitFigures:
    values: dict[str, object] = {
        "through": "127.0.0.1:2626",
        "accepted": 10,
        "arrived": 9,
        "not_arrived": 1,
        "duplicates": 2,
        "altered": 3,
        "unexpected": 0,
        "foreign": 0,
        "to_accept": (0.001, 0.002, 0.003),
        "transit": (0.5, 0.9, 1.5),
        "transit_max": 2.5,
        "queue": (0.25, 0.75, 1.25),
        "waiting": False,
        "drained": 0.0,
        "seconds": (),
    }
    values.update(changes)
    return TransitFigures(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shown", "kind", "value"),
    [
        ("p50(transit) < 1s", "p50(transit)", Kind.LATENCY, 0.5),
        ("p90(transit) < 1s", "p90(transit)", Kind.LATENCY, 0.9),
        ("p99(transit) < 1s", "p99(transit)", Kind.LATENCY, 1.5),
        ("max(transit) < 1s", "max(transit)", Kind.LATENCY, 2.5),
        ("p50(queue) < 1s", "p50(queue)", Kind.LATENCY, 0.25),
        ("p99(Queue) < 1s", "p99(queue)", Kind.LATENCY, 1.25),
        ("not_arrived == 0", "not_arrived", Kind.COUNT, 1.0),
        ("not arrived == 0", "not_arrived", Kind.COUNT, 1.0),
        ("arrived >= 10", "arrived", Kind.COUNT, 9.0),
        ("duplicates == 0", "duplicates", Kind.COUNT, 2.0),
        ("altered == 0", "altered", Kind.COUNT, 3.0),
    ],
)
def test_each_transit_metric_reads_its_figure(
    text: str, shown: str, kind: Kind, value: float
) -> None:
    threshold = parse_threshold(text)
    metric = threshold.metric
    assert metric.is_transit and str(metric) == shown and metric.kind is kind
    assert "--through" in metric.meaning
    assert measure(metric, snapshot=None, transit=figures()) == value  # type: ignore[arg-type]
    # No figures (during the run, or a run without --through): no data.
    assert measure(metric, snapshot=None, transit=None) is None  # type: ignore[arg-type]
    assert not parse_threshold("p99(DATA end) < 1s").metric.is_transit
    assert not parse_threshold("dropped == 0").metric.is_transit


def test_no_message_arrived_is_no_data_for_the_times() -> None:
    none_arrived = figures(
        arrived=0, transit=(math.nan,) * 3, transit_max=math.nan, queue=(math.nan,) * 3
    )
    assert measure(parse_threshold("p99(transit) < 1s").metric, None, none_arrived) is None  # type: ignore[arg-type]
    assert measure(parse_threshold("max(transit) < 1s").metric, None, none_arrived) is None  # type: ignore[arg-type]
    assert measure(parse_threshold("arrived > 0").metric, None, none_arrived) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("p99.9(transit) < 1s", "transit keeps p50, p90, p99 only, not p99.9"),
        ("p75(queue) < 1s", "queue keeps p50, p90, p99 only"),
        (
            "max(queue) < 1s",
            "max(queue) is not kept: p50, p90, p99 of transit and queue, and max(transit)",
        ),
        ("mean(transit) < 1s", "mean(transit) is not kept"),
        ("p99(transit) < 5", "has no unit"),
        ("not_arrived < 1%", "expected a whole number"),
    ],
)
def test_what_transit_does_not_keep_is_refused(text: str, said: str) -> None:
    with pytest.raises(ThresholdError, match=re.escape(said)):
        parse_threshold(text)


def test_a_transit_threshold_without_through_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--headless", "--threshold", "p99(transit) < 5s", "--out", str(tmp_path)]
    assert main(["run", "--target", "127.0.0.1:1", *argv]) == exitcodes.BAD_CONFIGURATION
    err = " ".join(capsys.readouterr().err.split())
    assert "threshold p99(transit) < 5s: transit is measured only in a run with --through" in err
    assert not list(tmp_path.iterdir())


def test_transit_thresholds_are_judged_after_the_drain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Straight to the receiving sink: every message arrives, so ``not_arrived == 0`` and
    ``p99(transit) < 30s`` pass, and ``arrived >= 1000`` (of 20 sent) fails the run."""
    port = free_port()
    checks = ["not_arrived == 0", "p99(transit) < 30s", "arrived >= 1000", "duplicates == 0"]
    argv = ["run", "--target", f"{LOOPBACK}:{port}", "--through", f"{LOOPBACK}:{port}"]
    argv += ["--rate", "40", "--sessions", "20", "--workers", "1", "--headless"]
    for check in checks:
        argv += ["--threshold", check]
    assert main([*argv, "--out", str(tmp_path)]) == exitcodes.THRESHOLDS_FAILED
    said = " ".join(capsys.readouterr().out.split())
    assert "Thresholds: 1 of 4 failed" in said
    (folder,) = tmp_path.iterdir()
    transit = json.loads((folder / TRANSIT_JSON).read_text())
    assert transit["arrived"] == 20 and transit["not_arrived"] == 0
    stored = json.loads((folder / "thresholds.json").read_text())
    assert stored["passed"] is False
    verdicts = {t["threshold"]: (t["verdict"], t["measured"]) for t in stored["thresholds"]}
    assert verdicts == {
        "not_arrived == 0": ("passed", 0),
        "p99(transit) < 30s": ("passed", pytest.approx(transit["transit_seconds"]["p99"])),
        "arrived >= 1000": ("failed", 20),
        "duplicates == 0": ("passed", 0),
    }
    # report judges them again from transit.json, to the same verdicts and exit code.
    assert main(["report", str(folder)]) == exitcodes.THRESHOLDS_FAILED
    reported = " ".join(capsys.readouterr().out.split())
    assert "Thresholds: 1 of 4 failed" in reported
    assert main(["report", str(folder), "--threshold", "arrived == 20"]) == exitcodes.OK
    # Judged on the snapshot alone (as during the run), they have no data: never 0.
    results = evaluate(
        [parse_threshold(c) for c in checks],
        snapshot=None,  # type: ignore[arg-type]
        transit=None,
    )
    assert all(r.measured is None and not r.passed for r in results)
