"""What reply codes mean, in RFC 5321's words (section 4.2), for summaries and dashboards."""

from __future__ import annotations

REPLY_MEANINGS: dict[int, str] = {
    211: "System status",
    214: "Help message",
    220: "Service ready",
    221: "Service closing transmission channel",
    235: "Authentication succeeded",
    250: "Requested mail action okay, completed",
    251: "User not local; will forward",
    252: "Cannot VRFY user, but will accept message",
    334: "Authentication challenge",
    354: "Start mail input; end with <CRLF>.<CRLF>",
    421: "Service not available, closing transmission channel",
    432: "A password transition is needed",
    450: "Mailbox unavailable (busy or temporarily blocked)",
    451: "Requested action aborted: local error in processing",
    452: "Insufficient system storage",
    454: "Temporary authentication failure / TLS not available",
    455: "Server unable to accommodate parameters",
    500: "Syntax error, command unrecognized",
    501: "Syntax error in parameters or arguments",
    502: "Command not implemented",
    503: "Bad sequence of commands",
    504: "Command parameter not implemented",
    521: "Host does not accept mail",
    523: "Message size exceeds the server limit",
    530: "Authentication required",
    534: "Authentication mechanism is too weak",
    535: "Authentication credentials invalid",
    538: "Encryption required for requested authentication mechanism",
    550: "Mailbox unavailable (not found, no access, or policy)",
    551: "User not local",
    552: "Exceeded storage allocation",
    553: "Mailbox name not allowed",
    554: "Transaction failed",
    555: "MAIL FROM/RCPT TO parameters not recognized",
    556: "Domain does not accept mail",
}

_CLASS_MEANINGS = {
    2: "Positive completion",
    3: "Positive intermediate",
    4: "Transient failure",
    5: "Permanent failure",
}


def reply_meaning(code: int) -> str:
    """The RFC text for a code, or the meaning of its class for codes RFC 5321 does not name."""
    meaning = REPLY_MEANINGS.get(code)
    if meaning is not None:
        return meaning
    return _CLASS_MEANINGS.get(code // 100, "Not a valid SMTP reply code")
