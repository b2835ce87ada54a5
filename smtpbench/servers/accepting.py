"""Accepting connections without drowning: how many a server keeps open, and what it does
when accept() fails for want of descriptors or memory.

trio's ``serve_listeners`` logs a traceback every 0.1 s while accept() fails with
EMFILE; a server whose descriptors are used up by idle clients then fills its log.
``serve_quietly`` counts each failure, says it once per kind, and waits longer each
time (up to a second) until accepting works again.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final

import trio

# Errors of accept(2) that say the process or the system is out of something for now.
CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
FIRST_PAUSE: Final = 0.01  # seconds after the first failure; doubled each time after
LONGEST_PAUSE: Final = 1.0
# Descriptors kept for what is not a client connection: listeners, logs, TLS files, the
# interpreter's own.
RESERVED_DESCRIPTORS: Final = 32

Handler = Callable[[trio.SocketStream], Awaitable[object]]


def connection_limit(asked: int | None) -> int:
    """Connections a server keeps open at once: ``asked``, or what the descriptor limit
    leaves when nothing was asked."""
    if asked is not None:
        return asked
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(1, soft - RESERVED_DESCRIPTORS)


async def serve_quietly(
    handler: Handler,
    listeners: list[trio.SocketListener],
    failures: Counter[str],
    logger: logging.Logger,
) -> None:
    """Like ``trio.serve_listeners``: each connection runs ``handler`` in a task of its
    own (and is closed after it); accept failures for want of resources are counted in
    ``failures`` by errno name, logged once per kind, and waited out with backoff."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, handler, listener, nursery, failures, logger)


async def _accept_loop(
    handler: Handler,
    listener: trio.SocketListener,
    nursery: trio.Nursery,
    failures: Counter[str],
    logger: logging.Logger,
) -> None:
    pause = FIRST_PAUSE
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as err:
                if err.errno not in CAPACITY_ERRNOS:
                    raise
                name = errno.errorcode.get(err.errno, str(err.errno))
                if not failures[name]:
                    logger.warning(
                        "accept failed: %s (%s); waiting for connections to close",
                        name,
                        os.strerror(err.errno),
                    )
                failures[name] += 1
                await trio.sleep(pause)
                pause = min(LONGEST_PAUSE, pause * 2)
                continue
            pause = FIRST_PAUSE
            nursery.start_soon(_run, handler, stream)


async def _run(handler: Handler, stream: trio.SocketStream) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)
