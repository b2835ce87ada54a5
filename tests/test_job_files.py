"""The files a scenario names go with a cluster run: packed once, written on the host
under a folder of its own, and the scenario read there as if they had been there."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from smtpbench.engine.job_files import JobFilesError, named_paths, pack, unpack
from smtpbench.engine.process import EngineJob
from smtpbench.engine.transport import Address
from smtpbench.metrics.snapshot import RunInfo
from smtpbench.scenario import MessageFactory, parse_scenario, scenario_to_toml

INFO = RunInfo("s", "t", "load", "rate", 1.0, 1, 1, "2026-12-05T00:00:00+00:00", "0")


def scenario_with_files(folder: Path) -> str:
    (folder / "senders.csv").write_text("news@shop.test\nalerts@shop.test\n")
    (folder / "recipients.txt").write_text("user1@rcpt.test\nuser2@rcpt.test\n")
    (folder / "body.txt").write_text("Hello from a file.\n")
    scenario = parse_scenario(
        'name = "f"\n[load]\nsessions = 4\nrate = 10\n[session]\nrecipients = 1\n'
        'senders_file = "senders.csv"\nrecipients_file = "recipients.txt"\n'
        '[content]\nbody_file = "body.txt"\n',
        file=str(folder / "s.toml"),
    )
    return scenario_to_toml(scenario)


def job_of(text: str) -> EngineJob:
    return EngineJob(text, Address("127.0.0.1", 25, 2, ("127.0.0.1", 25)), 1, INFO)


def test_the_named_files_are_found_as_absolute_paths(tmp_path: Path) -> None:
    text = scenario_with_files(tmp_path)
    assert set(named_paths(text)) == {
        str((tmp_path / name).resolve()) for name in ("senders.csv", "recipients.txt", "body.txt")
    }


def test_a_host_without_the_files_reads_them_from_the_job(tmp_path: Path) -> None:
    here = tmp_path / "driver"
    here.mkdir()
    packed = pack(job_of(scenario_with_files(here)))
    assert len(packed.files) == 3
    shutil.rmtree(here)  # the host does not have them
    host = tmp_path / "host"
    job = unpack(packed, host)
    assert job.files == ()
    assert f'"{here}' not in job.scenario_toml  # every name points under the host folder
    scenario = parse_scenario(job.scenario_toml)
    factory = MessageFactory(scenario, seed=3)
    session = factory.plan_session(0)
    message = session.messages[0]
    assert message.mail_from in {"news@shop.test", "alerts@shop.test"}
    assert message.recipients[0] in {"user1@rcpt.test", "user2@rcpt.test"}
    assert b"Hello from a file." in factory.message_bytes(session, 0)
    written = [p for p in host.rglob("*") if p.is_file()]
    assert len(written) == 3
    # Private to the engine's user: a DKIM key may be among them.
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    assert stat.S_IMODE(host.stat().st_mode) == 0o700


def test_a_folder_goes_whole(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "1.eml").write_bytes(b"Subject: one\r\n\r\nbody\r\n")
    (corpus / "sub" / "2.eml").write_bytes(b"Subject: two\r\n\r\nbody\r\n")
    text = f'name = "c"\n[content.corpus]\npath = "{corpus}"\n'
    packed = pack(job_of(text))
    shutil.rmtree(corpus)
    job = unpack(packed, tmp_path / "host")
    moved = Path(named_paths(job.scenario_toml)[0])
    assert sorted(p.relative_to(moved).as_posix() for p in moved.rglob("*.eml")) == [
        "1.eml",
        "sub/2.eml",
    ]


def test_too_much_to_carry_names_the_file(tmp_path: Path) -> None:
    big = tmp_path / "body.txt"
    big.write_bytes(b"x" * 2048)
    text = f'name = "b"\n[content]\nbody_file = "{big}"\n'
    with pytest.raises(JobFilesError, match=r"body\.txt: the files the scenario names"):
        pack(job_of(text), limit=1024)


def test_a_scenario_naming_no_file_carries_nothing() -> None:
    job = job_of('name = "plain"\n[load]\nrate = 5\n')
    assert pack(job).files == ()
    assert unpack(pack(job), Path("/nonexistent-never-made")) == pack(job)
