"""Figures per client: sessions from a pool of source addresses (or claimed clients)
are broken down by client, in the summary, the results folder and across workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smtpbench import exitcodes
from smtpbench.metrics.client_groups import ClientGroups, ClientRow, SessionTally, add_client_rows
from smtpbench.metrics.histogram import RELATIVE_ERROR
from smtpbench.metrics.results import ResultsError, read_results
from tests.commands import TRACEBACK, smtpbench

LIMITED = """
name = "clients"
seed = 1
[target]
source = "127.0.0.2-127.0.0.5"
[load]
rate = 200
sessions = 40
[sink]
# Per client: two messages a minute, then 450 at MAIL.
client_message_rate = "2/min"
"""


def run(tmp_path: Path, *flags: str) -> tuple[dict, Path]:
    (tmp_path / "s.toml").write_text(LIMITED)
    out = tmp_path / "out"
    done = smtpbench("run", str(tmp_path / "s.toml"), "--headless", "--out", str(out), *flags)
    assert TRACEBACK not in done.stderr, done.stderr
    (folder,) = out.iterdir()
    return json.loads((folder / "summary.json").read_text()), folder


@pytest.mark.parametrize("workers", ["1", "2"])
def test_each_source_address_has_its_own_row(tmp_path: Path, workers: str) -> None:
    summary, folder = run(tmp_path, "--workers", workers)
    rows = {row["client"]: row for row in summary["clients"]}
    assert set(rows) == {f"127.0.0.{n}" for n in range(2, 6)}
    for row in rows.values():
        # Ten sessions each (session N from address N mod 4), whichever worker ran them;
        # the sink took two messages from each address and deferred the rest at MAIL.
        assert row["sessions"] == 10
        assert row["messages_accepted"] == 2 and row["messages_refused"] == 8
        assert row["replies"]["4xx"] == 8
    assert (
        sum(r["messages_accepted"] for r in rows.values())
        == (summary["counters"]["messages_accepted"])
    )
    snapshot = read_results(folder)
    assert {row.client for row in snapshot.clients} == set(rows)
    report = smtpbench("report", str(folder))
    assert report.returncode == exitcodes.OK
    assert "Per client" in report.stdout and "127.0.0.5" in report.stdout


def test_a_clients_histograms_read_as_the_samples_do() -> None:
    rng = np.random.default_rng(3)
    groups = ClientGroups()
    samples = rng.lognormal(-6, 1, 500)
    tally = SessionTally()
    for value in samples:
        tally.message_ended(True, float(value))
    groups.session_ended("198.51.100.1", False, tally)
    (row,) = groups.rows()
    for q in (50, 90, 99):
        exact = float(np.percentile(samples, q, method="inverted_cdf"))
        assert row.histogram("message").percentile(q) == pytest.approx(
            exact, rel=2 * RELATIVE_ERROR
        )


def test_rows_from_several_parts_add_up_exactly() -> None:
    a = ClientRow("x", 1, 0, 1, 0, (3, 0, 0, 0), ((10, 1),), ((5, 1),))
    b = ClientRow("x", 2, 1, 0, 2, (1, 0, 2, 1), ((10, 2), (12, 1)), ())
    c = ClientRow("y", 1, 0, 1, 0, (4, 0, 0, 0), (), ())
    x, y = add_client_rows([(a, c), (b,)])
    assert x == ClientRow("x", 3, 1, 1, 2, (4, 0, 2, 1), ((10, 3), (12, 1)), ((5, 1),))
    assert y == c


def test_a_malformed_clients_field_is_named(tmp_path: Path) -> None:
    summary, folder = run(tmp_path)
    summary["clients"][0]["message_buckets"] = [[99999999, 1]]
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ResultsError, match="malformed"):
        read_results(folder)
