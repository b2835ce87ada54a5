"""One command's replies as rows: each basic code, and beside it the enhanced status codes
of its class, as the summary table, the markdown and the replies CSV show them.

The recorder counts enhanced codes per command, not per basic code, so an enhanced
code is listed under the basic codes of its class (``4.7.1`` under 450 and 451, after
the last of them); its share is of all the command's replies, as ``rate(4.7.1, RCPT)``
measures it. Replies without an enhanced code are counted in their basic row only.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtpbench.metrics.snapshot import Snapshot
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.enhanced import enhanced_meaning
from smtpbench.protocol.steps import Step


@dataclass(frozen=True, slots=True)
class ReplyRow:
    step: Step
    code: str  # "250", or an enhanced code "2.1.5"
    meaning: str
    count: int
    share: float  # of every reply to the command
    enhanced: bool  # an enhanced status code, listed under the basic codes of its class

    @property
    def reply_class(self) -> int:
        return int(self.code[0])


def reply_rows(snapshot: Snapshot, step: Step) -> list[ReplyRow]:
    """The command's basic codes in order, each class followed by its enhanced codes
    (most frequent first)."""
    codes = snapshot.reply_codes(step)
    total = sum(codes.values())
    by_class: dict[str, list[tuple[str, int]]] = {}
    for code, n in sorted(snapshot.enhanced_codes(step).items(), key=lambda kv: (-kv[1], kv[0])):
        by_class.setdefault(code[0], []).append((code, n))

    def share(n: int) -> float:
        return n / total if total else 0.0

    def enhanced(cls: str) -> list[ReplyRow]:
        return [
            ReplyRow(step, code, enhanced_meaning(code), n, share(n), True)
            for code, n in by_class.pop(cls, [])
        ]

    rows: list[ReplyRow] = []
    ordered = sorted(codes)
    for i, code in enumerate(ordered):
        rows.append(
            ReplyRow(step, str(code), reply_meaning(code), codes[code], share(codes[code]), False)
        )
        if i + 1 == len(ordered) or ordered[i + 1] // 100 != code // 100:
            rows += enhanced(str(code // 100))
    for cls in sorted(by_class):  # a class with no basic code: not from a well-formed reply
        rows += enhanced(cls)
    return rows


def all_reply_rows(snapshot: Snapshot) -> list[ReplyRow]:
    return [row for step in Step for row in reply_rows(snapshot, step)]
