"""What a server offers, read from its EHLO reply (RFC 5321 section 4.1.1.1 and the extensions)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from smtpbench.protocol.replies import Reply

# Plain words for each extension keyword, for probe output and docs.
EXTENSION_MEANINGS: Mapping[str, str] = MappingProxyType(
    {
        "SIZE": "Declares the largest message it takes (RFC 1870)",
        "PIPELINING": "Takes several commands before replying (RFC 2920)",
        "8BITMIME": "Takes 8-bit message bodies (RFC 6152)",
        "SMTPUTF8": "Takes UTF-8 addresses and headers (RFC 6531)",
        "CHUNKING": "Takes the message in BDAT chunks (RFC 3030)",
        "BINARYMIME": "Takes binary message bodies with BDAT (RFC 3030)",
        "DSN": "Sends delivery status notifications on request (RFC 3461)",
        "STARTTLS": "Upgrades the connection to TLS (RFC 3207)",
        "AUTH": "Takes SMTP authentication (RFC 4954)",
        "ENHANCEDSTATUSCODES": "Adds codes like 2.1.5 to replies (RFC 2034)",
        "VRFY": "Answers address verification",
        "ETRN": "Starts a queue run on request (RFC 1985)",
        "HELP": "Answers HELP",
        "REQUIRETLS": "Can require TLS for onward delivery (RFC 8689)",
        "EXPN": "Expands mailing lists into their members",
        "DELIVERBY": "Takes a deadline for delivery (RFC 2852)",
        "MT-PRIORITY": "Takes a message priority (RFC 6710)",
        "LIMITS": "Declares its limits on recipients and transactions (RFC 9422)",
        "XCLIENT": "Postfix: lets this client claim another client's address, name and HELO, "
        "which the server's checks then trust (meant for trusted proxies only)",
        "XFORWARD": "Postfix: lets this client pass the original client's name and address "
        "for logging (meant for trusted content filters)",
    }
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    greeting: str = ""  # the first line of the EHLO reply: the server's name for itself
    keywords: Mapping[str, str] = field(default_factory=dict)  # KEYWORD -> parameters
    size: int | None = None  # None: no SIZE; 0: SIZE without a limit
    auth: frozenset[str] = frozenset()

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.keywords

    @property
    def eightbitmime(self) -> bool:
        return "8BITMIME" in self.keywords

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.keywords

    @property
    def chunking(self) -> bool:
        return "CHUNKING" in self.keywords

    @property
    def dsn(self) -> bool:
        return "DSN" in self.keywords

    @property
    def starttls(self) -> bool:
        return "STARTTLS" in self.keywords

    @property
    def enhanced_status_codes(self) -> bool:
        return "ENHANCEDSTATUSCODES" in self.keywords


NO_CAPABILITIES = Capabilities()


def parse_ehlo(reply: Reply) -> Capabilities:
    """Capabilities from a positive EHLO reply; unknown keywords are kept as they are.

    A server answers every EHLO of a run alike, so the parse is remembered by the
    reply's lines (Capabilities is immutable, so sharing it is safe)."""
    return _parse_lines(reply.lines)


@functools.lru_cache(maxsize=64)
def _parse_lines(lines: tuple[str, ...]) -> Capabilities:
    keywords: dict[str, str] = {}
    auth: set[str] = set()
    size: int | None = None
    for line in lines[1:]:
        parts = line.split(None, 1)
        if not parts:
            continue
        keyword = parts[0].upper()
        params = parts[1].strip() if len(parts) > 1 else ""
        # Some old servers write "AUTH=LOGIN PLAIN"; treat it as AUTH.
        if keyword.startswith("AUTH="):
            params = (keyword[5:] + " " + params).strip()
            keyword = "AUTH"
        if keyword == "AUTH":
            auth.update(mechanism.upper() for mechanism in params.split())
            params = " ".join(sorted(auth))
        elif keyword == "SIZE":
            size = int(params) if params.isdigit() else 0
        keywords[keyword] = params
    greeting = lines[0] if lines else ""
    return Capabilities(greeting, MappingProxyType(keywords), size, frozenset(auth))
