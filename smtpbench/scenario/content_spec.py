"""What messages carry, as a scenario's ``[content]`` table says: extra headers, the
body, a MIME mix, a corpus of real messages, DKIM signing.

Models only; ``mime.py``, ``corpus.py`` and ``dkim_signing.py`` build the bytes, and
``MessageFactory`` (``content.py``) picks per message. Paths are absolute here: the
loader resolves them against the scenario file's folder and checks they can be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from smtpbench.scenario.sizes import SizeDistribution
from smtpbench.scenario.templates import check_template, template_fields

MixKind = Literal["text", "html", "attachment"]
MIX_KINDS: Final[tuple[MixKind, ...]] = ("text", "html", "attachment")
TestBody = Literal["gtube", "eicar"]
TEST_BODIES: Final[tuple[TestBody, ...]] = ("gtube", "eicar")
Sampling = Literal["with-replacement", "without-replacement"]
SAMPLINGS: Final[tuple[Sampling, ...]] = ("with-replacement", "without-replacement")

# Headers the factory writes itself: a [content] header of the same name would make two.
OWN_HEADERS: Final = frozenset(
    {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
     "content-transfer-encoding", "x-smtpbench-id"}
)  # fmt: skip
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII but ":"
MAX_IMAGES: Final = 20
DEFAULT_ATTACHMENT_SIZE: Final = SizeDistribution.fixed(100 * 1024)


@dataclass(frozen=True, slots=True)
class MixPart:
    """One kind of message in the mix, picked with odds ``weight`` / sum of weights.

    - ``text``: one text/plain part, of the ``[session]`` size;
    - ``html``: multipart/alternative, a text part and an HTML part of the session
      size, the HTML with ``images`` inline PNG images of ``image_size`` bytes each
      (multipart/related);
    - ``attachment``: multipart/mixed, a text part of the session size and one file
      of ``attachment_type`` and ``attachment_size`` (before base64), named
      ``attachment_name``.
    """

    kind: MixKind
    weight: float = 1.0
    images: int = 0
    image_size: int = 20 * 1024
    attachment_type: str = "application/pdf"
    attachment_size: SizeDistribution = DEFAULT_ATTACHMENT_SIZE
    attachment_name: str | None = None  # the file name shown; attachment.<subtype> if None

    def __post_init__(self) -> None:
        if self.kind not in MIX_KINDS:
            raise ValueError(f"kind is one of {', '.join(MIX_KINDS)}, got {self.kind!r}")
        if not self.weight > 0:
            raise ValueError(f"a weight is above 0, got {self.weight!r}")
        if not 0 <= self.images <= MAX_IMAGES:
            raise ValueError(f"images is 0 to {MAX_IMAGES}, got {self.images!r}")
        if self.image_size < 100:
            raise ValueError(f"an image is at least 100 bytes, got {self.image_size!r}")
        maintype, slash, subtype = self.attachment_type.partition("/")
        if not slash or not maintype or not subtype or " " in self.attachment_type:
            raise ValueError(
                f"attachment_type is a MIME type such as application/pdf, "
                f"got {self.attachment_type!r}"
            )
        name = self.attachment_name
        if name is not None and (
            not name or not name.isprintable() or any(c in name for c in '"/\\')
        ):
            raise ValueError(f"attachment_name is a plain file name, got {name!r}")


@dataclass(frozen=True, slots=True)
class Corpus:
    """Real messages to send instead of generated ones: a folder of ``.eml`` files, a
    maildir, or an mbox file. Each message's Message-ID and Date are replaced (and an
    X-Smtpbench-Id added for transit runs) so that every send is a new message."""

    path: str
    sampling: Sampling = "with-replacement"
    anonymise: bool = False

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling is one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")


@dataclass(frozen=True, slots=True)
class Dkim:
    """Sign every message with DKIM (RFC 6376) as ``domain``, ``selector``, with the
    private key in ``key_file`` (an RSA key in PEM, as ``opendkim-genkey`` writes)."""

    domain: str
    selector: str
    key_file: str
    headers: tuple[str, ...] = ("From", "To", "Subject", "Date", "Message-ID")

    def __post_init__(self) -> None:
        for what, value in (("domain", self.domain), ("selector", self.selector)):
            if not value or not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise ValueError(f"{what} is a DNS name such as example.com, got {value!r}")
        if not self.headers or "from" not in {h.lower() for h in self.headers}:
            raise ValueError("the signed headers must include From (RFC 6376 section 5.4)")


@dataclass(frozen=True, slots=True)
class Content:
    """The ``[content]`` table; the default is the plain generated text message."""

    headers: tuple[tuple[str, str], ...] = ()  # (name, template), in order
    test_body: TestBody | None = None
    body_file: str | None = None  # taken as it is (line ends made CRLF)
    body_template: str | None = None  # placeholders as in addresses and subjects
    mix: tuple[MixPart, ...] = ()
    corpus: Corpus | None = None
    dkim: Dkim | None = None
    _weights: tuple[float, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.headers:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in OWN_HEADERS:
                raise ValueError(f"{name} is written by smtpbench itself; it cannot be added")
            check_template(value, kind="text")
        if self.test_body is not None and self.test_body not in TEST_BODIES:
            raise ValueError(
                f"test_body is one of {', '.join(TEST_BODIES)}, got {self.test_body!r}"
            )
        if self.corpus is not None and (
            self.mix or self.body_file or self.test_body or self.body_template
        ):
            raise ValueError("a corpus is sent as it is: mix and the body keys do not apply to it")
        bodies = [k for k in ("test_body", "body_file", "body_template") if getattr(self, k)]
        if len(bodies) > 1:
            raise ValueError(f"{' and '.join(bodies)} each give the body: choose one")
        if self.body_template is not None:
            template_fields(self.body_template)  # unknown placeholders are an error
        total = 0.0
        weights = []
        for part in self.mix:
            total += part.weight
            weights.append(total)
        object.__setattr__(self, "_weights", tuple(weights))

    @property
    def is_plain(self) -> bool:
        """Nothing asked: the factory's fast path of one generated text part."""
        return self == NO_CONTENT

    @property
    def cumulative_weights(self) -> tuple[float, ...]:
        return self._weights


NO_CONTENT: Final = Content()

GTUBE: Final = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
"""SpamAssassin's Generic Test for Unsolicited Bulk Email: any filter scores it as spam."""

EICAR: Final = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
"""The EICAR anti-virus test file, as its standard 68-character text."""

__all__ = [
    "EICAR",
    "GTUBE",
    "MIX_KINDS",
    "NO_CONTENT",
    "SAMPLINGS",
    "TEST_BODIES",
    "Content",
    "Corpus",
    "Dkim",
    "MixPart",
]
