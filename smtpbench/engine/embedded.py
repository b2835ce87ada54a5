"""The embedded sink in its own process, so that `smtpbench run` works with no server
and the sink's work never shows up in the load engine's timing."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

READY_LINE = re.compile(rb"listening on \[?([^\]\s]+?)\]?:(\d+)\s*$")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class EmbeddedSinkError(Exception):
    """The embedded sink did not start: says what it printed."""


@asynccontextmanager
async def embedded_sink(
    fault_argv: Sequence[str] = (), host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, int]]:
    """Starts ``smtpbench sink`` on a free loopback port; yields (host, port); stops it."""
    command = [
        sys.executable,
        "-m",
        "smtpbench",
        "sink",
        "--listen",
        f"[{host}]:0" if ":" in host else f"{host}:0",
        *fault_argv,
    ]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        address = await _wait_ready(process)
        yield address
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _wait_ready(process: trio.Process) -> tuple[str, int]:
    assert process.stdout is not None
    seen = b""
    with trio.move_on_after(START_TIMEOUT):
        while b"\n" not in seen:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                break
            seen += chunk
    first = seen.split(b"\n", 1)[0]
    match = READY_LINE.search(first)
    if match is None:
        errors = b""
        if process.stderr is not None and process.poll() is not None:
            errors = await process.stderr.receive_some(65536)
        message = (first or errors).decode("utf-8", "replace").strip() or "no output"
        raise EmbeddedSinkError(f"the embedded sink did not start: {message}")
    return match.group(1).decode(), int(match.group(2))


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
