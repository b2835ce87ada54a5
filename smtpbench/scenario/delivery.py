"""How the client treats deferrals: ``[delivery]``.

``mode = "open"`` (the default) is the load tester's open model: every reply is
counted as it comes and nothing is sent again, so a 4xx is a failure of that
message. ``mode = "mta"`` makes the client behave like a sending MTA: a message
deferred with a 4xx (at MAIL, RCPT, DATA or its end), or caught in a session that
a 421, a refused connection or a broken one ended, goes back to a queue and is
tried again on a new connection after a backoff that doubles from ``first_retry``
to ``max_retry`` (Postfix's ``minimal_backoff_time`` and
``maximal_backoff_time``), until ``max_age`` after its intended start
(``maximal_queue_lifetime``), when it expires. Only the recipients still owed go
again; 5xx replies are final. With ``concurrency_feedback``, sessions in flight
start at ``initial_concurrency`` and move like Postfix's destination concurrency
feedback: one more after each session that delivered, one less after each that a
421, a refused or broken connection or a timeout ended, never below one nor
above the load's cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DeliveryMode = Literal["open", "mta"]
DELIVERY_MODES: Final[tuple[DeliveryMode, ...]] = ("open", "mta")


@dataclass(frozen=True, slots=True)
class Delivery:
    mode: DeliveryMode = "open"
    first_retry: float = 1.0
    max_retry: float = 30.0
    max_age: float = 300.0
    concurrency_feedback: bool = True
    initial_concurrency: int = 5

    def __post_init__(self) -> None:
        if self.mode not in DELIVERY_MODES:
            raise ValueError(f"mode is one of {', '.join(DELIVERY_MODES)}, got {self.mode!r}")
        if not 0 < self.first_retry <= self.max_retry:
            raise ValueError(
                f"first_retry is above 0 and at most max_retry, got {self.first_retry:g}s "
                f"and {self.max_retry:g}s"
            )
        if not self.max_age > 0:
            raise ValueError(f"max_age is above 0, got {self.max_age:g}s")
        if self.initial_concurrency < 1:
            raise ValueError(f"initial_concurrency is at least 1, got {self.initial_concurrency}")

    @property
    def retries(self) -> bool:
        return self.mode == "mta"

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th attempt failed for now."""
        return min(self.max_retry, self.first_retry * 2 ** max(0, attempts - 1))


OPEN_DELIVERY: Final = Delivery()

__all__ = ["DELIVERY_MODES", "OPEN_DELIVERY", "Delivery"]
