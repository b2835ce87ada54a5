"""A fixed service capacity for the sink: N messages a second, queueing beyond.

The sink then behaves like a server with one delivery queue worked at a fixed
pace: each message's final reply (DATA end, or the last BDAT chunk) waits for
its turn, one every 1/N seconds. Below N messages a second every message waits
about 1/N; above it the queue grows for as long as the load lasts, and so does
the wait: a known limit to measure ``smtpbench capacity`` against.
"""

from __future__ import annotations


class ServiceCapacity:
    """One queue served at ``rate`` messages per second (first come, first served)."""

    __slots__ = ("_free_at", "rate")

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"a service capacity must be above 0 messages/s, got {rate}")
        self.rate = rate
        self._free_at = 0.0  # when the message last admitted is done

    def admit(self, now: float) -> float:
        """Queues one message arriving at ``now``: seconds until its reply is due."""
        done = max(now, self._free_at) + 1.0 / self.rate
        self._free_at = done
        return done - now
