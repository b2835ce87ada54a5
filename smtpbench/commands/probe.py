"""``smtpbench probe HOST[:PORT]``: flags and exit codes.

Exit codes: 0 when no check failed (warnings allowed), 1 when one did, 2 for bad
flags, 4 when the host name does not resolve.
"""

from __future__ import annotations

import argparse
import ssl

import trio
from rich.console import Console

from smtpbench import exitcodes
from smtpbench.commands.flags import add_server_argument
from smtpbench.engine.transport import TargetError
from smtpbench.probe.render import report_json, report_renderable
from smtpbench.probe.run import (
    DEFAULT_FROM,
    DEFAULT_HELO,
    DEFAULT_RELAY_TO,
    DEFAULT_VRFY,
    ProbeOptions,
    probe,
)


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_argument(parser, "the server (port 25 if omitted)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--implicit-tls",
        action="store_true",
        help="TLS from the first byte (port 465 style) instead of STARTTLS",
    )
    tls.add_argument("--no-tls", action="store_true", help="do not try STARTTLS")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the certificate (it is still shown)",
    )
    parser.add_argument("--ca-file", metavar="PEM", help="CA certificates to verify against")
    parser.add_argument(
        "--sni", metavar="NAME", help="the name to ask for and check (default: the host)"
    )
    parser.add_argument(
        "--helo", metavar="NAME", default=DEFAULT_HELO, help="the name given in EHLO"
    )
    parser.add_argument(
        "--from",
        dest="mail_from",
        metavar="ADDRESS",
        default=DEFAULT_FROM,
        help=f"outside sender for the relay and DSN tests (default {DEFAULT_FROM})",
    )
    parser.add_argument(
        "--to",
        dest="relay_to",
        metavar="ADDRESS",
        default=DEFAULT_RELAY_TO,
        help=f"outside recipient for the relay test (default {DEFAULT_RELAY_TO})",
    )
    parser.add_argument(
        "--rcpt",
        metavar="ADDRESS",
        help="a recipient the server takes, for the DSN test (default postmaster@its name)",
    )
    parser.add_argument(
        "--smuggling-rcpt",
        metavar="ADDRESS",
        help="test SMTP smuggling: one test message per line ending tried is delivered to "
        "ADDRESS, which must be your own (without it the test does not run)",
    )
    parser.add_argument(
        "--vrfy",
        metavar="NAME",
        default=DEFAULT_VRFY,
        help="what VRFY and EXPN ask about (default postmaster)",
    )
    parser.add_argument(
        "--timeout", metavar="D", default="30s", help="wait for each reply (default 30s)"
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")


def options_from_args(args: argparse.Namespace) -> ProbeOptions:
    """``ValueError`` naming the flag."""
    from smtpbench.commands.flags import parse_host_port, server_argument
    from smtpbench.units import parse_duration

    implicit = args.implicit_tls
    args.target = server_argument(args)
    try:
        host, port = parse_host_port(args.target, default_port=465 if implicit else 25)
    except ValueError as err:
        raise ValueError(f"HOST[:PORT]: {err}") from None
    if port == 0:
        raise ValueError("HOST[:PORT]: the port must be above 0")
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as err:
        raise ValueError(f"--timeout: {err}") from None
    if timeout <= 0:
        raise ValueError("--timeout: must be above 0")
    for flag, address in (
        ("--from", args.mail_from),
        ("--to", args.relay_to),
        ("--rcpt", args.rcpt),
        ("--smuggling-rcpt", args.smuggling_rcpt),
    ):
        if address is not None and (
            address.count("@") != 1 or any(c in address for c in " <>\r\n")
        ):
            raise ValueError(
                f"{flag}: expected an address such as user@example.com, got {address!r}"
            )
    if args.ca_file is not None:
        try:
            ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"--ca-file: cannot load {args.ca_file}: {err}") from None
    return ProbeOptions(
        host=host,
        port=port,
        tls="implicit" if implicit else "none" if args.no_tls else "auto",
        verify=not args.insecure,
        ca_file=args.ca_file,
        sni=args.sni,
        helo=args.helo,
        mail_from=args.mail_from,
        relay_to=args.relay_to,
        dsn_rcpt=args.rcpt,
        vrfy=args.vrfy,
        timeout=timeout,
        smuggling_rcpt=args.smuggling_rcpt,
    )


def run_probe(args: argparse.Namespace, console: Console | None = None) -> int:
    errors = Console(stderr=True)
    try:
        options = options_from_args(args)
    except ValueError as err:
        errors.print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.BAD_CONFIGURATION
    try:
        report = trio.run(probe, options)
    except TargetError as err:
        errors.print(f"[red]error:[/] {err}", highlight=False)
        return exitcodes.TARGET_UNUSABLE
    if args.json:
        print(report_json(report))
    else:
        (console or Console()).print(report_renderable(report))
    return exitcodes.THRESHOLDS_FAILED if report.failed else exitcodes.OK
