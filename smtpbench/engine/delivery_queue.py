"""The MTA-like client's queue (``[delivery] mode = "mta"``, ``scenario/delivery.py``):
messages deferred, waiting for their next attempt, and the destination concurrency
window that sessions in flight may not exceed.

Sessions put deferred messages here (``Session``, when a transaction ends with
recipients still owed, or when a 421 or a connection failure ends a session with
messages in it); the run (``LoadRun``) takes those due and starts a session for
each, and counts what is left when it ends as still queued.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from smtpbench.metrics.kinds import ErrorClass
from smtpbench.protocol.steps import Step
from smtpbench.scenario.delivery import Delivery

if TYPE_CHECKING:
    from smtpbench.metrics.recorder import Recorder


@dataclass(slots=True)
class QueuedMessage:
    """A message owed to some of its recipients still."""

    plan: Any  # the SessionPlan it was planned in: its content and identity come from there
    index: int  # its number in that plan
    envelope: Any  # its MessagePlan, with only the recipients still owed
    origin: float  # the first attempt's intended start (trio time)
    attempts: int  # attempts made so far
    delivered: int  # recipients that took it on earlier attempts (0: none did)


class DeliveryQueue:
    """Deferred messages by due time, and the concurrency window."""

    def __init__(self, delivery: Delivery, recorder: Recorder, cap: int) -> None:
        self.delivery = delivery
        self.recorder = recorder
        self.cap = cap
        self.window = (
            min(cap, delivery.initial_concurrency) if delivery.concurrency_feedback else cap
        )
        self._heap: list[tuple[float, int, QueuedMessage]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def defer(self, item: QueuedMessage, now: float) -> None:
        """``item`` failed for now after ``item.attempts`` attempts: queued again after
        the backoff, or expired when that would pass its maximum age."""
        self.recorder.messages_deferred += 1
        due = now + self.delivery.backoff(item.attempts)
        if due - item.origin > self.delivery.max_age:
            self.recorder.messages_expired += 1
            return
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, item))

    def due_at(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def take(self) -> QueuedMessage:
        return heapq.heappop(self._heap)[2]

    def left_at_end(self) -> int:
        """The run is over: what is still queued is counted as such, and forgotten."""
        left = len(self._heap)
        self.recorder.messages_queued += left
        self._heap.clear()
        return left

    # -- destination concurrency feedback ---------------------------------------------

    def session_delivered(self) -> None:
        if self.delivery.concurrency_feedback and self.window < self.cap:
            self.window += 1

    def session_failed(self) -> None:
        if self.delivery.concurrency_feedback and self.window > 1:
            self.window -= 1


# Connection troubles a sending MTA retries after: the server was busy or unreachable.
TRANSIENT_ERRORS: Final = frozenset(
    {ErrorClass.REFUSED, ErrorClass.RESET, ErrorClass.NETWORK, ErrorClass.TIMEOUT,
     ErrorClass.CLOSED}
)  # fmt: skip
_BEFORE_MAIL: Final = frozenset(
    {Step.BANNER, Step.EHLO, Step.HELO, Step.LHLO, Step.STARTTLS, Step.AUTH}
)


class Attempt:
    """One session's transactions under MTA-like delivery: the replies of the message
    under way, and what becomes of it when it ends (``settle``) or when the session
    ends early (``unfinished``)."""

    __slots__ = (
        "current",
        "data",
        "delivered_any",
        "delivered_before",
        "delivered_to",
        "final",
        "mail",
        "number",
        "origin",
        "plan",
        "queue",
        "rcpts",
        "transactions",
        "tries",
        "trouble",
    )

    def __init__(
        self,
        queue: DeliveryQueue,
        plan: Any,
        transactions: tuple[tuple[int, Any], ...],
        origin: float,
        tries: int,
        delivered_before: int,
    ) -> None:
        self.queue = queue
        self.plan = plan
        self.transactions = transactions
        self.origin = origin
        self.tries = tries  # this attempt's number: 1 for a message's first
        self.delivered_before = delivered_before  # recipients earlier attempts delivered to
        self.delivered_to = 0  # of the message settled last: recipients, all attempts
        self.delivered_any = False  # this session delivered something
        self.trouble = False  # a 4xx or 421 before any transaction: try again later
        self.current: tuple[int, Any] | None = None
        self.number = 0  # transactions begun
        self.mail = self.data = self.final = 0
        self.rcpts: list[int] = []

    def begun(self) -> None:
        self.current = (
            self.transactions[self.number] if self.number < len(self.transactions) else None
        )
        self.number += 1
        self.mail = self.data = self.final = 0
        self.rcpts = []

    def reply(self, step: Step, code: int) -> None:
        if step is Step.RCPT:
            self.rcpts.append(code)
        elif step is Step.MAIL:
            self.mail = code
        elif step is Step.DATA:
            self.data = code
        elif step is Step.DATA_END:
            if not self.final or code // 100 == 2:  # LMTP: taken if any recipient took it
                self.final = code
        elif step in _BEFORE_MAIL and (code == 421 or code // 100 == 4):
            self.trouble = True
        if code == 421:
            self.trouble = True

    def settle(self, now: float) -> bool | None:
        """The message under way ended: True delivered (to every recipient not refused for
        good), False refused for good, None deferred (queued again for the rest)."""
        current = self.current
        self.current = None
        if current is None:
            return False
        index, message = current
        recipients = message.recipients
        owed: list[str] = []
        taken: list[str] = []
        delivered = False
        if self.mail // 100 != 2:
            if self.mail // 100 != 5:  # 4xx, or no reply (the connection broke)
                owed = list(recipients)
        else:
            taken = [r for r, code in zip(recipients, self.rcpts, strict=False) if code // 100 == 2]
            owed = [r for r, code in zip(recipients, self.rcpts, strict=False) if code // 100 == 4]
            owed += recipients[len(self.rcpts) :]  # no reply came for these
            if taken:
                final = self.final or (self.data if self.data and self.data != 354 else 0)
                if final // 100 == 2:
                    delivered = True
                elif final // 100 != 5:
                    owed += taken
        if delivered:
            self.delivered_any = True
        self.delivered_to = self.delivered_before + (len(taken) if delivered else 0)
        queue = self.queue
        if owed:
            queue.defer(
                QueuedMessage(
                    self.plan,
                    index,
                    _with_recipients(message, tuple(owed)),
                    self.origin,
                    self.tries,
                    self.delivered_to,
                ),
                now,
            )
            return None
        if delivered and self.tries == 1 and not self.delivered_before:
            queue.recorder.messages_first_attempt += 1
        return delivered or self.delivered_before > 0

    def unfinished(self, in_flight: bool, now: float) -> int:
        """The session ended early for a reason a sending MTA retries after: the message
        under way (if ``in_flight``) and those not begun go back to the queue. How many
        of those had begun (0 or 1)."""
        requeued = 0
        if in_flight and self.current is not None:
            self.settle(now)  # no reply to what was under way: owed, all of it
            requeued = 1
        for index, message in self.transactions[self.number :]:
            # A message tried again is its session's only one: what it delivered before
            # stays delivered (a first attempt's have none).
            self.queue.defer(
                QueuedMessage(
                    self.plan, index, message, self.origin, self.tries, self.delivered_before
                ),
                now,
            )
        return requeued


def _with_recipients(message: Any, recipients: tuple[str, ...]) -> Any:
    return dataclasses.replace(message, recipients=recipients, rset_before=False)


__all__ = ["TRANSIENT_ERRORS", "Attempt", "DeliveryQueue", "QueuedMessage"]
