"""The steps of an SMTP session that smtpbench times and counts, one index each.

A step is what a mail admin would point at in a transcript: the TCP connect,
the banner, each command, and the end of the message data (the final dot or
the last BDAT chunk), whose reply is the one that says whether the message was
taken. Metrics index numpy arrays by ``Step``; the labels are what people read.
"""

from __future__ import annotations

from enum import IntEnum


class Step(IntEnum):
    CONNECT = 0
    BANNER = 1
    HELO = 2
    EHLO = 3
    LHLO = 4
    STARTTLS = 5
    TLS = 6  # the TLS handshake itself, after the STARTTLS reply or on connect
    AUTH = 7
    MAIL = 8
    RCPT = 9
    DATA = 10
    DATA_END = 11  # the final "." (or last BDAT chunk) to its reply
    BDAT = 12
    RSET = 13
    NOOP = 14
    VRFY = 15
    EXPN = 16
    QUIT = 17
    XCLIENT = 18  # Postfix's XCLIENT: the client identity a trusted client claims

    @property
    def label(self) -> str:
        return _LABELS.get(self, self.name)

    @classmethod
    def from_label(cls, text: str) -> Step:
        """Accepts a label (``"DATA end"``), a name (``"DATA_END"``) or a verb, any case."""
        key = text.strip().upper().replace(" ", "_").replace("-", "_")
        key = _ALIASES.get(key, key)
        try:
            return cls[key]
        except KeyError:
            known = ", ".join(step.label for step in cls)
            raise ValueError(f"unknown SMTP step {text!r}; known steps: {known}") from None


_LABELS = {
    Step.CONNECT: "connect",
    Step.BANNER: "banner",
    Step.TLS: "TLS handshake",
    Step.DATA_END: "DATA end",
}
_ALIASES = {
    "END_OF_DATA": "DATA_END",
    "EOD": "DATA_END",
    "DOT": "DATA_END",
    "MAIL_FROM": "MAIL",
    "RCPT_TO": "RCPT",
    "TLS_HANDSHAKE": "TLS",
    "GREETING": "BANNER",
}

STEP_COUNT = len(Step)
