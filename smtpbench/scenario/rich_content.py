"""What ``MessageFactory`` needs for a scenario's ``[content]`` table, made once per
factory: the MIME mix's layouts, the corpus read into memory, the body file, the
DKIM signer, and the per-message choices drawn at plan time (so a seed still gives
the same traffic)."""

from __future__ import annotations

import bisect
import dataclasses
import random
from pathlib import Path
from typing import TYPE_CHECKING, Final

from smtpbench.scenario.content_spec import EICAR, GTUBE, Content
from smtpbench.scenario.corpus import CorpusMessage, read_corpus
from smtpbench.scenario.dkim_signing import DkimSigner
from smtpbench.scenario.mime import BLOCK_LINES, MimeMix

if TYPE_CHECKING:
    from smtpbench.scenario.content import MessagePlan
    from smtpbench.scenario.templates import Renderer

MAX_BODY_FILE: Final = 64 * 1024**2
_ASCII_TEXT: Final = (
    b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
)
_UTF8_TEXT: Final = (
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
)


class RichContent:
    """The ``[content]`` of one factory. ``ValueError`` subclasses (``CorpusError``,
    ``DkimError``, ``BodyFileError``) name the file or key when something cannot be used."""

    def __init__(self, content: Content, seed: int) -> None:
        self.content = content
        self.mime = MimeMix(content.mix, seed)
        self.corpus: tuple[CorpusMessage, ...] = ()
        if content.corpus is not None:
            self.corpus = read_corpus(content.corpus.path, anonymise=content.corpus.anonymise)
        self._signer = DkimSigner(content.dkim) if content.dkim is not None else None
        self._fixed_text: bytes | None = None
        if content.body_file is not None:
            self._fixed_text = read_body_file(content.body_file)
        elif content.test_body == "eicar":
            # The EICAR file is the 68 characters, followed by nothing but white space.
            self._fixed_text = EICAR.encode() + b"\r\n"
        self._gtube = content.test_body == "gtube"
        self._corpus_rng = random.Random(f"corpus:{seed}")
        self._corpus_order: list[int] = []

    def text_headers_for(self, text: bytes) -> bytes:
        return _ASCII_TEXT if text.isascii() else _UTF8_TEXT

    # -- plan time ----------------------------------------------------------------------

    def plan(
        self, plan: MessagePlan, rng: random.Random, headers: tuple[tuple[str, str], ...]
    ) -> MessagePlan:
        """``plan`` with the choices of ``[content]`` drawn: mix kind, attachment, corpus."""
        content = self.content
        mix = -1
        attachment = None
        corpus = -1
        if content.mix:
            weights = content.cumulative_weights
            mix = min(bisect.bisect_right(weights, rng.random() * weights[-1]), len(weights) - 1)
            part = content.mix[mix]
            if part.kind == "attachment":
                attachment = (rng.randrange(BLOCK_LINES), part.attachment_size.sample(rng))
        if content.corpus is not None:
            corpus = self._next_corpus_message()
        return dataclasses.replace(
            plan, headers=headers, mix=mix, attachment=attachment, corpus=corpus
        )

    def _next_corpus_message(self) -> int:
        sampling = self.content.corpus.sampling if self.content.corpus else "with-replacement"
        if sampling == "with-replacement":
            return self._corpus_rng.randrange(len(self.corpus))
        if not self._corpus_order:  # every message once, in a new order each pass
            self._corpus_order = list(range(len(self.corpus)))
            self._corpus_rng.shuffle(self._corpus_order)
        return self._corpus_order.pop()

    # -- message time -------------------------------------------------------------------

    def text(self, template: Renderer | None, session: int, message: int) -> bytes | None:
        """The text part's content, CRLF-ended lines; None: the filler, cut to size."""
        if self._fixed_text is not None:
            return self._fixed_text
        if template is not None:
            return crlf(template.render(session, message).encode("utf-8"))
        return None

    def with_test_line(self, filler: bytes) -> bytes:
        return GTUBE.encode() + b"\r\n" + filler if self._gtube else filler

    def signed(self, message: bytes) -> bytes:
        return self._signer.sign(message) if self._signer is not None else message


class BodyFileError(ValueError):
    """The body file cannot be used."""


def read_body_file(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise BodyFileError(f"content.body_file: {path}: {err.strerror or err}") from None
    if len(data) > MAX_BODY_FILE:
        raise BodyFileError(f"content.body_file: {path}: larger than {MAX_BODY_FILE >> 20} MiB")
    if b"\x00" in data:
        raise BodyFileError(
            f"content.body_file: {path}: binary (it has NUL bytes); "
            "send files as attachments of the mix"
        )
    return crlf(data)


def crlf(data: bytes) -> bytes:
    """Line ends made CRLF, and a last one added."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


__all__ = ["BodyFileError", "RichContent", "crlf", "read_body_file"]
