"""A plain ``smtplib`` client in a thread pool: the Python baseline of
``bench/compare_clients.py``. Each thread takes the next connection from a shared
counter, sends EHLO, then up to ``--per-connection`` messages (MAIL, RCPT, DATA each),
then QUIT, until ``--messages`` messages were sent. With ``--starttls`` each connection
says STARTTLS after its EHLO (``smtplib.SMTP.starttls`` with one SSL context for the
whole run, verifying the server against ``--ca-file``, or not at all with
``--insecure``), then EHLO again, as RFC 3207 asks.

    python bench/smtplib_pool.py --target 127.0.0.1:2525 --threads 20 \
        --messages 20000 --per-connection 100 --size 1024
    python bench/smtplib_pool.py --target 127.0.0.1:2525 --threads 20 \
        --messages 20000 --starttls --ca-file ca.pem

Prints one JSON line: messages accepted, failed, connections and the seconds from the
first thread's start to the last one's end. Loopback or a test server only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import smtplib
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field

SENDER = "sender@smtpbench.test"
RECIPIENT = "user@smtpbench.test"


def build_message(size: int) -> bytes:
    """A plain-text message of exactly ``size`` bytes (CRLF line ends, no lines that
    need dot-stuffing), headers included, when ``size`` leaves room for them."""
    head = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: smtplib pool\r\n"
        "Message-ID: <smtplib-pool@smtpbench.test>\r\n\r\n"
    ).encode()
    left = max(size - len(head), 2)
    line = b"x" * 76 + b"\r\n"
    body = line * (left // len(line))
    rest = left - len(body)
    if rest >= 2:
        body += b"y" * (rest - 2) + b"\r\n"
    return head + body


@dataclass
class Tally:
    accepted: int = 0
    failed: int = 0
    connections: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, accepted: int, failed: int, error: str | None) -> None:
        with self.lock:
            self.accepted += accepted
            self.failed += failed
            self.connections += 1
            if error is not None and len(self.errors) < 5:
                self.errors.append(error)


def connection_sizes(messages: int, per_connection: int) -> list[int]:
    """How many messages each connection carries: full ones, then the remainder."""
    full, rest = divmod(messages, per_connection)
    return [per_connection] * full + ([rest] if rest else [])


def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """The client context for STARTTLS, built once: the system's CAs or ``ca_file``, the
    server's name (or IP address) checked; or no verification at all with ``insecure``."""
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def send_connection(
    host: str,
    port: int,
    count: int,
    message: bytes,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> tuple[int, str | None]:
    """One connection carrying ``count`` messages, after STARTTLS when ``context`` is
    given; how many were taken, and the error."""
    accepted = 0
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo()
            if context is not None:
                client.starttls(context=context)
                client.ehlo()
            for _ in range(count):
                client.sendmail(SENDER, [RECIPIENT], message)
                accepted += 1
    except (OSError, smtplib.SMTPException) as error:
        return accepted, f"{type(error).__name__}: {error}"
    return accepted, None


def worker(
    host: str,
    port: int,
    sizes: list[int],
    ticket: itertools.count[int],
    message: bytes,
    timeout: float,
    context: ssl.SSLContext | None,
    tally: Tally,
) -> None:
    while True:
        index = next(ticket)  # atomic under the GIL: each connection goes to one thread
        if index >= len(sizes):
            return
        accepted, error = send_connection(host, port, sizes[index], message, timeout, context)
        tally.add(accepted, sizes[index] - accepted, error)


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=parse_target, required=True, metavar="HOST:PORT")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20000, help="messages in all")
    parser.add_argument("--per-connection", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--starttls", action="store_true", help="STARTTLS on every connection")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--ca-file", metavar="PEM", help="CAs to verify the server against")
    trust.add_argument("--insecure", action="store_true", help="do not verify the server")
    args = parser.parse_args(argv)
    if (args.ca_file or args.insecure) and not args.starttls:
        parser.error("--ca-file and --insecure need --starttls")
    host, port = args.target
    context = None
    if args.starttls:
        try:
            context = tls_context(args.ca_file, args.insecure)
        except (OSError, ssl.SSLError) as error:
            parser.error(f"--ca-file: {error}")
    message = build_message(args.size)
    sizes = connection_sizes(args.messages, max(args.per_connection, 1))
    tally = Tally()
    ticket = itertools.count()
    threads = [
        threading.Thread(
            target=worker,
            args=(host, port, sizes, ticket, message, args.timeout, context, tally),
            daemon=True,
        )
        for _ in range(args.threads)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "accepted": tally.accepted,
                "failed": tally.failed,
                "connections": tally.connections,
                "message_bytes": len(message),
                "starttls": args.starttls,
                "elapsed": elapsed,
                "errors": tally.errors,
            }
        )
    )
    return 0 if tally.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
