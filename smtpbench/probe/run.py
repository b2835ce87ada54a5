"""The probe itself: one SMTP conversation (two if the certificate is not trusted), each
step written down as a ``Check``.

Order: connect; the TLS handshake first for implicit TLS; banner; EHLO (HELO if
refused); STARTTLS and the certificate, then EHLO again; AUTH mechanisms; the
open relay test; VRFY; EXPN; DSN; NOOP; RSET; QUIT; then the checks of
``modern.py``, each on a connection of its own. No message is sent but the SMTP
smuggling test's, to the address the user names: the relay and DSN tests stop
after RCPT TO and reset the transaction, so they deliver nothing and trigger no
delivery report.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

import trio

from smtpbench.engine.tls import certificate_details
from smtpbench.engine.transport import Address, connect, resolve
from smtpbench.probe.model import Check, Exchange, ProbeReport, Severity, Status
from smtpbench.probe.modern import (
    AUTH_REFERENCE,
    BANNER_REFERENCE,
    DEFAULT_SMUGGLING_WAIT,
    XCLIENT_REFERENCE,
    XFORWARD_REFERENCE,
    modern_checks,
)
from smtpbench.protocol.capabilities import EXTENSION_MEANINGS, Capabilities
from smtpbench.protocol.client import NEED_DATA, ClientConnection, Response
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.commands import orcpt
from smtpbench.protocol.errors import ProtocolError
from smtpbench.protocol.replies import Reply

TlsChoice = Literal["auto", "implicit", "none"]
EXPIRY_WARNING_DAYS = 14
# Software names that banners give away; a version number is worse.
_SOFTWARE = re.compile(
    r"\b(postfix|exim|sendmail|microsoft|exchange|qmail|hmailserver|mailenable|zimbra|"
    r"haraka|opensmtpd|courier|communigate|kerio|mdaemon|icewarp|axigen|domino|lotus|"
    r"smtpbench|aiosmtpd|python|james|coremail|surgemail|xmail|postini|ironport)\b",
    re.IGNORECASE,
)
_VERSION = re.compile(r"(?<![\d.])v?\d+\.\d+(?:\.\d+)?(?![\d.])")
_WEAK_PROTOCOLS = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})


DEFAULT_HELO = "smtpbench.localhost"
DEFAULT_FROM = "smtpbench-probe@example.com"  # an outside sender
DEFAULT_RELAY_TO = "relay-test@example.net"  # an outside recipient
DEFAULT_VRFY = "postmaster"


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    host: str
    port: int = 25
    tls: TlsChoice = "auto"  # auto: STARTTLS when offered; implicit: TLS from the start
    verify: bool = True
    ca_file: str | None = None
    sni: str | None = None
    helo: str = DEFAULT_HELO
    mail_from: str = DEFAULT_FROM
    relay_to: str = DEFAULT_RELAY_TO
    dsn_rcpt: str | None = None  # a recipient the server takes; default postmaster@its name
    vrfy: str = DEFAULT_VRFY
    timeout: float = 30.0
    # The smuggling test delivers one message per line ending to this address: the
    # user's own. None: the test does not run.
    smuggling_rcpt: str | None = None
    smuggling_wait: float = DEFAULT_SMUGGLING_WAIT  # for an answer to a bare line ending


class _Stop(Exception):
    """The conversation cannot go on; the checks so far stand."""


class Prober:
    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self.checks: list[Check] = []
        self.conn = ClientConnection()
        self.stream: trio.abc.Stream | None = None
        self.address: Address | None = None
        self.tls_active = False
        self.refused: str | None = None  # why the certificate was not accepted
        self.before_tls: Capabilities | None = None  # what EHLO offered before STARTTLS

    async def run(self) -> ProbeReport:
        """``TargetError`` if the name does not resolve; every other problem is a check."""
        options = self.options
        self.address = await resolve(options.host, options.port)
        try:
            await self._conversation()
            assert self.before_tls is not None
            await modern_checks(self, self.before_tls)
        except _Stop:
            pass
        finally:
            if self.stream is not None:
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(2),
                    contextlib.suppress(trio.BrokenResourceError, OSError),
                ):
                    await self.stream.aclose()
        return ProbeReport(str(self.address), tuple(self.checks))

    # -- the conversation ----------------------------------------------------

    async def _conversation(self) -> None:
        options = self.options
        implicit = options.tls == "implicit"
        await self._open(verify=options.verify, implicit=implicit, record=True)
        capabilities = self.conn.capabilities
        before_tls = self.before_tls = capabilities
        if implicit:
            pass
        elif options.tls == "auto" and capabilities.starttls:
            await self._starttls(verify=options.verify)
        elif options.tls == "auto":
            self._add(
                "starttls",
                "STARTTLS",
                "warn",
                "not offered: mail to this server travels in clear text, readable on the way",
            )
        self._auth(before_tls, self.conn.capabilities)
        await self._relay_test()
        await self._vrfy_expn()
        await self._dsn()
        for key, title, line in (
            ("noop", "NOOP", self.conn.noop),
            ("rset", "RSET", self.conn.rset),
        ):
            exchange = await self._command(line(), title)
            ok = exchange.code == 250
            self._add(
                key,
                title,
                "pass" if ok else "warn",
                "answered as it should" if ok else f"answered {exchange.code}, not 250",
                exchange,
            )
        exchange = await self._command(self.conn.quit(), "QUIT")
        ok = exchange.code == 221
        summary = "said goodbye and closed" if ok else f"answered {exchange.code}, not 221"
        self._add("quit", "QUIT", "pass" if ok else "warn", summary, exchange)

    async def _open(self, *, verify: bool, implicit: bool, record: bool) -> None:
        """Connect, (implicit TLS,) banner, EHLO or HELO. With implicit TLS and a
        certificate that is not accepted, connects again without checking it, to see it."""
        options = self.options
        await self._connect(record=record)
        if implicit:
            try:
                await self._handshake(verify=verify, record=record, title="TLS (implicit)")
            except _CertificateRefused:
                await self._drop()
                await self._connect(record=False)
                await self._handshake(verify=False, record=True, title="TLS (implicit)")
        banner = await self._read("banner")
        if record:
            self._banner(banner)
        if banner.code != 220:
            raise _Stop
        ehlo = await self._command(self.conn.ehlo(options.helo), f"EHLO {options.helo}")
        if ehlo.code == 250:
            if record:
                self._extensions("ehlo", "EHLO", ehlo, self.conn.capabilities)
            return
        helo = await self._command(self.conn.helo(options.helo), f"HELO {options.helo}")
        if record:
            self._add("ehlo", "EHLO", "warn", "refused: no ESMTP, so no extensions", ehlo)
            ok = helo.code == 250
            self._add(
                "helo",
                "HELO fallback",
                "warn" if ok else "fail",
                "takes HELO: plain SMTP only, no STARTTLS" if ok else "refuses HELO too",
                helo,
            )
        if helo.code != 250:
            raise _Stop

    async def _connect(self, *, record: bool) -> None:
        assert self.address is not None
        self.conn = ClientConnection()
        began = time.perf_counter()
        try:
            with trio.fail_after(self.options.timeout):
                self.stream = await connect(self.address)
        except (OSError, trio.TooSlowError) as exc:
            why = "no answer" if isinstance(exc, trio.TooSlowError) else (exc.strerror or exc)
            self._add("connect", "Connect", "fail", f"cannot connect to {self.address}: {why}")
            raise _Stop from None
        if record:
            seconds = time.perf_counter() - began
            self._add(
                "connect",
                "Connect",
                "pass",
                f"TCP connection to {self.address} open in {_ms(seconds)}",
                details={"seconds": seconds},
            )

    async def _drop(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(trio.BrokenResourceError, OSError):
                await trio.aclose_forcefully(self.stream)
        self.stream = None

    async def _starttls(self, *, verify: bool) -> None:
        exchange = await self._command(self.conn.starttls(), "STARTTLS")
        if exchange.code != 220:
            self._add(
                "starttls",
                "STARTTLS",
                "fail",
                f"advertised but refused with {exchange.code}: clients will send in clear text",
                exchange,
            )
            return
        self._add("starttls", "STARTTLS", "pass", "offered and ready", exchange)
        try:
            await self._handshake(verify=verify, record=True, title="TLS certificate")
        except _CertificateRefused:
            # Look at what it presents anyway, on a connection of its own.
            await self._drop()
            await self._open(verify=False, implicit=False, record=False)
            if not self.conn.capabilities.starttls:
                raise _Stop from None
            await self._command(self.conn.starttls(), "STARTTLS")
            await self._handshake(verify=False, record=True, title="TLS certificate")
        self.conn.tls_established()
        ehlo = await self._command(self.conn.ehlo(self.options.helo), f"EHLO {self.options.helo}")
        if ehlo.code == 250:
            self._extensions("ehlo_tls", "EHLO after STARTTLS", ehlo, self.conn.capabilities)

    async def _handshake(self, *, verify: bool, record: bool, title: str) -> None:
        options = self.options
        assert self.stream is not None
        context = ssl.create_default_context(cafile=options.ca_file)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        name = options.sni or options.host
        stream = trio.SSLStream(self.stream, context, server_hostname=name, https_compatible=True)
        self.stream = stream
        began = time.perf_counter()
        try:
            with trio.fail_after(options.timeout):
                await stream.do_handshake()
        except trio.TooSlowError:
            self._add("tls", title or "TLS", "fail", "the TLS handshake did not finish in time")
            raise _Stop from None
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError) and record:
                self.refused = cause.verify_message or str(cause.reason)
                raise _CertificateRefused from None
            self._add(
                "tls",
                title or "TLS",
                "fail",
                f"the TLS handshake failed: {_tls_failure(cause or exc)}",
            )
            raise _Stop from None
        seconds = time.perf_counter() - began
        self.tls_active = True
        if record:
            self._certificate(stream, title, seconds, verified=verify)

    # -- what each step means ------------------------------------------------

    def _banner(self, exchange: Exchange) -> None:
        if exchange.code != 220:
            what = "refuses sessions" if exchange.code else "sent no banner"
            self._add("banner", "Banner", "fail", f"the server {what}", exchange)
            return
        # The first word is the host's name (RFC 5321 section 4.2): only the rest can
        # give the software away.
        text = " ".join(exchange.reply).partition(" ")[2]
        software = _SOFTWARE.findall(text)
        version = _VERSION.findall(text)
        details: dict[str, Any] = {"software": software, "versions": version}
        if software or version:
            named = " and ".join(
                part
                for part in (
                    f"names the software ({', '.join(dict.fromkeys(software))})"
                    if software
                    else "",
                    f"gives a version ({', '.join(version)})" if version else "",
                )
                if part
            )
            summary = (
                f"{named}: this tells attackers which exploits to try; a banner needs only "
                "the host name and ESMTP"
            )
            self._add(
                "banner",
                "Banner",
                "warn",
                summary,
                exchange,
                details=details,
                severity="low",
                reference=BANNER_REFERENCE,
            )
        else:
            summary = f"ready in {_ms(exchange.seconds)}, names no software or version"
            self._add("banner", "Banner", "pass", summary, exchange, details=details)

    def _extensions(self, key: str, title: str, exchange: Exchange, caps: Capabilities) -> None:
        listed = {
            keyword: {
                "parameters": params,
                "meaning": EXTENSION_MEANINGS.get(keyword, "an extension this probe does not know"),
            }
            for keyword, params in caps.keywords.items()
        }
        words = ", ".join(caps.keywords) or "none"
        self._add(
            key,
            title,
            "pass",
            f"{caps.greeting or 'the server'} offers {words}",
            exchange,
            details={"greeting": caps.greeting, "extensions": listed},
        )
        if caps.has("XCLIENT") and not any(check.key == "xclient" for check in self.checks):
            self._add(
                "xclient",
                "XCLIENT",
                "warn",
                "offered to this client: it may claim any client address, host name and "
                "HELO, and the server's checks on them (access lists, RBLs, rate limits) "
                "trust the claim; offer it to trusted proxies only (Postfix: "
                "smtpd_authorized_xclient_hosts)",
                severity="high",
                reference=XCLIENT_REFERENCE,
            )
        if caps.has("XFORWARD") and not any(check.key == "xforward" for check in self.checks):
            self._add(
                "xforward",
                "XFORWARD",
                "warn",
                "offered to this client: it may set the client name, address and HELO that "
                "the logs and the next filters record for its mail, hiding where mail came "
                "from; offer it to trusted content filters only (Postfix: "
                "smtpd_authorized_xforward_hosts)",
                severity="medium",
                reference=XFORWARD_REFERENCE,
            )

    def _certificate(
        self, stream: trio.SSLStream[Any], title: str, seconds: float, *, verified: bool
    ) -> None:
        details = _certificate_details(stream)
        details["handshake_seconds"] = seconds
        status: Status = "pass"
        notes = []
        days = details.get("days_left")
        if days is not None and days < 0:
            status = "fail"
            notes.append(f"expired {-days} days ago")
        elif days is not None and days < EXPIRY_WARNING_DAYS:
            status = "warn"
            notes.append(f"expires in {days} days")
        if details.get("protocol") in _WEAK_PROTOCOLS:
            status = "fail" if status == "fail" else "warn"
            notes.append(f"{details['protocol']} is outdated")
        if self.refused is not None:
            status = "fail"
            details["verify_error"] = self.refused
            notes.insert(
                0,
                f"not accepted: {self.refused} (--ca-file PEM trusts its CA; --insecure "
                "looks past it)",
            )
        elif not verified:
            status = "fail" if status == "fail" else "warn"
            notes.append("not verified (--insecure)")
        elif status == "pass":
            notes.append("valid and trusted")
        summary = "; ".join(notes) + f"; {details.get('protocol')} {details.get('cipher')}"
        self._add("tls", title, status, summary, details=details)

    def _auth(self, before: Capabilities, after: Capabilities) -> None:
        details = {"before_tls": sorted(before.auth), "after_tls": sorted(after.auth)}
        if not before.auth and not after.auth:
            self._add("auth", "AUTH", "info", "not offered", details=details)
            return
        clear_text = self.options.tls != "implicit"
        plaintext = {"PLAIN", "LOGIN"} & before.auth if clear_text else set()
        if plaintext:
            summary = (
                f"{' and '.join(sorted(plaintext))} offered before TLS: a client may send "
                "its password readable on the way"
            )
            self._add(
                "auth",
                "AUTH",
                "warn",
                summary,
                details=details,
                severity="medium",
                reference=AUTH_REFERENCE,
            )
            return
        offered = " ".join(sorted(after.auth or before.auth))
        when = " once TLS is on" if after.auth and not before.auth else ""
        self._add("auth", "AUTH", "pass", f"offers {offered}{when}", details=details)

    async def _relay_test(self) -> None:
        options = self.options
        conn = self.conn
        mail = await self._command(conn.mail(options.mail_from), f"MAIL FROM:<{options.mail_from}>")
        if mail.code is None or mail.code // 100 != 2:
            self._add(
                "open_relay",
                "Open relay",
                "warn",
                f"MAIL FROM an outside address was refused ({mail.code}): the relay test "
                "could not run (try --from)",
                mail,
            )
            await self._reset()
            return
        rcpt = await self._command(conn.rcpt(options.relay_to), f"RCPT TO:<{options.relay_to}>")
        code = rcpt.code or 0
        if code // 100 == 2:
            status: Status = "fail"
            summary = (
                f"OPEN RELAY: it takes mail from {options.mail_from} to {options.relay_to}, "
                "two domains it does not serve; spammers will use it"
            )
        elif code // 100 == 5:
            status, summary = "pass", "relaying denied: mail for outside domains is refused"
        else:
            status = "warn"
            summary = f"a temporary refusal ({code}): cannot tell whether it relays"
        self._add("open_relay", "Open relay", status, summary, mail, rcpt)
        await self._reset()

    async def _vrfy_expn(self) -> None:
        options = self.options
        vrfy = await self._command(self.conn.vrfy(options.vrfy), f"VRFY {options.vrfy}")
        code = vrfy.code or 0
        if code in (250, 251):
            self._add(
                "vrfy",
                "VRFY",
                "warn",
                "confirms addresses: spammers can harvest valid ones (disable VRFY)",
                vrfy,
            )
        elif code == 252:
            self._add("vrfy", "VRFY", "pass", "answers without confirming anything", vrfy)
        else:
            self._add("vrfy", "VRFY", "pass", "disabled: addresses cannot be checked", vrfy)
        expn = await self._command(self.conn.expn(options.vrfy), f"EXPN {options.vrfy}")
        if expn.code in (250, 251):
            summary = "expands mailing lists: it shows who is on them (disable EXPN)"
            self._add("expn", "EXPN", "warn", summary, expn)
        else:
            self._add("expn", "EXPN", "pass", "disabled: lists cannot be expanded", expn)

    async def _dsn(self) -> None:
        conn = self.conn
        if not conn.capabilities.dsn:
            self._add(
                "dsn",
                "DSN",
                "info",
                "not advertised: senders cannot ask for delivery receipts (RFC 3461)",
            )
            return
        rcpt = self.options.dsn_rcpt or f"postmaster@{_server_name(conn.capabilities)}"
        mail = await self._command(
            conn.mail(self.options.mail_from, {"RET": "HDRS"}),
            f"MAIL FROM:<{self.options.mail_from}> RET=HDRS",
        )
        if mail.code is None or mail.code // 100 != 2:
            self._add("dsn", "DSN", "warn", f"MAIL FROM with RET was refused ({mail.code})", mail)
            await self._reset()
            return
        params = {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": orcpt(rcpt)}
        answer = await self._command(
            conn.rcpt(rcpt, params), f"RCPT TO:<{rcpt}> NOTIFY=SUCCESS,FAILURE ORCPT={orcpt(rcpt)}"
        )
        code = answer.code or 0
        if code // 100 == 2:
            status: Status = "pass"
            summary = "takes NOTIFY=SUCCESS,FAILURE: delivery receipts can be asked for"
        elif code in (501, 555):
            status, summary = "warn", "advertised, but NOTIFY was refused as a parameter"
        else:
            status = "warn"
            summary = f"the recipient {rcpt} was refused ({code}): cannot tell (try --rcpt)"
        self._add("dsn", "DSN", status, summary, mail, answer)
        await self._reset()

    async def _reset(self) -> None:
        """Ends the transaction a test opened; nothing was sent, nothing is delivered."""
        await self._command(self.conn.rset(), "RSET")

    # -- the wire --------------------------------------------------------------

    async def _command(self, line: bytes, shown: str) -> Exchange:
        assert self.stream is not None
        began = time.perf_counter()
        try:
            with trio.fail_after(self.options.timeout):
                await self.stream.send_all(line)
                reply = await self._reply()
        except trio.TooSlowError:
            self._add("timeout", shown, "fail", f"no reply within {self.options.timeout:g}s")
            raise _Stop from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, _Closed):
            self._add("closed", shown, "fail", "the server closed the connection")
            raise _Stop from None
        return _exchange(shown, reply, time.perf_counter() - began)

    async def _read(self, shown: str) -> Exchange:
        began = time.perf_counter()
        try:
            with trio.fail_after(self.options.timeout):
                reply = await self._reply()
        except trio.TooSlowError:
            self._add("banner", "Banner", "fail", f"no banner within {self.options.timeout:g}s")
            raise _Stop from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, _Closed) as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                why = f"TLS failed: {_tls_failure(cause)}"
            else:
                why = "the server closed the connection before its banner"
            self._add("banner", "Banner", "fail", why)
            raise _Stop from None
        return _exchange(None, reply, time.perf_counter() - began)

    async def _reply(self) -> Reply:
        conn = self.conn
        assert self.stream is not None
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self._add("protocol", "Reply", "fail", f"not an SMTP reply: {exc}")
                raise _Stop from None
            if event is NEED_DATA:
                conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, Response):
                return event.reply
            else:
                raise _Closed

    def _add(
        self,
        key: str,
        title: str,
        status: Status,
        summary: str,
        *exchanges: Exchange,
        details: dict[str, Any] | None = None,
        severity: Severity | None = None,
        reference: str | None = None,
    ) -> None:
        self.checks.append(
            Check(key, title, status, summary, tuple(exchanges), details or {}, severity, reference)
        )


def _tls_failure(cause: BaseException) -> str:
    """A TLS failure in plain words, the library's own after them."""
    reason = getattr(cause, "reason", None)
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"):
        return (
            "the server answered in plain text, not TLS: this port speaks plain SMTP "
            "(drop --implicit-tls; STARTTLS is tried on plain ports)"
        )
    if isinstance(cause, ssl.SSLError) and reason:
        return f"{reason.replace('_', ' ').lower()} ({cause})"
    return str(cause)


class _Closed(Exception):
    pass


class _CertificateRefused(Exception):
    pass


def _exchange(command: str | None, reply: Reply, seconds: float) -> Exchange:
    return Exchange(command, reply.code, reply.lines, seconds, reply_meaning(reply.code))


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1000:.1f} ms"


def _server_name(capabilities: Capabilities) -> str:
    words = capabilities.greeting.split()
    return words[0] if words else "localhost"


def _certificate_details(stream: trio.SSLStream[Any]) -> dict[str, Any]:
    """Subject, names, issuer, validity, protocol and cipher of the server's certificate."""
    details: dict[str, Any] = {
        "protocol": stream.version(),
        "cipher": (stream.cipher() or ("?",))[0],
    }
    der = stream.getpeercert(binary_form=True)
    details.update(certificate_details(der or b""))
    return details


async def probe(options: ProbeOptions) -> ProbeReport:
    return await Prober(options).run()


__all__ = ["ProbeOptions", "probe"]
