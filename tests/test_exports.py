"""Every export of a real run read back: JSON and CSV parsed, Markdown tables, the
HdrHistogram log decoded with `hdrhistogram`, and the plot as an image with four panels."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import trio
from hdrh.log import HistogramLogReader

from smtpbench import exitcodes
from smtpbench.engine.embedded import embedded_sink
from smtpbench.faults import parse_fault_table
from smtpbench.metrics.histogram import BUCKET_MIDDLE, RELATIVE_ERROR
from smtpbench.metrics.kinds import LATENCY_ROWS, MESSAGE_LATENCY, latency_label
from smtpbench.metrics.results import read_results, write_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.steps import Step
from smtpbench.report.exports import latency_csv, report_json
from smtpbench.report.hlog import new_histogram, tag_of, write_hlog
from smtpbench.report.plots import PANEL_TITLES, build_figure
from tests.known_snapshot import snapshot_of
from tests.runs import run_against, scenario_for
from tests.test_cli import smtpbench

HLOG_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
HDR_ERROR = 2.0**-10  # 3 significant digits: 2048 sub-buckets, values rounded up within one


async def _run() -> Snapshot:
    # 100 sessions/s for 3 s, every 10th RCPT refused for a while: 300 sessions, 4xx replies.
    plan = parse_fault_table({"reply": {"RCPT": "451:10%"}})
    async with embedded_sink(plan.to_argv()) as (_, port):
        with trio.fail_after(60):
            return await run_against(scenario_for(port, rate=100, duration=3))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snapshot = trio.run(_run)
    path = tmp_path_factory.mktemp("exports") / "run"
    write_results(path, snapshot, 'name = "default"\n')
    return path


@pytest.fixture(scope="module")
def snapshot(folder: Path) -> Snapshot:
    return read_results(folder)


def _report(folder: Path, *args: str) -> str:
    result = smtpbench("report", str(folder), *args, cwd=folder.parent)
    assert result.returncode == exitcodes.OK, result.stderr
    return result.stdout


def test_json_parses_and_holds_the_summary_and_thresholds(folder: Path, snapshot: Snapshot) -> None:
    data = json.loads(_report(folder, "--format", "json", "--threshold", "dropped == 0"))
    assert data["format"] == "smtpbench-results" and data["version"] == 1
    stored = json.loads((folder / "summary.json").read_text())
    assert data == {**stored, "thresholds": data["thresholds"]}
    assert data["counters"]["started"] == snapshot.counters.started == 300
    assert data["latency"]["RCPT"]["p99"] == pytest.approx(
        snapshot.histogram(Step.RCPT).percentile(99)
    )
    assert data["replies"]["RCPT"]["451"]["count"] == int(snapshot.replies[Step.RCPT, 451])
    [threshold] = data["thresholds"]
    assert threshold == {
        "threshold": "dropped == 0", "metric": "dropped", "operator": "==", "limit": 0.0,
        "measured": 0.0, "optional": False, "verdict": "passed", "passed": True,
    }  # fmt: skip


def test_csv_parses_with_one_line_per_command(folder: Path, snapshot: Snapshot) -> None:
    rows = list(csv.DictReader(io.StringIO(_report(folder, "--format", "csv"))))
    by_name = {row["command"]: row for row in rows}
    expected = [latency_label(r) for r in range(LATENCY_ROWS) if snapshot.latency_count(r)]
    assert list(by_name) == expected
    for row in range(LATENCY_ROWS):
        if not snapshot.latency_count(row):
            continue
        line = by_name[latency_label(row)]
        histogram = snapshot.histogram(row)
        assert int(line["count"]) == histogram.count
        for q in (50, 90, 99, 99.9):
            assert float(line[f"p{q:g}_s"]) == pytest.approx(histogram.percentile(q), abs=1e-9)
        assert float(line["max_s"]) == pytest.approx(histogram.maximum, abs=1e-9)
        assert line["view"] == ("service" if row < MESSAGE_LATENCY - 1 else "from intended start")
    assert int(by_name["RCPT"]["errors"]) == snapshot.step_errors(Step.RCPT) > 0
    assert by_name["message"]["errors"] == ""


def test_markdown_is_tables_ready_for_a_pull_request(folder: Path) -> None:
    text = _report(folder, "--format", "markdown", "--threshold", "p99(BDAT) < 1s optional")
    assert text.startswith("### smtpbench: default")
    assert "**Thresholds: ✅ all passed**" in text
    assert "| `p99(BDAT) < 1s optional` | no data | ✅ pass (no data, optional) |" in text
    assert "| command | count | p50 | p90 | p99 | p99.9 | max | errors |" in text
    assert "|:--|--:|--:|--:|--:|--:|--:|--:|" in text
    rcpt = next(line for line in text.splitlines() if line.startswith("| RCPT | 451 |"))
    assert rcpt.count("|") == 6
    tables = [line for line in text.splitlines() if line.startswith("|")]
    for line in tables:  # every table row is well formed: no stray pipe inside a cell
        assert line.endswith("|")


def _hdr_rank_value(counts: np.ndarray, low: float, high: float, q: float) -> float:
    """What our histogram holds at HdrHistogram's rank for q (it rounds the rank to the
    nearest sample where we take the next one up; both then read the same bucket)."""
    total = int(counts.sum())
    rank = max(1, int(q * total / 100 + 0.5))
    bucket = int(np.searchsorted(np.cumsum(counts), rank))
    return float(np.clip(BUCKET_MIDDLE[bucket], low, high))


def _decode(path: Path) -> tuple[dict[str, object], dict[str, int]]:
    reader = HistogramLogReader(str(path), new_histogram())
    totals: dict[str, object] = {}
    intervals: dict[str, int] = {}
    while (interval := reader.get_next_interval_histogram()) is not None:
        tag = interval.get_tag()
        totals.setdefault(tag, new_histogram()).add(interval)  # type: ignore[attr-defined]
        intervals[tag] = intervals.get(tag, 0) + 1
    reader.close()
    return totals, intervals


def test_hlog_decodes_with_hdrhistogram_to_our_percentiles(
    folder: Path, snapshot: Snapshot
) -> None:
    path = folder.parent / "run.hlog"
    result = smtpbench(
        "report", str(folder), "--hlog", str(path), "--format", "csv", cwd=folder.parent
    )
    assert result.returncode == exitcodes.OK, result.stderr
    totals, intervals = _decode(path)
    rows = [r for r in range(LATENCY_ROWS) if snapshot.latency_count(r)]
    assert f"{len(rows)} tags" in result.stderr
    assert sorted(totals) == sorted(tag_of(r) for r in rows)
    assert "DATA_end" in totals and "start_lag" in totals
    assert snapshot.intervals is not None
    worst = 0.0
    for row in rows:
        histogram = totals[tag_of(row)]
        counts = snapshot.latency.counts[row]
        assert histogram.get_total_count() == int(counts.sum())  # type: ignore[attr-defined]
        having = [
            snapshot.intervals.latency_counts(i)[row].any() for i in range(len(snapshot.intervals))
        ]
        assert intervals[tag_of(row)] == sum(having)
        ours_all = snapshot.histogram(row).percentiles(HLOG_PERCENTILES)
        low, high = snapshot.latency.minimum[row], snapshot.latency.maximum[row]
        for q, ours in zip(HLOG_PERCENTILES, ours_all, strict=True):
            theirs = histogram.get_value_at_percentile(q) / 1e9  # type: ignore[attr-defined]
            expected = _hdr_rank_value(counts, low, high, q)
            assert theirs == pytest.approx(expected, rel=HDR_ERROR, abs=1e-9), (row, q)
            if math.ceil(q * counts.sum() / 100) == max(1, int(q * counts.sum() / 100 + 0.5)):
                # Same rank: the log's percentile is ours, within the two histograms' error.
                assert theirs == pytest.approx(ours, rel=HDR_ERROR, abs=1e-9), (row, q)
                worst = max(worst, abs(theirs - ours) / ours)
    assert worst <= HDR_ERROR < RELATIVE_ERROR


def test_hlog_of_a_folder_without_intervals_is_one_interval(
    tmp_path: Path, snapshot: Snapshot
) -> None:
    path = tmp_path / "old.hlog"
    tags = write_hlog(path, dataclasses.replace(snapshot, intervals=None))
    totals, intervals = _decode(path)
    assert len(totals) == tags == sum(snapshot.latency_count(r) > 0 for r in range(LATENCY_ROWS))
    assert set(intervals.values()) == {1}
    assert totals["RCPT"].get_total_count() == snapshot.latency_count(Step.RCPT)  # type: ignore[attr-defined]


def test_plot_png_is_an_image_with_the_four_panels(folder: Path, snapshot: Snapshot) -> None:
    figure = build_figure(snapshot)
    assert [ax.get_title(loc="left") for ax in figure.axes] == list(PANEL_TITLES)
    for ax in figure.axes:
        assert ax.lines or ax.patches  # each panel draws something
    path = folder.parent / "run.png"
    result = smtpbench(
        "report", str(folder), "--plot", str(path), "--format", "json", cwd=folder.parent
    )
    assert result.returncode == exitcodes.OK, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 900
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_plot_html_is_a_self_contained_page(folder: Path) -> None:
    path = folder.parent / "run.html"
    result = smtpbench(
        "report", str(folder), "--plot", str(path), "--format", "csv", cwd=folder.parent
    )
    assert result.returncode == exitcodes.OK, result.stderr
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    for title in PANEL_TITLES:
        assert title.replace("(", "").split()[0] in page
    assert 'src="http' not in page and "<script" not in page


def test_a_plot_needs_a_png_or_html_name(folder: Path) -> None:
    result = smtpbench("report", str(folder), "--plot", "run.jpg", cwd=folder.parent)
    assert result.returncode == exitcodes.BAD_CONFIGURATION
    assert ".png or an .html" in result.stderr


def test_csv_and_json_figures_are_those_of_the_samples() -> None:
    # Worked out from the samples, not read back from the histograms that made the export.
    data_end = np.random.default_rng(23).lognormal(np.log(0.030), 0.7, 1_000)
    mail = [0.001, 0.002, 0.003, 0.010]  # mean 4 ms, by hand
    snapshot = snapshot_of({Step.DATA_END: data_end, Step.MAIL: mail}, elapsed=4.0)
    rows = {row["command"]: row for row in csv.DictReader(io.StringIO(latency_csv(snapshot)))}
    assert list(rows) == ["MAIL", "DATA end"]
    assert float(rows["MAIL"]["mean_s"]) == pytest.approx(0.004, abs=1e-9)
    assert float(rows["MAIL"]["min_s"]) == 0.001 and float(rows["MAIL"]["max_s"]) == 0.01
    assert float(rows["MAIL"]["rate_per_s"]) == 1.0  # 4 samples in 4 s
    line = rows["DATA end"]
    assert int(line["count"]) == 1_000
    assert float(line["mean_s"]) == pytest.approx(float(np.mean(data_end)), abs=1e-9)
    assert float(line["min_s"]) == pytest.approx(float(data_end.min()), abs=1e-9)
    assert float(line["max_s"]) == pytest.approx(float(data_end.max()), abs=1e-9)
    for q in (50, 90, 99):
        exact = float(np.percentile(data_end, q, method="inverted_cdf"))
        assert float(line[f"p{q}_s"]) == pytest.approx(exact, rel=0.01)
    summary = json.loads(report_json(snapshot))["latency"]
    assert summary["MAIL"]["mean"] == pytest.approx(0.004, abs=1e-9)
    assert summary["DATA end"]["mean"] == pytest.approx(float(np.mean(data_end)), abs=1e-9)
