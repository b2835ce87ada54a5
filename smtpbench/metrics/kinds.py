"""What the metrics count: latency rows, error classes, and the counters of a run.

Latency comes in two views that are always labelled apart:
- **service time**: one row per ``Step``, from sending a command (or opening the
  connection) to the complete reply: what the server costs per command;
- **from intended start**: start lag, each message's final reply and the whole
  session, measured from when the schedule said the session should start: what a
  sender feels when the server or the tool falls behind (no coordinated omission).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from smtpbench.protocol.steps import STEP_COUNT, Step

START_LAG = STEP_COUNT  # intended start to actual start of the session
MESSAGE_LATENCY = STEP_COUNT + 1  # intended start to each message's final reply
SESSION_LATENCY = STEP_COUNT + 2  # intended start to the end of the session
LATENCY_ROWS = STEP_COUNT + 3

MAX_REPLY_CODE: Final = 600


def latency_label(row: int) -> str:
    if row < STEP_COUNT:
        return Step(row).label
    return {
        START_LAG: "start lag",
        MESSAGE_LATENCY: "message",
        SESSION_LATENCY: "session",
    }[row]


class ErrorClass(IntEnum):
    """Why a step failed, in a mail admin's words."""

    REFUSED = 0  # connection refused
    RESET = 1  # connection reset or broken by the peer
    CLOSED = 2  # the server closed the connection before the session was done
    TIMEOUT = 3  # no complete reply within the step's timeout
    PROTOCOL = 4  # the server sent something that is not SMTP
    REPLY = 5  # a reply code the scenario does not count as success
    TLS = 6  # TLS handshake or certificate failure
    NETWORK = 7  # any other network error (unreachable, no route)
    CANCELLED = 8  # cut off at the end of the run's grace period

    @property
    def label(self) -> str:
        return _ERROR_LABELS[self]


_ERROR_LABELS = {
    ErrorClass.REFUSED: "connection refused",
    ErrorClass.RESET: "connection reset",
    ErrorClass.CLOSED: "closed by server",
    ErrorClass.TIMEOUT: "timeout",
    ErrorClass.PROTOCOL: "protocol error",
    ErrorClass.REPLY: "unexpected reply",
    ErrorClass.TLS: "TLS error",
    ErrorClass.NETWORK: "network error",
    ErrorClass.CANCELLED: "cancelled at stop",
}
ERROR_CLASSES = len(ErrorClass)
