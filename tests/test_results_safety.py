"""Results folders: checked before the run, every file whole or absent (a full disk),
and a damaged metrics.npz named in report, compare and merge."""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpbench import exitcodes
from smtpbench.files import OutputError, check_output_folder, write_atomically
from smtpbench.metrics.results import METRICS_FILE, SUMMARY_FILE, ResultsError, read_results
from tests.commands import TRACEBACK, smtpbench


@contextlib.contextmanager
def small_disk(tmp_path: Path, free_kib: int) -> Iterator[Path]:
    """A 64 KiB tmpfs with ``free_kib`` left; skips where mounting is not allowed."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (test_write_atomically_on_enospc stands in)")
    try:
        (mount / "filler").write_bytes(b"\0" * ((64 - free_kib) * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_an_output_folder_that_cannot_be_made_stops_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    run = smtpbench("run", "--headless", "--sessions", "5", "--out", "/proc/nope")
    assert run.returncode == exitcodes.BAD_CONFIGURATION
    assert run.stderr.strip().startswith("error: --out /proc/nope: cannot create the folder")
    assert "Service time" not in run.stdout  # nothing ran
    assert TRACEBACK not in run.stderr


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_folder(taken)
    run = smtpbench("replay", "missing.jsonl", "--out", str(taken))
    assert run.returncode == exitcodes.BAD_CONFIGURATION
    assert TRACEBACK not in run.stderr


def test_a_full_disk_writes_no_half_file_prints_the_summary_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path, free_kib=12) as disk:
        run = smtpbench("run", "--headless", "--sessions", "20", "--rate", "50", "--out", str(disk))
        assert run.returncode == exitcodes.RESULTS_NOT_WRITTEN, run.stderr
        assert TRACEBACK not in run.stderr + run.stdout
        assert "Service time per command" in run.stdout  # the summary anyway
        said = " ".join(run.stdout.split())
        assert "results not written whole:" in said and "No space left on device" in said
        [folder] = [p for p in disk.iterdir() if p.is_dir()]
        assert not (folder / SUMMARY_FILE).exists() or read_results(folder)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".partial")]
        report = smtpbench("report", str(folder))
        assert report.returncode == exitcodes.BAD_CONFIGURATION
        assert report.stderr.count("\n") == 1 and TRACEBACK not in report.stderr


def test_write_atomically_on_enospc_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / SUMMARY_FILE
    target.write_text("the old one")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OutputError, match=r"summary\.json: could not be written: No space left"):
        write_atomically(target, "the new one")
    assert target.read_text() == "the old one"
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    run = smtpbench("run", "--headless", "--sessions", "10", "--rate", "50", "--out", str(out))
    assert run.returncode == exitcodes.OK, run.stderr
    [folder] = list(out.iterdir())
    return folder


@pytest.mark.parametrize("keep", [0, 100, 1000])
def test_a_truncated_metrics_file_is_named_in_report_compare_and_merge(
    finished_run: Path, tmp_path: Path, keep: int
) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(finished_run, damaged)
    metrics = damaged / METRICS_FILE
    metrics.write_bytes(metrics.read_bytes()[:keep])
    with pytest.raises(ResultsError, match=re.escape(str(metrics))):
        read_results(damaged)
    for args in (
        ("report", str(damaged)),
        ("compare", str(finished_run), str(damaged)),
        ("merge", str(finished_run), str(damaged), "--out", str(tmp_path / "merged")),
    ):
        done = smtpbench(*args)
        assert done.returncode == exitcodes.BAD_CONFIGURATION, args
        assert TRACEBACK not in done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"error: {metrics}: ")


def test_a_folder_written_before_xclient_was_a_step_reads_as_it_was() -> None:
    # Written by the version before XCLIENT became a step (18 steps): every figure reads
    # back the same, and the new step is there, empty.
    import json

    from smtpbench.metrics.kinds import MESSAGE_LATENCY, SESSION_LATENCY, START_LAG
    from smtpbench.protocol.steps import Step
    from smtpbench.report.live import recent_target

    folder = Path(__file__).resolve().parent / "data" / "results-before-xclient"
    summary = json.loads((folder / "summary.json").read_text())
    snapshot = read_results(folder)
    assert snapshot.counters.messages_accepted == summary["counters"]["messages_accepted"] == 20
    for step in (Step.CONNECT, Step.MAIL, Step.DATA_END, Step.QUIT):
        row = summary["latency"][step.label]
        assert snapshot.histogram(step).count == row["count"] == 20
        assert snapshot.histogram(step).percentile(50) == pytest.approx(row["p50"], abs=1e-6)
    # The rows after the steps moved down by one and kept their samples.
    assert snapshot.histogram(START_LAG).count == 20
    assert snapshot.histogram(MESSAGE_LATENCY).count == 20
    assert snapshot.histogram(SESSION_LATENCY).count == 20
    assert snapshot.histogram(Step.XCLIENT).count == 0
    assert snapshot.replies[Step.QUIT][221] == 20 and not snapshot.replies[Step.XCLIENT].any()
    # Written before the series kept the sessions scheduled: not known, not zero.
    assert (snapshot.series.column("scheduled") == -1).all()
    assert recent_target(snapshot) == snapshot.target_rate  # so live figures fall back
    assert snapshot.series.column("started").sum() == 20
    done = smtpbench("report", str(folder))
    assert done.returncode == exitcodes.OK and TRACEBACK not in done.stderr


def test_an_array_header_that_does_not_parse_is_named(tmp_path: Path) -> None:
    # numpy reads an array's header with Python's tokenizer: an unclosed bracket there
    # fails in the tokenizer, not in numpy's own checks. Still one located error.
    import warnings
    import zipfile as zip_module

    folder = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "results-before-xclient", folder)
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (5, "
    header += b" " * (118 - len(header)) + b"\n"
    broken = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(40)
    with zip_module.ZipFile(folder / METRICS_FILE, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a second member of the same name, on purpose
        archive.writestr("unit.npy", broken)  # read in place of the first
    with pytest.raises(ResultsError, match=re.escape(METRICS_FILE)):
        read_results(folder)
