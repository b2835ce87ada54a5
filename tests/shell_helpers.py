"""Helpers for the shell's tests: our sink in a thread of its own (the shell runs on the
test's asyncio loop), the app wired to it, typing and waiting through the pilot."""

from __future__ import annotations

import queue
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
from textual.pilot import Pilot

from smtpbench.servers.sink import Sink, SinkConfig, serve_sink
from smtpbench.shell.app import CommandLine, ShellApp
from smtpbench.shell.driver import ShellSettings

WAIT = 10.0  # seconds before a wait gives up: only to stop a hang


@contextmanager
def sink_in_thread(**options: Any) -> Iterator[Sink]:
    """Our sink on 127.0.0.1, in its own trio loop in a thread, keeping messages."""
    options.setdefault("keep_messages", True)
    started: queue.Queue[Sink | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            sink = await nursery.start(serve_sink, SinkConfig(**options))
            started.put(sink)
            while not stop.is_set():
                await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    def main() -> None:
        try:
            trio.run(serve)
        except BaseException as err:  # reported to the test through the queue
            started.put(err)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    got = started.get(timeout=WAIT)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
    finally:
        stop.set()
        thread.join(WAIT)


def shell_app(
    port: int,
    *,
    context: ssl.SSLContext | None = None,
    reply_timeout: float = 30.0,
    fixed_clock: bool = False,
) -> ShellApp:
    settings = ShellSettings(
        host="127.0.0.1",
        port=port,
        tls_context=context or ssl.create_default_context(),
        server_hostname="localhost",
        reply_timeout=reply_timeout,
    )
    if fixed_clock:
        return ShellApp(
            settings,
            clock=lambda: 1000.0,
            wall_clock=lambda: 1_780_000_000.0,
            name_shown="127.0.0.1:2525",
        )
    return ShellApp(settings)


def transcript(app: ShellApp) -> str:
    """What the transcript shows, each entry's line unwrapped."""
    return "\n".join(app.lines)


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """Pauses the pilot until ``condition`` holds; fails naming ``what`` after WAIT."""
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"waited {WAIT:g} s for {what}")


async def type_line(pilot: Pilot[Any], text: str) -> None:
    """Puts ``text`` in the command line as typed, then presses Enter."""
    line = pilot.app.main_screen.query_one(CommandLine)
    line.focus()
    line.value = ""
    line.insert_text_at_cursor(text)
    await pilot.press("enter")


async def say(pilot: Pilot[Any], text: str, reply: str) -> None:
    """Types a command and waits until ``reply`` shows in the transcript."""
    app = pilot.app
    assert isinstance(app, ShellApp)
    before = transcript(app).count(reply)
    await type_line(pilot, text)
    await wait_for(pilot, lambda: transcript(app).count(reply) > before, f"{reply!r} after {text}")
