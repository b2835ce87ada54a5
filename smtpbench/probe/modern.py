"""The probe's checks for flaws found in the last years, each on a connection of its own,
after the main conversation: AUTH accepted before TLS, commands injected with STARTTLS,
SMTP smuggling (only with a recipient of the user's own), and what XFORWARD offers.

Each finding carries its severity and a reference. The smuggling test is the only one
that sends mail: one message per line ending tried, to the address the user named with
``--smuggling-rcpt``, never anyone else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from smtpbench.probe.model import Exchange, Status
from smtpbench.protocol.capabilities import Capabilities
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.steps import Step

if TYPE_CHECKING:
    from smtpbench.probe.run import Prober

# The line endings a server must not take as the end of the data (RFC 5321 section
# 4.1.1.4: only <CRLF>.<CRLF> ends it), as SEC Consult's SMTP smuggling research tried.
SMUGGLING_ENDINGS: tuple[tuple[str, bytes], ...] = (
    ("<LF>.<LF>", b"\n.\n"),
    ("<CR>.<CR>", b"\r.\r"),
    ("<LF>.<CR><LF>", b"\n.\r\n"),
)
SMUGGLING_REFERENCE = (
    "SEC Consult, SMTP Smuggling (2023): CVE-2023-51764 (Postfix: smtpd_forbid_bare_newline), "
    "CVE-2023-51765 (Sendmail), CVE-2023-51766 (Exim), CVE-2024-27305 (aiosmtpd); "
    "RFC 5321 section 4.1.1.4"
)
STARTTLS_REFERENCE = (
    "CVE-2011-0411 and its kin (CVE-2021-33515, CVE-2021-38371, CVE-2024-34083); "
    "RFC 3207 section 4.2; https://www.postfix.org/CVE-2011-0411.html"
)
AUTH_REFERENCE = (
    "RFC 4954 section 4 and RFC 4616 section 4 (PLAIN only over TLS); RFC 8314 section 3; "
    "Postfix: smtpd_tls_auth_only = yes"
)
XFORWARD_REFERENCE = (
    "https://www.postfix.org/XFORWARD_README.html (smtpd_authorized_xforward_hosts)"
)
XCLIENT_REFERENCE = "https://www.postfix.org/XCLIENT_README.html (smtpd_authorized_xclient_hosts)"
BANNER_REFERENCE = "CWE-200; Postfix: smtpd_banner = $myhostname ESMTP"
# Sent in the same packet as STARTTLS: a verb no server knows, so that an answer to it
# (500 or 502) cannot be taken for the answer to the NOOP sent after the handshake.
INJECTED = b"XSMTPBENCH-INJECTED\r\n"
DEFAULT_SMUGGLING_WAIT = 2.0  # seconds a server has to answer a bare line ending


class _Skip(Exception):
    """The check cannot run on this connection: what went wrong is in ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def modern_checks(p: Prober, before_tls: Capabilities) -> None:
    """Every check of this module, each on a fresh connection."""
    options = p.options
    if options.tls != "implicit":
        await _isolated(
            p, "auth_before_tls", "AUTH before TLS", lambda: _auth_before_tls(p, before_tls)
        )
        if options.tls == "auto" and before_tls.starttls:
            await _isolated(
                p, "starttls_injection", "STARTTLS injection", lambda: _starttls_injection(p)
            )
    if options.smuggling_rcpt is None:
        p._add(
            "smuggling",
            "SMTP smuggling",
            "info",
            "not tested: pass --smuggling-rcpt with an address of your own (one test message "
            "per line ending is delivered to it)",
            reference=SMUGGLING_REFERENCE,
        )
    else:
        await _isolated(p, "smuggling", "SMTP smuggling", lambda: _smuggling(p))


async def _isolated(p: Prober, key: str, title: str, check: Callable[[], Awaitable[None]]) -> None:
    """Runs ``check`` on a connection of its own: what fails on the way is this check's,
    as info (it could not run), and the main checks stand."""
    from smtpbench.probe.run import _Stop

    mark = len(p.checks)
    try:
        await check()
    except (_Stop, _Skip) as exc:
        lost = p.checks[mark:]
        del p.checks[mark:]
        reason = exc.reason if isinstance(exc, _Skip) else "; ".join(c.summary for c in lost)
        p._add(key, title, "info", f"could not run: {reason or 'the conversation stopped'}")
    finally:
        await p._drop()


async def _fresh(p: Prober) -> None:
    await p._drop()
    await p._open(verify=False, implicit=p.options.tls == "implicit", record=False)


async def _auth_before_tls(p: Prober, before: Capabilities) -> None:
    """AUTH tried in clear text with no credential at all: a 334 means the server would
    take a password readable on the way; the exchange is cancelled at once (``*``)."""
    await _fresh(p)
    offered = sorted(before.auth)
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in before.auth), None)
    mechanism = mechanism or (offered[0] if offered else "PLAIN")
    conn = p.conn
    asked = await p._command(conn.auth(f"AUTH {mechanism}\r\n".encode()), f"AUTH {mechanism}")
    exchanges = [asked]
    details = {"offered_before_tls": offered, "mechanism": mechanism}
    if asked.code == 334:
        cancel = await p._command(conn.auth_response("*"), "* (cancel)")
        exchanges.append(cancel)
        p._add(
            "auth_before_tls",
            "AUTH before TLS",
            "fail",
            f"AUTH {mechanism} is taken in clear text: a client's password crosses the network "
            "readable (no credential was sent; the exchange was cancelled)",
            *exchanges,
            details=details,
            severity="high" if mechanism in ("PLAIN", "LOGIN") else "medium",
            reference=AUTH_REFERENCE,
        )
        return
    code = asked.code or 0
    if code in (502, 503, 504) and not offered:
        status: Status = "pass"
        summary = "no AUTH before TLS: not offered, and refused when asked"
    elif code == 504:
        status, summary = "info", f"AUTH {mechanism} is not known to it: cannot tell"
    elif offered:
        status = "warn"
        summary = (
            f"offered before TLS ({' '.join(offered)}) but refused when asked ({code}): "
            "offer AUTH only once TLS is on, so clients do not try"
        )
    else:
        status, summary = "pass", f"refused before TLS ({code})"
    p._add(
        "auth_before_tls",
        "AUTH before TLS",
        status,
        summary,
        *exchanges,
        details=details,
        severity="low" if status == "warn" else None,
        reference=AUTH_REFERENCE,
    )


async def _starttls_injection(p: Prober) -> None:
    """A command sent in the same packet as STARTTLS must be thrown away (RFC 3207 4.2):
    after the handshake, the first reply must be the one to our own NOOP."""
    await _fresh(p)
    conn = p.conn
    stream = p.stream
    assert stream is not None
    began = time.perf_counter()
    # STARTTLS and the injected line in one write; nothing is owed to the injected line.
    data = conn.starttls() + conn.send_raw(Step.NOOP, INJECTED, replies=0)
    try:
        with trio.fail_after(p.options.timeout):
            await stream.send_all(data)
            reply = await p._reply()
    except trio.TooSlowError:
        raise _Skip(f"no reply to STARTTLS within {p.options.timeout:g}s") from None
    except Exception as exc:  # the connection failed: nothing to tell
        raise _Skip(
            f"the server closed the connection after STARTTLS ({exc or 'closed'})"
        ) from None
    shown = "STARTTLS + XSMTPBENCH-INJECTED (one packet)"
    starttls = Exchange(
        shown, reply.code, reply.lines, time.perf_counter() - began, reply_meaning(reply.code)
    )
    if reply.code != 220:
        raise _Skip(f"STARTTLS refused ({reply.code})")
    await p._handshake(verify=False, record=False, title="")
    conn.tls_established()
    noop = await p._command(conn.noop(), "NOOP (over TLS)")
    if noop.code == 250:
        p._add(
            "starttls_injection",
            "STARTTLS injection",
            "pass",
            "a command sent with STARTTLS was thrown away, as it must be",
            starttls,
            noop,
            reference=STARTTLS_REFERENCE,
        )
        return
    p._add(
        "starttls_injection",
        "STARTTLS injection",
        "fail",
        "it ran a command sent in clear text in the same packet as STARTTLS, as if it came over "
        "TLS: a man in the middle can inject commands into the encrypted session",
        starttls,
        noop,
        details={"first_reply_over_tls": noop.code},
        severity="high",
        reference=STARTTLS_REFERENCE,
    )


async def _smuggling(p: Prober) -> None:
    options = p.options
    rcpt = options.smuggling_rcpt
    assert rcpt is not None
    variants = []
    exchanges: list[Exchange] = []
    for name, ending in SMUGGLING_ENDINGS:
        verdict, vulnerable, shown = await _one_ending(p, rcpt, name, ending)
        variants.append({"ending": name, "vulnerable": vulnerable, "verdict": verdict})
        exchanges.extend(shown)
        await p._drop()
    taken = [v["ending"] for v in variants if v["vulnerable"]]
    if taken:
        status: Status = "fail"
        summary = (
            f"it takes {', '.join(taken)} as the end of the message: a sender can hide a "
            "second message after it (spoofed From, passing SPF of the sending server)"
        )
    else:
        status, summary = "pass", "only <CR><LF>.<CR><LF> ends a message"
    p._add(
        "smuggling",
        "SMTP smuggling",
        status,
        summary,
        *exchanges,
        details={"recipient": rcpt, "variants": variants},
        severity="high" if taken else None,
        reference=SMUGGLING_REFERENCE,
    )


async def _one_ending(
    p: Prober, rcpt: str, name: str, ending: bytes
) -> tuple[str, bool, list[Exchange]]:
    """One message whose text holds ``ending``; a 250 before the real end means the
    server took ``ending`` as the end of data."""
    from smtpbench.probe.run import _Closed

    options = p.options
    await _fresh(p)
    conn = p.conn
    mail = await p._command(conn.mail(options.mail_from), f"MAIL FROM:<{options.mail_from}>")
    if mail.code is None or mail.code // 100 != 2:
        raise _Skip(f"MAIL FROM:<{options.mail_from}> refused ({mail.code}); try --from")
    to = await p._command(conn.rcpt(rcpt), f"RCPT TO:<{rcpt}>")
    if to.code is None or to.code // 100 != 2:
        raise _Skip(f"RCPT TO:<{rcpt}> refused ({to.code})")
    data = await p._command(conn.data(), "DATA")
    if data.code != 354:
        raise _Skip(f"DATA refused ({data.code})")
    head = (
        f"From: <{options.mail_from}>\r\nTo: <{rcpt}>\r\n"
        f"Subject: smtpbench probe: SMTP smuggling test, {name}\r\n\r\n"
        f"A test of whether this server takes {name} as the end of a message.\r\n"
        "It was sent by smtpbench probe --smuggling-rcpt; nothing else was sent with it.\r\n"
        "Before the line ending:"
    ).encode()
    rest = b"After the line ending: the server did not end the message there.\r\n"
    stream = p.stream
    assert stream is not None
    began = time.perf_counter()
    shown = f"(message text, then {name})"
    await stream.send_all(conn.send_raw(Step.DATA_END, head + ending, replies=1))
    early = None
    closed = False
    with trio.move_on_after(options.smuggling_wait):
        try:
            early = await p._reply()
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            closed = True
    if closed:
        return f"closed the connection at {name}: safe", False, []
    if early is not None:
        seconds = time.perf_counter() - began
        exchange = Exchange(shown, early.code, early.lines, seconds, reply_meaning(early.code))
        with contextlib.suppress(Exception), trio.move_on_after(2):
            await stream.send_all(b"QUIT\r\n")
        if early.code // 100 == 2:
            return f"VULNERABLE: answered {early.code} to {name}", True, [exchange]
        return f"refused it ({early.code}): safe", False, [exchange]
    final = await p._command(conn.send_raw(Step.DATA_END, rest + b".\r\n", replies=0), shown)
    if final.code is None:
        return "closed the connection: safe", False, [final]
    await p._command(conn.quit(), "QUIT")
    return (
        f"part of the text; the message ended at <CR><LF>.<CR><LF> ({final.code})",
        False,
        [final],
    )
