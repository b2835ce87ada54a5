"""Real SMTP servers on loopback for the tests: aiosmtpd in a thread, Postfix's
smtp-sink in a process. Every one binds 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"
Handler = TypeVar("Handler")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout}s")


@dataclass
class CountingHandler:
    """aiosmtpd handler that counts what it accepts."""

    messages: int = 0
    recipients: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.messages += 1
            self.recipients += len(envelope.rcpt_tos)  # type: ignore[attr-defined]
        return "250 2.0.0 OK"


@contextmanager
def aiosmtpd_serving(handler: Handler) -> Iterator[tuple[int, Handler]]:
    """aiosmtpd in a thread on a free loopback port, with the handler given."""
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


def aiosmtpd_server() -> AbstractContextManager[tuple[int, CountingHandler]]:
    return aiosmtpd_serving(CountingHandler())


def postfix_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/lib/postfix/sbin"):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class PostfixSink:
    port: int
    dump_dir: Path

    def delivered(self) -> int:
        """Messages smtp-sink dumped: one file per accepted transaction."""
        return sum(1 for path in self.dump_dir.rglob("*") if path.is_file())

    def delivered_once(self, expected: int, timeout: float = 10.0) -> int:
        """``delivered()`` once smtp-sink has dumped ``expected`` messages (it writes each
        file after replying, so a run can end before the last one is there), or once
        ``timeout`` is over: then the count falls short and the test says so."""
        deadline = time.monotonic() + timeout
        while (count := self.delivered()) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return count


@contextmanager
def postfix_smtp_sink(extra: tuple[str, ...] = ()) -> Iterator[PostfixSink]:
    binary = postfix_binary("smtp-sink")
    if binary is None:
        raise RuntimeError("smtp-sink is not installed (Debian package postfix)")
    # Run as root, smtp-sink drops to "nobody" before writing its dump files, so the
    # folder and every folder above it must be reachable for that user.
    dump_dir = Path(tempfile.mkdtemp(prefix="smtpbench-smtp-sink-"))
    os.chmod(dump_dir, 0o777)
    port = free_port()
    command = [binary, "-d", f"{dump_dir}/%H%M%S.", *extra]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]
    command += [f"{LOOPBACK}:{port}", "256"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield PostfixSink(port, dump_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(dump_dir, ignore_errors=True)
