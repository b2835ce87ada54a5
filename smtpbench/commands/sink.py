"""``smtpbench sink``: run the embedded sink on its own, with faults from flags.

The first line on stdout is ``smtpbench sink listening on HOST:PORT`` (IPv6 in
brackets), flushed at once so that another process can read the port from it.
SIGINT, SIGTERM or SIGHUP stops the sink; a one-line summary follows and the exit code
is 0. A bad flag gives a message naming it and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import mailbox
import os
import signal
import ssl
import sys
from collections.abc import Callable, Sequence

import trio

from smtpbench.faults import KINDS, FaultSpecError, fault_plan_from_flags, parse_fault_flag
from smtpbench.pushback import OPTIONS as PUSHBACK_OPTIONS
from smtpbench.pushback import PushbackError, parse_pushback_option, pushback_from_flags
from smtpbench.servers.sink import SinkConfig, make_ssl_context, serve_sink
from smtpbench.units import parse_duration, parse_rate, parse_size

DEFAULT_LISTEN = "127.0.0.1:2525"
EXIT_USAGE = 2  # argparse's code for a bad command line
EXIT_RUNTIME = 1


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``PORT`` (on 127.0.0.1)."""
    text = text.strip()
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"expected [IPv6]:PORT such as [::1]:2525, got {text!r}")
        host, port_text = text[1:close], text[close + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(
                f"expected HOST:PORT such as 127.0.0.1:2525 ([::1]:2525 for IPv6), got {text!r}"
            )
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected a port number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _argument_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=`` that turns ValueError into argparse's own message."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except FaultSpecError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _fault_flag(kind: str) -> Callable[[str], object]:
    def parse(text: str) -> tuple[str, str]:
        parse_fault_flag(kind, text)  # checked now, so the error names this flag
        return kind, text

    return _argument_type(parse)


def _pushback_flag(key: str) -> Callable[[str], object]:
    def parse(text: str) -> str:
        try:
            parse_pushback_option(key, text)  # checked now, so the error names this flag
        except PushbackError as exc:
            raise ValueError(exc.message) from None
        return text

    return _argument_type(parse)


def _non_negative(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"expected a whole number, 0 or more, got {text!r}")
    return int(text)


def _capacity(text: str) -> float:
    rate = parse_rate(text)
    if rate <= 0:
        raise ValueError(f"a capacity must be above 0 messages/s, got {text!r}")
    return rate


def _credential(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return user, password


def _seconds(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"expected a duration longer than 0 such as 30s or 5m, got {text!r}")
    return seconds


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"expected a whole number, 1 or more, got {text!r}")
    return int(text)


def _size(text: str) -> int:
    size = parse_size(text)
    if size < 1:
        raise ValueError(f"expected a positive size such as 10MiB, got {text!r}")
    return size


_FAULT_HELP = {
    "delay": "wait before replying at STEP: DATA=50ms, RCPT=5ms..20ms",
    "reply": "answer CODE instead at STEP with odds SHARE: RCPT=451:1%%, or with an enhanced "
    "status code of your own: 'RCPT=450 4.7.1:5%%'; repeat for more codes",
    "disconnect": "close the connection instead of replying at STEP: 'DATA end=0.1%%'",
    "garbage": "send a line of garbage instead of the reply at STEP: EHLO=1%%",
    "stall": "hold the Nth reply at STEP (all connections) for DUR, once: MAIL=1s@200",
}
_FAULT_METAVAR = {
    "delay": "STEP=DUR",
    "reply": "STEP=CODE[ ENHANCED]:SHARE",
    "disconnect": "STEP=SHARE",
    "garbage": "STEP=SHARE",
    "stall": "STEP=DUR@N",
}


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``smtpbench sink`` flags; ``run_sink`` reads what they parse to."""
    parser.add_argument(
        "--listen",
        type=_argument_type(parse_listen),
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; port 0 picks a free one; [::1]:2525)",
    )
    parser.add_argument(
        "--hostname",
        default=SinkConfig.hostname,
        help=f"name in the banner and EHLO reply (default {SinkConfig.hostname})",
    )
    faults = parser.add_argument_group("faults (steps by label or name: connect, EHLO, 'DATA end')")
    for kind in KINDS:
        faults.add_argument(
            f"--{kind}",
            dest="fault_flags",
            action="append",
            default=[],
            type=_fault_flag(kind),
            metavar=_FAULT_METAVAR[kind],
            help=_FAULT_HELP[kind],
        )
    faults.add_argument(
        "--shutdown-after",
        type=_argument_type(_non_negative),
        metavar="N",
        help="after N connections, answer 421 to new connections and open sessions, then close",
    )
    faults.add_argument("--seed", type=int, help="seed for the fault draws (default: random)")
    pushback = parser.add_argument_group(
        "pushing back like a real server (a client is its IP address)"
    )
    for option in PUSHBACK_OPTIONS:
        pushback.add_argument(
            option.flag,
            dest=f"pushback_{option.key}",
            action="append" if option.repeat else "store",
            type=_pushback_flag(option.key),
            metavar=option.metavar,
            help=option.help,
        )
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain; offers STARTTLS")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="require a client certificate issued by this CA in the TLS handshake",
    )
    parser.add_argument(
        "--implicit-tls",
        action="store_true",
        help="TLS from the first byte (port 465 style) instead of STARTTLS; needs --tls-cert",
    )
    parser.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        help="do not advertise AUTH (by default PLAIN, LOGIN, CRAM-MD5 and XOAUTH2 take any "
        "credentials)",
    )
    parser.add_argument(
        "--user",
        dest="credentials",
        action="append",
        default=[],
        type=_argument_type(_credential),
        metavar="USER:PASSWORD",
        help="credentials AUTH must match (repeat for more users; for XOAUTH2 the password is "
        "the token)",
    )
    parser.add_argument(
        "--relay-domain",
        dest="relay_domains",
        action="append",
        metavar="DOMAIN",
        help="take recipients in DOMAIN only (repeat for more); others get 554 Relay access "
        "denied. Without it every recipient is taken, as by an open relay",
    )
    parser.add_argument(
        "--lmtp",
        action="store_true",
        help="speak LMTP (RFC 2033): LHLO, and one reply per recipient after the data",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_argument_type(_seconds),
        default=SinkConfig.idle_timeout,
        metavar="DUR",
        help="close a connection with 421 when no command begins within DUR (default 5m, "
        "RFC 5321's server timeout)",
    )
    parser.add_argument(
        "--command-timeout",
        type=_argument_type(_seconds),
        default=SinkConfig.command_timeout,
        metavar="DUR",
        help="close with 421 when a command or message content that has begun makes no "
        "progress within DUR (default 5m)",
    )
    parser.add_argument(
        "--max-connections",
        type=_argument_type(_positive),
        metavar="N",
        help="connections open at once; more are answered 421 and closed (default: what "
        "the open files limit allows)",
    )
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="stop when standard input closes (how `run` ties the embedded sink to itself)",
    )
    parser.add_argument(
        "--capacity",
        type=_argument_type(_capacity),
        metavar="RATE",
        help="serve at most RATE messages a second (e.g. 300/s), queueing the rest: each "
        "message's final reply waits its turn, one every 1/RATE seconds",
    )
    parser.add_argument(
        "--max-size",
        type=_argument_type(_size),
        default=SinkConfig.max_message_size,
        metavar="SIZE",
        help="largest message, advertised as SIZE; bigger ones get 552 (default 50MiB)",
    )


def _error(flag: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"smtpbench sink: error: {flag}: {message}", file=sys.stderr)
    return code


def config_from_args(args: argparse.Namespace) -> SinkConfig:
    """The sink configuration the parsed flags describe; FaultSpecError or ValueError if
    they do not fit together (the error names the flag)."""
    plan = fault_plan_from_flags(args.fault_flags, shutdown_after=args.shutdown_after)
    flags = {option.key: getattr(args, f"pushback_{option.key}") for option in PUSHBACK_OPTIONS}
    try:
        plan = dataclasses.replace(plan, pushback=pushback_from_flags(flags))
    except PushbackError as exc:
        raise FaultSpecError(exc.key, exc.message) from None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise FaultSpecError(
            "--tls-key" if args.tls_key is None else "--tls-cert",
            "--tls-cert and --tls-key go together",
        )
    host, port = args.listen
    try:
        return SinkConfig(
            host=host,
            port=port,
            hostname=args.hostname,
            faults=plan,
            seed=args.seed,
            max_message_size=args.max_size,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            auth=args.auth,
            credentials=tuple(args.credentials),
            lmtp=args.lmtp,
            implicit_tls=args.implicit_tls,
            relay_domains=tuple(args.relay_domains) if args.relay_domains else None,
            idle_timeout=args.idle_timeout,
            command_timeout=args.command_timeout,
            max_connections=args.max_connections,
            capacity=args.capacity,
        )
    except ValueError as exc:
        flag = "--hostname"
        if "implicit" in str(exc):
            flag = "--implicit-tls"
        elif "relay" in str(exc):
            flag = "--relay-domain"
        raise FaultSpecError(flag, str(exc)) from None


def run_sink(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit code for the process."""
    try:
        config = config_from_args(args)
    except FaultSpecError as exc:
        return _error(exc.key, exc.message)
    try:
        make_ssl_context(config)  # read the files now, to blame the right flag
    except (OSError, ssl.SSLError) as exc:
        return _error("--tls-cert", f"cannot load the certificate and key: {exc}")
    maildir = config.pushback.maildir
    if maildir is not None:
        try:
            mailbox.Maildir(maildir, create=True)  # made now, to blame the right flag
        except OSError as exc:
            return _error("--maildir", f"cannot make a maildir at {maildir}: {exc.strerror or exc}")
    return trio.run(_serve_until_signalled, config, args.exit_with_stdin)


async def _stdin_closed() -> None:
    """Returns when standard input reaches its end (the process holding it is gone)."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError, OSError):
            while await stream.receive_some(4096):
                pass


async def _serve_until_signalled(config: SinkConfig, exit_with_stdin: bool = False) -> int:
    sink = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            if exit_with_stdin:

                async def watch() -> None:
                    await _stdin_closed()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
            try:
                sink = await nursery.start(serve_sink, config)
            except OSError as exc:  # the address is taken, not ours, or not a host
                where = format_address(config.host, config.port)
                reason = exc.strerror or str(exc)
                return _error("--listen", f"cannot listen on {where}: {reason}", EXIT_RUNTIME)
            print(f"smtpbench sink listening on {format_address(*sink.address)}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    if sink is not None:
        print(f"smtpbench sink stopped: {sink.stats.summary()}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smtpbench sink",
        description="An SMTP server that accepts mail and discards it, with injectable faults.",
    )
    add_sink_arguments(parser)
    return run_sink(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
