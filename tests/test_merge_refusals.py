"""`merge` adds every count, so it refuses the same run twice (run ids in summary.json)
and, unless --force, runs that do not look like one load split up."""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from smtpbench import exitcodes
from smtpbench.metrics.merge_checks import check_merge
from smtpbench.metrics.results import SUMMARY_FILE, read_results
from smtpbench.protocol.steps import STEP_COUNT
from tests.commands import TRACEBACK, smtpbench


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    done = smtpbench("run", "--headless", "--sessions", "10", "--rate", "50", "--out", str(out))
    assert done.returncode == exitcodes.OK, done.stderr
    [folder] = list(out.iterdir())
    return folder


def twin(run: Path, where: Path, **info: object) -> Path:
    """A copy of ``run`` as another run of the same load (a new run id), with ``info``
    fields changed."""
    folder = where / uuid.uuid4().hex[:8]
    shutil.copytree(run, folder)
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    summary["info"].update({"run_id": uuid.uuid4().hex, **info})
    (folder / SUMMARY_FILE).write_text(json.dumps(summary))
    return folder


def merge(*folders: Path, out: Path, force: bool = False) -> tuple[int, str]:
    flags = ["--force"] if force else []
    done = smtpbench("merge", *map(str, folders), "--out", str(out), *flags)
    assert TRACEBACK not in done.stderr
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def test_a_run_id_is_in_every_summary(one_run: Path) -> None:
    run_id = json.loads((one_run / SUMMARY_FILE).read_text())["info"]["run_id"]
    assert len(run_id) == 32 and read_results(one_run).info.run_id == run_id


def test_the_same_run_twice_is_refused_even_with_force(one_run: Path, tmp_path: Path) -> None:
    for force in (False, True):
        code, said = merge(one_run, one_run, out=tmp_path / f"m{force}", force=force)
        assert code == exitcodes.BAD_CONFIGURATION
        assert "holds the same run as" in said and "count every session twice" in said
        assert not (tmp_path / f"m{force}").exists()


def test_a_merge_and_one_of_its_runs_are_refused(one_run: Path, tmp_path: Path) -> None:
    other = twin(one_run, tmp_path)
    code, said = merge(one_run, other, out=tmp_path / "merged")
    assert code == exitcodes.OK, said
    merged = read_results(tmp_path / "merged")
    assert merged.counters.started == 2 * read_results(one_run).counters.started
    assert set(merged.info.run_id.split("+")) == {
        read_results(one_run).info.run_id,
        read_results(other).info.run_id,
    }
    code, said = merge(tmp_path / "merged", other, out=tmp_path / "again")
    assert code == exitcodes.BAD_CONFIGURATION and "holds the same run as" in said


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"scenario": "another"}, "the scenarios differ"),
        ({"mode": "concurrency"}, "the load models differ"),
        ({"target": "192.0.2.1:25"}, "the targets differ"),
        ({"started_at": "2020-01-01T00:00:00+00:00"}, "did not overlap in time"),
    ],
)
def test_runs_that_differ_are_refused_without_force(
    one_run: Path, tmp_path: Path, change: dict[str, object], said: str
) -> None:
    other = twin(one_run, tmp_path, **change)
    code, text = merge(one_run, other, out=tmp_path / "refused")
    assert code == exitcodes.BAD_CONFIGURATION
    assert said in text and "--force merges them anyway" in text
    assert not (tmp_path / "refused").exists()
    code, text = merge(one_run, other, out=tmp_path / "forced", force=True)
    assert code == exitcodes.OK, text
    assert f"merged with --force although {said}" in text or said in text
    assert read_results(tmp_path / "forced").counters.started > 0


def test_a_replay_and_a_run_differ_in_kind(one_run: Path) -> None:
    run = read_results(one_run)
    replay = dataclasses.replace(
        run,
        info=dataclasses.replace(run.info, run_id=uuid.uuid4().hex),
        divergence=np.zeros((2, STEP_COUNT), dtype=np.int64),
    )
    check = check_merge([run, replay], ["a", "b"])
    assert check.twice is None
    assert check.differences == ["the kinds of run differ (a: a run; b: a replay)"]


def test_results_without_run_ids_are_not_taken_for_the_same_run(one_run: Path) -> None:
    run = read_results(one_run)
    old = dataclasses.replace(run, info=dataclasses.replace(run.info, run_id=""))
    assert check_merge([old, old], ["a", "b"]).twice is None
