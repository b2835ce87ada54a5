"""Flags of ``smtpbench shell``, the terminal check, and the hand-over to a replay run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from smtpbench import exitcodes
from smtpbench.commands.flags import add_server_argument

if TYPE_CHECKING:
    from smtpbench.shell.app import RepeatRequest


TYPING_GAP = "1ms"


def add_shell_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_argument(parser, "the server (port 25 if omitted)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate after STARTTLS (it is still shown)",
    )
    parser.add_argument(
        "--ca-file", metavar="FILE", help="the CA certificates (PEM) to verify the server with"
    )
    parser.add_argument(
        "--sni", metavar="NAME", help="the name the certificate must carry (default: HOST)"
    )
    parser.add_argument(
        "--timeout",
        metavar="D",
        default="30s",
        help="how long a reply may take before the shell says it is late (default 30s)",
    )
    parser.add_argument(
        "--lax", action="store_true", help="start in lax mode: lines go out exactly as typed"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=Path("results"),
        help="where the results of /repeat go (default results)",
    )


def _error(message: str) -> int:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    return exitcodes.BAD_CONFIGURATION


def run_shell(args: argparse.Namespace) -> int:
    from smtpbench.commands.flags import parse_host_port, server_argument
    from smtpbench.engine.tls import SessionSetupError, client_context, server_name
    from smtpbench.scenario.model import Tls
    from smtpbench.units import parse_duration

    try:
        args.target = server_argument(args)
    except ValueError as err:
        return _error(str(err))
    try:
        host, port = parse_host_port(args.target)
    except ValueError as err:
        return _error(f"HOST[:PORT]: {err}")
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as err:
        return _error(f"--timeout: {err}")
    if timeout <= 0:
        return _error(f"--timeout: must be longer than 0 seconds, got {args.timeout}")
    try:
        tls = Tls(mode="starttls", verify=not args.insecure, sni=args.sni, ca_file=args.ca_file)
        context = client_context(tls)
    except ValueError as err:
        return _error(f"--sni: {err}")
    except SessionSetupError as err:
        return _error(str(err).replace("tls.ca_file", "--ca-file"))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _error(
            "smtpbench shell is interactive and needs a terminal; without one, "
            "`smtpbench probe HOST` checks a server and `smtpbench replay FILE` sends a "
            "recorded session"
        )
    from smtpbench.shell.app import RepeatRequest, ShellApp
    from smtpbench.shell.driver import ShellSettings

    settings = ShellSettings(
        host=host,
        port=port,
        tls_context=context,
        server_hostname=server_name(tls, host),
        reply_timeout=timeout,
    )
    result = ShellApp(settings, lax=args.lax).run()
    if isinstance(result, RepeatRequest):
        return repeat(result, args.target, args.out)
    return exitcodes.OK


def repeat(request: RepeatRequest, target: str, out: Path) -> int:
    """The saved session replayed ``count`` times at ``rate`` a second: the ``replay``
    command's own parsing and run (on the dashboard, from a terminal)."""
    from smtpbench.commands.replay import add_replay_arguments, run_replay

    parser = argparse.ArgumentParser(prog="smtpbench replay")
    add_replay_arguments(parser)
    argv = [request.path, "--target", target, "--rate", request.rate]
    # The pauses of a session typed by hand are the typing: capped, not repeated.
    argv += ["--loop", str(request.count), "--max-gap", TYPING_GAP, "--out", str(out)]
    if request.user is not None:
        argv += ["--user", request.user]  # the password from /auth crosses in memory
    print(f"smtpbench replay {' '.join(argv)}", file=sys.stderr)
    args = parser.parse_args(argv)
    args.password = request.password
    return run_replay(args)
