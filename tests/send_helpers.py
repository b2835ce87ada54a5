"""Running ``smtpbench send`` as a user does (a child process) and reading what it said."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from aiosmtpd.controller import Controller

from tests.servers import LOOPBACK, free_port

LIMIT = 60  # seconds: only to stop a hang


@dataclass
class Sent:
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    @property
    def commands(self) -> list[str]:
        """The lines the transcript says were sent, connect and content left out."""
        return [
            entry["sent"]
            for entry in self.report["transcript"]
            if entry["sent"] is not None and "content_bytes" not in entry
        ]


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPBENCH_")}
    env.update(extra or {})
    return env


async def send(*args: str, env: Mapping[str, str] | None = None, stdin: bytes = b"") -> Sent:
    """``smtpbench send ARGS`` in a child process, from a trio test."""
    with trio.fail_after(LIMIT):
        done = await trio.run_process(
            [sys.executable, "-m", "smtpbench", "send", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=stdin,
            env=_env(env),
        )
    return Sent(done.returncode, done.stdout.decode(), done.stderr.decode())


def send_blocking(*args: str, env: Mapping[str, str] | None = None) -> Sent:
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "send", *args],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        env=_env(env),
        check=False,
    )
    return Sent(done.returncode, done.stdout, done.stderr)


@dataclass
class LoggingHandler:
    """aiosmtpd handler that keeps every envelope whole: options and content."""

    envelopes: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        with self.lock:
            self.envelopes.append(envelope)
        return "250 2.0.0 OK"


class _Lines(logging.Handler):
    """aiosmtpd logs every command line it reads ("peer >> b'LINE'") on mail.log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%r >> %r":
            line = record.args[1]  # type: ignore[index]
            self.lines.append(line.decode("utf-8", "replace") if isinstance(line, bytes) else line)


@contextmanager
def logging_aiosmtpd(**options: Any) -> Iterator[tuple[int, LoggingHandler, list[str]]]:
    """aiosmtpd on loopback; yields its port, its envelopes and the command lines it read."""
    handler = LoggingHandler()
    lines = _Lines()
    logger = logging.getLogger("mail.log")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port, **options)
    controller.start()
    try:
        yield port, handler, lines.lines
    finally:
        controller.stop()
        logger.removeHandler(lines)
        logger.setLevel(old_level)
