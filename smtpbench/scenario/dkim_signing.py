"""DKIM signatures (RFC 6376) on generated messages, with ``dkimpy``.

Signing is the costliest thing a message can ask for (an RSA signature each,
about a millisecond for a 2048-bit key on one core): with
``[content.dkim]`` the generator, not the engine, may set the pace. The
benchmark in ``bench/content_mix.py`` says how much.
"""

from __future__ import annotations

from pathlib import Path

from smtpbench.scenario.content_spec import Dkim


class DkimError(ValueError):
    """Signing cannot work: the message names the key or the missing package."""


class DkimSigner:
    """Signs messages as the scenario's ``[content.dkim]`` says."""

    def __init__(self, spec: Dkim) -> None:
        try:
            import dkim
        except ImportError:
            raise DkimError(
                "content.dkim needs the dkimpy package: pip install 'smtp-loadbench[dkim]'"
            ) from None
        self._dkim = dkim
        try:
            self._key = Path(spec.key_file).read_bytes()
        except OSError as err:
            raise DkimError(f"content.dkim.key_file: {spec.key_file}: {err.strerror}") from None
        self._selector = spec.selector.encode()
        self._domain = spec.domain.encode()
        self._headers = [name.encode() for name in spec.headers]
        try:
            self.sign(b"From: a@example.com\r\nSubject: key check\r\n\r\nbody\r\n")
        except Exception as err:  # dkimpy raises its own KeyFormatError, ValueError, ...
            raise DkimError(
                f"content.dkim.key_file: {spec.key_file}: cannot sign with it ({err})"
            ) from None

    def sign(self, message: bytes) -> bytes:
        """``message`` (CRLF lines) with its DKIM-Signature header in front."""
        signature: bytes = self._dkim.sign(
            message,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"rsa-sha256",
            include_headers=self._headers,
            linesep=b"\r\n",
        )
        return signature + message


__all__ = ["DkimError", "DkimSigner"]
