"""Drawing the sink's faults: one seeded RNG and the per-step counters, shared by all
connections of one sink, so that a seed and a plan give the same sequence of faults
for the same sequence of commands."""

from __future__ import annotations

import random
from collections import Counter

from smtpbench.faults import FaultPlan, ReplyFault
from smtpbench.protocol.steps import Step

# Bytes for garbage lines: anything but CR and LF, so the line stays one line.
_GARBAGE_ALPHABET = bytes(b for b in range(256) if b not in (10, 13))


class FaultInjector:
    """Decides, step by step, which faults of ``plan`` hit a reply, and counts them
    in ``counts`` under keys like ``delay.DATA``, ``reply.RCPT.451``, ``stall.MAIL``."""

    __slots__ = ("_rng", "_seen", "counts", "plan", "steps")

    def __init__(self, plan: FaultPlan, rng: random.Random, counts: Counter[str]) -> None:
        self.plan = plan
        self.steps = plan.steps()  # a quick "anything to do here?" test
        self.counts = counts
        self._rng = rng
        self._seen: Counter[Step] = Counter()

    def pause(self, step: Step) -> float:
        """Seconds to hold the reply: the delay, plus the stall if this is its turn."""
        seconds = 0.0
        delay = self.plan.delays.get(step)
        if delay is not None:
            seconds += delay.low if delay.is_fixed else self._rng.uniform(delay.low, delay.high)
            self.counts[f"delay.{step.label}"] += 1
        stall = self.plan.stalls.get(step)
        if stall is not None:
            self._seen[step] += 1
            if self._seen[step] == stall.occurrence:
                seconds += stall.duration
                self.counts[f"stall.{step.label}"] += 1
        return seconds

    def disconnect(self, step: Step) -> bool:
        share = self.plan.disconnects.get(step)
        if share is None or self._rng.random() >= share:
            return False
        self.counts[f"disconnect.{step.label}"] += 1
        return True

    def garbage(self, step: Step) -> bytes | None:
        share = self.plan.garbage.get(step)
        if share is None or self._rng.random() >= share:
            return None
        self.counts[f"garbage.{step.label}"] += 1
        return garbage_line(self._rng)

    def reply(self, step: Step) -> ReplyFault | None:
        """At most one of the step's reply faults, each with its own odds."""
        faults = self.plan.replies.get(step)
        if not faults:
            return None
        draw = self._rng.random()
        total = 0.0
        for fault in faults:
            total += fault.share
            if draw < total:
                self.counts[f"reply.{step.label}.{fault.code}"] += 1
                return fault
        return None


def garbage_line(rng: random.Random) -> bytes:
    """A line no SMTP client can take for a reply: it starts with NUL and 0xFF, not a digit."""
    size = rng.randint(8, 40)
    body = bytes(rng.choice(_GARBAGE_ALPHABET) for _ in range(size))
    return b"\x00\xff" + body + b"\r\n"
