"""Protocol errors: ours (used out of order) and theirs (malformed server output)."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the two kinds below."""


class LocalProtocolError(ProtocolError):
    """The caller asked the state machine for something SMTP does not allow now."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid SMTP (garbage, over-long lines, bad codes)."""
