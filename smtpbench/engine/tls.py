"""The client side of TLS: one context per run, the name to check, and what a failure means.

A context is built once per run (loading CA files is slow) and shared by every
session; each session then makes its own TLS session over it (``tls_channel.py``),
so every session pays a full handshake, as independent senders do.
"""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smtpbench.engine.transport import TargetError
from smtpbench.scenario.model import Tls


class SessionSetupError(TargetError):
    """What every session needs cannot be prepared (a TLS file, credentials): nothing ran."""


def client_context(tls: Tls) -> ssl.SSLContext:
    """The client context for ``tls``: verification on unless ``verify`` is off; the CA
    file or the system's CAs; the client certificate when one is given."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise SessionSetupError(f"tls.ca_file: cannot load {tls.ca_file}: {_reason(err)}") from None
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None:
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as err:
            key = "tls.client_key" if tls.client_key is not None else "tls.client_cert"
            raise SessionSetupError(
                f"{key}: cannot load the client certificate and key: {_reason(err)}"
            ) from None
    return context


def server_name(tls: Tls, host: str) -> str:
    """The name the certificate must carry (and that SNI sends, unless it is an address):
    ``tls.sni``, else the target host as written."""
    return tls.sni if tls.sni is not None else host


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def failure_detail(exc: BaseException) -> str:
    """A TLS failure in a mail admin's words: the certificate problem when there is one."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError | ssl.CertificateError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {cause.verify_message or cause.reason}"
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason.replace("_", " ").lower() if cause.reason else str(cause)
        return f"TLS failed: {reason}"
    if cause is not None:
        return f"certificate not accepted: {cause}"
    return f"TLS failed: {exc or type(exc).__name__}"


def certificate_details(der: bytes) -> dict[str, Any]:
    """Subject, names, issuer and validity of a certificate (DER), verified or not;
    empty when it cannot be decoded."""
    decoded = _decode(der) if der else {}
    if not decoded:
        return {}
    details: dict[str, Any] = {
        "subject": _name(decoded.get("subject", ())),
        "issuer": _name(decoded.get("issuer", ())),
        "names": [value for _, value in decoded.get("subjectAltName", ())],
    }
    not_after = decoded.get("notAfter")
    if not_after:
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        details["not_before"] = decoded.get("notBefore")
        details["not_after"] = not_after
        details["days_left"] = (expires - datetime.now(UTC)).days
    return details


def _decode(der: bytes) -> dict[str, Any]:
    """The standard library decodes certificates from files only (and only privately)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cert.pem"
        path.write_text(ssl.DER_cert_to_PEM_cert(der))
        try:
            return dict(decode(str(path)))
        except (ssl.SSLError, ValueError):
            return {}


def _name(rdns: Any) -> str:
    return ", ".join(f"{key}={value}" for rdn in rdns for key, value in rdn)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)
