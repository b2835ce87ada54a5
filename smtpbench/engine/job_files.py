"""The files a scenario names, carried with a run to hosts that do not have them.

A scenario may name files: a body, a corpus folder, sender and recipient lists, a
DKIM key. On this machine the engine reads them where they are; a host of a cluster
run has none of them. ``pack`` puts their bytes in the engine job (read once, here);
``unpack``, on the host, writes them under a private temporary folder (mode 0700,
removed with the run) and points the scenario at them there.

The scenario crosses as TOML text in which those names are absolute paths (the loader
resolves them against the scenario's folder), so a name is found as a string value that
is the absolute path of an existing file or folder, and replaced as the same quoted
string.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smtpbench.engine.process import EngineJob
from smtpbench.scenario.writer import toml_string

MAX_BYTES = 256 * 1024 * 1024  # what a run may carry to each host


class JobFilesError(ValueError):
    """The files cannot go with the run (too big, unreadable); names the file."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def named_paths(scenario_toml: str) -> list[str]:
    """The absolute paths of existing files and folders the scenario names, in order."""
    seen: list[str] = []
    for text in _strings(tomllib.loads(scenario_toml)):
        if text not in seen and os.path.isabs(text) and os.path.exists(text):
            seen.append(text)
    return seen


def pack(job: EngineJob, limit: int = MAX_BYTES) -> EngineJob:
    """The job with the bytes of every file its scenario names (a folder's files, with
    their paths under it)."""
    files: list[tuple[str, bytes]] = []
    total = 0
    for root in named_paths(job.scenario_toml):
        top = Path(root)
        members = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in members:
            try:
                data = path.read_bytes()
            except OSError as err:
                raise JobFilesError(
                    f"{path}: cannot be read to send it with the run: {err.strerror or err}"
                ) from None
            total += len(data)
            if total > limit:
                raise JobFilesError(
                    f"{path}: the files the scenario names come to more than "
                    f"{limit // (1024 * 1024)} MiB, too much to send to every host"
                )
            files.append((str(path), data))
    return dataclasses.replace(job, files=tuple(files))


def unpack(job: EngineJob, folder: Path) -> EngineJob:
    """Writes the job's files under ``folder`` and returns the job pointing at them."""
    if not job.files:
        return job
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in job.files:
        target = folder / name.lstrip("/\\")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(target, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as stream:
            stream.write(data)
    text = job.scenario_toml
    for root in _roots(job):
        moved = str(folder / root.lstrip("/\\"))
        text = text.replace(toml_string(root), toml_string(moved))
    return dataclasses.replace(job, scenario_toml=text, files=())


def _roots(job: EngineJob) -> list[str]:
    """The names in the scenario whose files the job carries (read from its text: on a
    host, they need not exist)."""
    names = {name for name, _ in job.files}
    roots = []
    for text in _strings(tomllib.loads(job.scenario_toml)):
        if text in roots or not os.path.isabs(text):
            continue
        prefix = text.rstrip("/\\") + os.sep
        if text in names or any(name.startswith(prefix) for name in names):
            roots.append(text)
    return roots
