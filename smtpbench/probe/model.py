"""What a probe found: one ``Check`` per step, each with its verdict and plain words.

A check is what an admin does by hand in a telnet session, written down: the
command sent, the reply, what the reply means, and a verdict:

- ``pass``: as it should be;
- ``warn``: works, but tells attackers something or is weaker than it could be;
- ``fail``: wrong in a way that matters (an open relay, a certificate that is not
  valid, a server that does not answer); any fail makes the exit code non-zero;
- ``info``: a fact, no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "info"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "info")
Severity = Literal["high", "medium", "low"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One command and its reply, as shown; ``command`` is None for the banner."""

    command: str | None
    code: int | None  # None: no reply (timeout, connection closed)
    reply: tuple[str, ...] = ()  # the reply's lines, text only
    seconds: float | None = None
    meaning: str = ""  # the code's meaning in RFC 5321's words

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "code": self.code,
            "reply": list(self.reply),
            "seconds": self.seconds,
            "meaning": self.meaning,
        }


@dataclass(frozen=True, slots=True)
class Check:
    key: str  # stable name for programs: "banner", "open_relay", ...
    title: str
    status: Status
    summary: str  # the verdict in plain words
    exchanges: tuple[Exchange, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    # For findings: how much it matters when it is not a pass ("high", "medium", "low"),
    # and where to read about it (an RFC section, a CVE, the server's documentation).
    severity: Severity | None = None
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "check": self.key,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "exchanges": [exchange.to_dict() for exchange in self.exchanges],
            "details": self.details,
        }
        if self.severity is not None:
            out["severity"] = self.severity
        if self.reference is not None:
            out["reference"] = self.reference
        return out


@dataclass(frozen=True, slots=True)
class ProbeReport:
    target: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for check in self.checks)

    def counts(self) -> dict[Status, int]:
        counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def check(self, key: str) -> Check | None:
        for check in self.checks:
            if check.key == key:
                return check
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": not self.failed,
            "counts": self.counts(),
            "checks": [check.to_dict() for check in self.checks],
        }
