"""``smtpbench send``: its flags, checked into ``SendOptions`` (``UsageError`` names the flag).

The flags follow swaks where swaks has one: ``--server``, ``--from``, ``--to``,
``--header``, ``--body``, ``--attach``, ``--helo``, ``--auth``, ``--quit-after``,
``--pipelining``. The password is never a flag unless asked for by name
(``--password-from-flag``): it comes from the environment variable
SMTPBENCH_PASSWORD, or from a prompt on a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from smtpbench.scenario.model import (
    AUTH_MECHANISMS,
    DEFAULT_PASSWORD_ENV,
    DEFAULT_USERNAME_ENV,
    NO_DSN,
    Dsn,
)
from smtpbench.units import parse_duration, parse_size

# Where a session may stop, in the order a session reaches them.
QUIT_AFTER = ("connect", "banner", "ehlo", "tls", "auth", "mail", "rcpt", "data")
TLS_MODES = ("none", "starttls", "implicit")


class UsageError(ValueError):
    """A flag's value cannot be used: the message names the flag."""


@dataclass(frozen=True, slots=True)
class SendOptions:
    host: str
    port: int
    mail_from: str
    recipients: tuple[str, ...]
    helo: str
    content: bytes  # the message as it goes after DATA (CRLF line ends), not dot-stuffed
    tls: str = "none"
    verify: bool = True
    ca_file: str | None = None
    sni: str | None = None
    auth: str | None = None
    user: str = ""
    password: str = field(default="", repr=False)
    pipelining: bool = False
    bdat: bool = False
    chunk_size: int = 65536
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: Dsn = NO_DSN
    envid: str | None = None
    quit_after: str | None = None
    lmtp: bool = False
    timeout: float = 30.0
    json: bool = False


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where")
    where.add_argument(
        "--server",
        "--target",
        "-s",
        metavar="HOST[:PORT]",
        default="localhost",
        help="the server (default localhost, port 25; 465 with --tls implicit; 24 with --lmtp)",
    )
    where.add_argument(
        "--timeout", metavar="D", default="30s", help="wait for each reply (default 30s)"
    )
    envelope = parser.add_argument_group("envelope")
    envelope.add_argument(
        "--from",
        "-f",
        dest="mail_from",
        metavar="ADDRESS",
        help="the envelope sender, MAIL FROM (default you@this host); '' for the null sender <>",
    )
    envelope.add_argument(
        "--to",
        "-t",
        dest="to",
        metavar="ADDRESS",
        action="append",
        default=[],
        help="a recipient, RCPT TO (repeat for more; commas also separate)",
    )
    envelope.add_argument(
        "--helo", metavar="NAME", help="the name given in EHLO (default this host's name)"
    )
    envelope.add_argument(
        "--lmtp", action="store_true", help="speak LMTP: LHLO, a reply per recipient"
    )
    message = parser.add_argument_group("message")
    message.add_argument(
        "--header",
        metavar='"NAME: VALUE"',
        action="append",
        default=[],
        help="a header to add, or to replace one of the defaults (repeatable)",
    )
    message.add_argument("--subject", metavar="TEXT", help="the Subject header")
    message.add_argument(
        "--body",
        metavar="TEXT|@FILE|-",
        help="the body: text, @FILE for a file's text, - for stdin",
    )
    message.add_argument(
        "--attach",
        metavar="FILE",
        action="append",
        default=[],
        help="attach a file, its content type guessed from its name (repeatable)",
    )
    message.add_argument(
        "--eml",
        metavar="FILE",
        help="send this message file as it is (no header or body flags with it)",
    )
    esmtp = parser.add_argument_group("extensions")
    esmtp.add_argument(
        "--pipelining",
        action="store_true",
        help="MAIL, RCPT and DATA in one write (the server must offer PIPELINING)",
    )
    esmtp.add_argument("--bdat", action="store_true", help="send the message with BDAT (CHUNKING)")
    esmtp.add_argument(
        "--chunk-size", metavar="SIZE", default="64KiB", help="BDAT chunk size (default 64KiB)"
    )
    esmtp.add_argument("--8bitmime", dest="eightbitmime", action="store_true", help="BODY=8BITMIME")
    esmtp.add_argument("--smtputf8", action="store_true", help="SMTPUTF8 on MAIL FROM")
    esmtp.add_argument(
        "--dsn",
        metavar='"notify=... ret=... envid=..."',
        help="delivery status notifications, e.g. 'notify=success,failure ret=hdrs envid=ID'",
    )
    tls = parser.add_argument_group("TLS and AUTH")
    tls.add_argument("--tls", choices=TLS_MODES, default="none", help="TLS mode (default none)")
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the certificate (it is still shown)"
    )
    tls.add_argument("--ca-file", metavar="PEM", help="CA certificates to verify against")
    tls.add_argument(
        "--sni", metavar="NAME", help="the name to ask for and check (default the host)"
    )
    tls.add_argument(
        "--auth", metavar="MECH", type=str.upper, help=f"AUTH with {', '.join(AUTH_MECHANISMS)}"
    )
    tls.add_argument(
        "--user", metavar="NAME", help=f"the AUTH user name (default ${DEFAULT_USERNAME_ENV})"
    )
    tls.add_argument(
        "--password-from-flag",
        metavar="PASSWORD",
        dest="password",
        help=f"the password on the command line, seen by anyone who lists processes: prefer "
        f"${DEFAULT_PASSWORD_ENV} or the prompt",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--quit-after",
        metavar="STEP",
        type=str.lower,
        choices=QUIT_AFTER,
        help=f"stop after this step: {', '.join(QUIT_AFTER)}",
    )
    out.add_argument("--json", action="store_true", help="the transcript as JSON on stdout")


def _address(flag: str, value: str, *, empty_ok: bool = False) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not value and empty_ok:
        return ""
    if value.count("@") != 1 or any(c in value for c in " <>\r\n\t") or value.startswith("@"):
        raise UsageError(f"{flag}: expected an address such as user@example.com, got {value!r}")
    return value


def parse_dsn(text: str) -> tuple[Dsn, str | None]:
    """``notify=success,failure ret=hdrs envid=ID orcpt``, words in any order: the DSN
    parameters and the envelope id (sent as given, xtext-encoded)."""
    notify: tuple[str, ...] = ()
    ret = envid = None
    orcpt = False
    for word in text.split():
        key, _, value = word.partition("=")
        key = key.lower()
        if key == "notify" and value:
            notify = tuple(part.upper() for part in value.split(",") if part)
        elif key == "ret" and value:
            ret = value
        elif key == "envid" and value:
            envid = value
        elif key == "orcpt" and not value:
            orcpt = True
        else:
            raise UsageError(
                f"--dsn: unknown part {word!r}; expected notify=..., ret=full|hdrs, envid=ID, orcpt"
            )
    if envid is not None and (len(envid) > 100 or any(not 33 <= ord(c) <= 126 for c in envid)):
        raise UsageError(f"--dsn: envid is up to 100 printable ASCII characters, got {envid!r}")
    try:
        return Dsn(notify=notify, ret=ret, orcpt=orcpt), envid
    except ValueError as err:
        raise UsageError(f"--dsn: {err}") from None


def options_from_args(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    stdin: Callable[[], bytes] | None = None,
) -> SendOptions:
    """``UsageError`` naming the flag; reads --body, --attach and --eml files."""
    from smtpbench.commands.flags import parse_host_port
    from smtpbench.send.message import MessageSpec, build_message

    env = os.environ if environ is None else environ
    default_port = 465 if args.tls == "implicit" else 24 if args.lmtp else 25
    try:
        host, port = parse_host_port(args.server, default_port=default_port)
    except ValueError as err:
        raise UsageError(f"--server: {err}") from None
    if port == 0:
        raise UsageError("--server: the port must be above 0")
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as err:
        raise UsageError(f"--timeout: {err}") from None
    if timeout <= 0:
        raise UsageError("--timeout: must be above 0")
    try:
        chunk_size = parse_size(args.chunk_size)
    except ValueError as err:
        raise UsageError(f"--chunk-size: {err}") from None
    if chunk_size <= 0:
        raise UsageError("--chunk-size: must be above 0")
    recipients = tuple(
        _address("--to", part) for value in args.to for part in value.split(",") if part.strip()
    )
    if not recipients and args.quit_after not in ("connect", "banner", "ehlo", "tls", "auth"):
        raise UsageError("--to: at least one recipient is needed")
    hostname = socket.getfqdn() or "localhost"
    if args.mail_from is None:
        mail_from = (
            f"{getpass.getuser()}@{hostname if '.' in hostname else hostname + '.localdomain'}"
        )
    else:
        mail_from = _address("--from", args.mail_from, empty_ok=True)
    helo = args.helo or hostname
    if any(c.isspace() for c in helo) or not helo:
        raise UsageError(f"--helo: the name must be one word, got {helo!r}")
    dsn, envid = parse_dsn(args.dsn) if args.dsn else (NO_DSN, None)
    if args.ca_file is not None:
        try:
            ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"--ca-file: cannot load {args.ca_file}: {err}") from None
    if args.tls == "none" and (args.insecure or args.ca_file or args.sni):
        raise UsageError("--insecure, --ca-file and --sni need --tls starttls or --tls implicit")
    user, password = "", ""
    if args.auth is not None:
        if args.auth not in AUTH_MECHANISMS:
            raise UsageError(f"--auth: one of {', '.join(AUTH_MECHANISMS)}, got {args.auth!r}")
        user = args.user or env.get(DEFAULT_USERNAME_ENV, "")
        if not user:
            raise UsageError(
                f"--user: AUTH {args.auth} needs a user name (or ${DEFAULT_USERNAME_ENV})"
            )
        password = args.password if args.password is not None else env.get(DEFAULT_PASSWORD_ENV, "")
        if not password:
            if prompt is None and not sys.stdin.isatty():
                raise UsageError(
                    f"--auth: no password: set ${DEFAULT_PASSWORD_ENV} (no terminal to prompt on)"
                )
            ask = prompt or getpass.getpass
            password = ask(f"Password for {user}: ")
            if not password:
                raise UsageError("--auth: an empty password")
    elif args.user or args.password:
        raise UsageError("--user and --password-from-flag need --auth MECH")

    if args.eml is not None:
        given = [
            flag
            for flag, value in (
                ("--header", args.header),
                ("--subject", args.subject),
                ("--body", args.body),
                ("--attach", args.attach),
            )
            if value
        ]
        if given:
            raise UsageError(f"--eml: sends the file as it is; {', '.join(given)} cannot change it")
        content = _read("--eml", args.eml)
    else:
        headers: list[tuple[str, str]] = []
        for value in args.header:
            name, colon, text = value.partition(":")
            name = name.strip()
            if not colon or not name or any(c.isspace() or not 33 <= ord(c) <= 126 for c in name):
                raise UsageError(f'--header: expected "Name: value", got {value!r}')
            if "\r" in text or "\n" in text:
                raise UsageError(f"--header: {name} contains a line break")
            headers.append((name, text.strip()))
        body = None
        if args.body is not None:
            if args.body == "-":
                body = (stdin or sys.stdin.buffer.read)()
            elif args.body.startswith("@"):
                body = _read("--body", args.body[1:])
            else:
                body = args.body.encode("utf-8")
        attachments = []
        for path in args.attach:
            attachments.append((Path(path).name, _read("--attach", path)))
        spec = MessageSpec(
            mail_from=mail_from,
            recipients=recipients,
            subject=args.subject,
            headers=tuple(headers),
            body=body,
            attachments=tuple(attachments),
            hostname=helo,
            eightbit=args.eightbitmime or args.smtputf8,
        )
        try:
            content = build_message(spec)
        except ValueError as err:
            raise UsageError(f"--body: {err}") from None
    return SendOptions(
        host=host,
        port=port,
        mail_from=mail_from,
        recipients=recipients,
        helo=helo,
        content=content,
        tls=args.tls,
        verify=not args.insecure,
        ca_file=args.ca_file,
        sni=args.sni,
        auth=args.auth,
        user=user,
        password=password,
        pipelining=args.pipelining,
        bdat=args.bdat,
        chunk_size=chunk_size,
        eightbitmime=args.eightbitmime,
        smtputf8=args.smtputf8,
        dsn=dsn,
        envid=envid,
        quit_after=args.quit_after,
        lmtp=args.lmtp,
        timeout=timeout,
        json=args.json,
    )


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"{flag}: cannot read {path}: {err.strerror or err}") from None


__all__ = ["QUIT_AFTER", "SendOptions", "UsageError", "add_send_arguments", "options_from_args"]
