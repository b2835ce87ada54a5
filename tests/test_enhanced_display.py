"""Enhanced status codes shown beside the basic codes: the order of the rows worked out
by hand on a snapshot made by hand, and a real run's results read back by ``report`` at
80 columns outside a terminal (table, markdown, replies CSV, JSON), nothing cut short."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.metrics.results import read_results
from smtpbench.metrics.snapshot import enhanced_counts
from smtpbench.protocol.enhanced import enhanced_meaning
from smtpbench.protocol.steps import Step
from smtpbench.report.reply_rows import reply_rows
from smtpbench.report.summary import replies_table
from tests.known_snapshot import snapshot_of
from tests.test_cli import ROOT, only_results_folder, smtpbench

# RCPT: 250 x 90, 450 x 6, 451 x 4 (100 replies). Enhanced: 2.1.5 x 88, 4.7.1 x 3,
# 4.2.1 x 7 (more than the 450s: it came with 451s too, which the counts cannot tell),
# and a 5.1.1 x 1 with no 5xx code at all (a server that broke the rules).
HAND = dataclasses.replace(
    snapshot_of({}, replies={(Step.RCPT, 250): 90, (Step.RCPT, 450): 6, (Step.RCPT, 451): 4}),
    enhanced=enhanced_counts(
        {
            (int(Step.RCPT), "2.1.5"): 88,
            (int(Step.RCPT), "4.7.1"): 3,
            (int(Step.RCPT), "4.2.1"): 7,
            (int(Step.RCPT), "5.1.1"): 1,
        }
    ),
)


def test_enhanced_codes_follow_the_basic_codes_of_their_class_most_frequent_first() -> None:
    rows = [(r.code, r.count, r.share, r.enhanced) for r in reply_rows(HAND, Step.RCPT)]
    assert rows == [
        ("250", 90, 0.90, False),
        ("2.1.5", 88, 0.88, True),
        ("450", 6, 0.06, False),
        ("451", 4, 0.04, False),
        ("4.2.1", 7, 0.07, True),
        ("4.7.1", 3, 0.03, True),
        ("5.1.1", 1, 0.01, True),
    ]
    assert reply_rows(HAND, Step.MAIL) == []


def test_enhanced_meanings_are_rfc_3463s() -> None:
    assert enhanced_meaning("4.7.1") == "Delivery not authorized, message refused"
    assert enhanced_meaning("5.1.1") == "Bad destination mailbox address"
    assert enhanced_meaning("2.1.5") == "Destination address valid"
    assert enhanced_meaning("4.2.2") == "Mailbox full"
    assert enhanced_meaning("5.7.999") == "Security or policy status"  # by its subject


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run against the embedded sink refusing 30% of RCPTs with 450 4.2.1."""
    base = tmp_path_factory.mktemp("enhanced")
    scenario = base / "greylist.toml"
    scenario.write_text(
        'name = "greylist"\n[load]\nrate = "40/s"\nduration = "1s"\n'
        '[sink]\nreply = { RCPT = "450:30%" }\n'
    )
    out = base / "results"
    run = smtpbench("run", str(scenario), "--out", str(out), cwd=ROOT)
    assert run.returncode in (exitcodes.OK, exitcodes.THRESHOLDS_FAILED), run.stderr
    return only_results_folder(out)


def _report(folder: Path, *args: str) -> str:
    """``report`` as a CI log reads it: 80 columns, stdout not a terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "report", str(folder), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == exitcodes.OK, done.stderr
    return done.stdout


def _rcpt(folder: Path) -> dict[int, int]:
    return read_results(folder).reply_codes(Step.RCPT)


def test_report_at_80_columns_shows_enhanced_codes_under_their_basic_code(folder: Path) -> None:
    rcpt = _rcpt(folder)
    assert rcpt[450] > 0 and rcpt[250] > 0
    total = sum(rcpt.values())
    text = _report(folder)
    assert "…" not in text
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Reply codes per command")))
    table = [line for line in lines[start:] if line.startswith("│")]
    cells = [[cell.strip() for cell in line.strip("│").split("│")] for line in table]
    rcpt_at = next(i for i, row in enumerate(cells) if row[0] == "RCPT")
    # The sink's documented replies: 250 2.1.5 and 450 4.2.1, so the counts match.
    assert cells[rcpt_at : rcpt_at + 4] == [
        ["RCPT", "250", "Requested mail action okay, completed", f"{rcpt[250]:,}",
         f"{rcpt[250] / total:.1%}"],
        ["", "2.1.5", "Destination address valid", f"{rcpt[250]:,}", f"{rcpt[250] / total:.1%}"],
        ["", "450", "Mailbox unavailable (busy or temporarily blocked)", f"{rcpt[450]:,}",
         f"{rcpt[450] / total:.1%}"],
        ["", "4.2.1", "Mailbox disabled, not accepting messages", f"{rcpt[450]:,}",
         f"{rcpt[450] / total:.1%}"],
    ]  # fmt: skip
    # The greeting and EHLO carry no enhanced code: one row each.
    banner_at = next(i for i, row in enumerate(cells) if row[0] == "banner")
    assert cells[banner_at + 1][0] == "EHLO" and cells[banner_at + 2][0] == "MAIL"
    assert cells[banner_at + 3][:2] == ["", "2.1.0"]


def test_markdown_csv_and_json_carry_the_enhanced_codes(folder: Path) -> None:
    rcpt = _rcpt(folder)
    total = sum(rcpt.values())
    markdown = _report(folder, "--format", "markdown")
    row = f"| RCPT | *4.2.1* | *Mailbox disabled, not accepting messages* | {rcpt[450]:,} |"
    assert row in markdown
    rows = list(csv.DictReader(io.StringIO(_report(folder, "--format", "replies-csv"))))
    enhanced = {(r["command"], r["code"]): r for r in rows if r["kind"] == "enhanced"}
    assert int(enhanced["RCPT", "4.2.1"]["count"]) == rcpt[450]
    assert float(enhanced["RCPT", "4.2.1"]["share"]) == pytest.approx(rcpt[450] / total)
    assert int(enhanced["RCPT", "2.1.5"]["count"]) == rcpt[250]
    basic = [(r["command"], r["code"]) for r in rows if r["kind"] == "basic"]
    assert ("banner", "220") in basic and ("RCPT", "450") in basic
    data = json.loads(_report(folder, "--format", "json"))
    assert data["enhanced"]["RCPT"] == {"2.1.5": rcpt[250], "4.2.1": rcpt[450]}
    assert "banner" not in data["enhanced"]


def test_the_header_names_rfc_3463_only_when_enhanced_codes_are_shown(folder: Path) -> None:
    assert "meaning (RFC 5321; enhanced: RFC 3463)" in _report(folder)
    plain = dataclasses.replace(HAND, enhanced=())
    console = Console(width=120, record=True)
    console.print(replies_table(plain))
    text = console.export_text()
    assert "meaning (RFC 5321)" in text and "3463" not in text
    assert re.search(r"│\s+4\.7\.1\s+│", text) is None
