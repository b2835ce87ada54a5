"""``smtpbench record``: the recording proxy on its own.

The first line on stdout is ``smtpbench record listening on HOST:PORT, recording
to FILE`` (flushed at once, so a script can read the port). SIGINT, SIGTERM or SIGHUP
stops it; the sessions still open are written as they were, a one-line summary
follows, and the exit code is 0. A bad flag gives a message naming it and exit
code 2; an address that cannot be bound, exit code 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import ssl
import sys
from pathlib import Path

import trio

from smtpbench.commands.sink import format_address, parse_listen
from smtpbench.files import OutputError, check_new_file
from smtpbench.servers.proxy import ProxyConfig, serve_proxy

EXIT_USAGE = 2
EXIT_RUNTIME = 1


def _host_port(text: str) -> tuple[str, int]:
    try:
        host, port = parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return host, port


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=_host_port,
        required=True,
        metavar="HOST:PORT",
        help="where clients connect (port 0 picks a free one)",
    )
    parser.add_argument(
        "--upstream",
        type=_host_port,
        required=True,
        metavar="HOST:PORT",
        help="the real server every connection is relayed to",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the recording to write"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the recording --out names if it exists"
    )
    parser.add_argument(
        "--no-content",
        action="store_true",
        help="keep only each message's size and SHA-256, not the message",
    )
    parser.add_argument(
        "--keep-auth",
        action="store_true",
        help="keep AUTH credentials and SASL responses (redacted by default)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="certificate for clients: STARTTLS is terminated at the proxy (without it, "
        "STARTTLS is refused)",
    )
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--upstream-ca",
        metavar="PEM",
        help="check the server's certificate against this CA after STARTTLS (default: no check)",
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (``localhost`` or a loopback address)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _error(flag: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"smtpbench record: error: {flag}: {message}", file=sys.stderr)
    return code


def run_record(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        flag = "--tls-key" if args.tls_key is None else "--tls-cert"
        return _error(flag, "--tls-cert and --tls-key go together")
    host, port = args.listen
    upstream_host, upstream_port = args.upstream
    if upstream_port == 0:
        return _error("--upstream", "the server's port cannot be 0")
    try:
        check_new_file(args.out, force=args.force)
    except OutputError as err:
        return _error("--out", str(err))
    config = ProxyConfig(
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        out=args.out,
        host=host,
        port=port,
        keep_content=not args.no_content,
        redact_auth=not args.keep_auth,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        upstream_ca=args.upstream_ca,
    )
    try:
        from smtpbench.servers.proxy import server_tls_context, upstream_tls_context

        server_tls_context(config)
        if args.upstream_ca is not None:
            upstream_tls_context(config)
    except (OSError, ssl.SSLError) as err:
        flag = "--upstream-ca" if args.upstream_ca and "ca" in str(err).lower() else "--tls-cert"
        return _error(flag, f"cannot load: {err}")
    return trio.run(_serve_until_signalled, config)


async def _serve_until_signalled(config: ProxyConfig) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            try:
                proxy = await nursery.start(serve_proxy, config)
            except OSError as err:
                reason = err.strerror or str(err)
                if err.filename is not None and Path(err.filename) == config.out:
                    return _error("--out", f"cannot write {config.out}: {reason}", EXIT_RUNTIME)
                where = format_address(config.host, config.port)
                return _error("--listen", f"cannot listen on {where}: {reason}", EXIT_RUNTIME)
            print(
                f"smtpbench record listening on {format_address(*proxy.address)}, "
                f"recording to {config.out}",
                flush=True,
            )
            if not is_loopback(config.host):
                print(
                    f"smtpbench record: warning: {format_address(config.host, proxy.address[1])} "
                    "is not a loopback address: every host that reaches it can send mail "
                    f"through the proxy to {config.upstream_host}:{config.upstream_port}",
                    file=sys.stderr,
                    flush=True,
                )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    print(f"smtpbench record stopped: {proxy.stats.summary()}", flush=True)
    return 0
