"""The embedded sink in its own process, so that `smtpbench run` works with no server
and the sink's work never shows up in the load engine's timing."""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import IO

import trio

READY_LINE = re.compile(rb"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class EmbeddedSinkError(Exception):
    """The embedded sink did not start: says what it printed."""


class EmbeddedSink:
    """A running ``smtpbench sink`` process on a free loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int) -> None:
        self.process = process
        self.host = host
        self.port = port

    @classmethod
    def start(
        cls,
        fault_argv: Sequence[str] = (),
        host: str = "127.0.0.1",
        timeout: float = START_TIMEOUT,
    ) -> EmbeddedSink:
        """Starts the sink and waits for its "listening on" line (blocking)."""
        listen = f"[{host}]:0" if ":" in host else f"{host}:0"
        command = [
            sys.executable, "-m", "smtpbench", "sink", "--listen", listen, "--exit-with-stdin",
            *fault_argv,
        ]  # fmt: skip
        # stderr goes to a file: a pipe nobody reads could fill up and stall the sink.
        # stdin is a pipe this process never writes to: when it dies, however it dies, the
        # pipe closes and the sink stops. A session of its own: a Ctrl-C or a closed
        # terminal reaches this process, which stops the sink when the run is over.
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=errors,
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
            assert process.stdout is not None
            first = _read_first_line(process.stdout, timeout)
            match = READY_LINE.search(first)
            if match is None:
                _stop(process)
                errors.seek(0)
                said = (first + errors.read()).decode("utf-8", "replace").strip()
                raise EmbeddedSinkError(f"the embedded sink did not start: {said or 'no output'}")
        # Keep reading what it prints (its summary at exit), so the pipe never fills.
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
        return cls(process, match.group(1).decode(), int(match.group(2)))

    def stop(self) -> None:
        _stop(self.process)


def _read_first_line(stream: IO[bytes], timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    seen = b""
    fd = stream.fileno()
    while b"\n" not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
    return seen.split(b"\n", 1)[0]


def _drain(stream: IO[bytes]) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # the sink stops on this alone; SIGTERM makes sure
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def embedded_sink(
    fault_argv: Sequence[str] = (), host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, int]]:
    """Starts ``smtpbench sink`` on a free loopback port; yields (host, port); stops it."""
    sink = await trio.to_thread.run_sync(EmbeddedSink.start, fault_argv, host)
    try:
        yield sink.host, sink.port
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(sink.stop)
