"""``smtpbench import pcap FILE``: a capture of plaintext SMTP turned into a recording."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smtpbench import exitcodes
from smtpbench.files import OutputError, check_new_file
from smtpbench.recording.writer import write_recording


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="import_kind", metavar="KIND", required=True)
    pcap = kinds.add_parser(
        "pcap",
        help="a tcpdump capture (pcap or pcapng) of plaintext SMTP",
        description="Turn a capture of plaintext SMTP (pcap or pcapng) into a recording; "
        "connections that cannot be put back together are reported and left out.",
    )
    pcap.add_argument("capture", type=Path, metavar="FILE", help="the capture")
    pcap.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the recording to write (default: the capture's name with .jsonl)",
    )
    pcap.add_argument(
        "--port",
        dest="ports",
        type=int,
        action="append",
        metavar="N",
        help="only connections to this server port (repeatable; default: every connection "
        "whose SYN is in the capture)",
    )
    pcap.add_argument(
        "--no-content", action="store_true", help="keep only message sizes and SHA-256"
    )
    pcap.add_argument(
        "--keep-auth", action="store_true", help="keep AUTH credentials (redacted by default)"
    )
    pcap.add_argument(
        "--force", action="store_true", help="replace the recording --out names if it exists"
    )


def run_import(args: argparse.Namespace) -> int:
    # Here, not at the top: dpkt is read only by this command, not by every start-up.
    from smtpbench.recording.pcap import CaptureError, import_pcap

    out: Path = args.out or args.capture.with_suffix(".jsonl")
    try:
        check_new_file(out, force=args.force)
    except OutputError as err:
        print(f"smtpbench import pcap: error: --out {err}", file=sys.stderr)
        return exitcodes.BAD_CONFIGURATION
    try:
        result = import_pcap(
            args.capture,
            ports=frozenset(args.ports) if args.ports else None,
            keep_content=not args.no_content,
            redact_auth=not args.keep_auth,
        )
    except CaptureError as err:
        print(f"smtpbench import pcap: error: {err}", file=sys.stderr)
        return exitcodes.BAD_CONFIGURATION
    sessions = result.recording.sessions
    for problem in result.problems:
        print(f"  {problem}", file=sys.stderr)
    if not sessions:
        print(
            f"smtpbench import pcap: error: {args.capture}: no SMTP session could be followed "
            f"in {result.packets} packets",
            file=sys.stderr,
        )
        return exitcodes.BAD_CONFIGURATION
    try:
        write_recording(out, result.recording)
    except OutputError as err:
        print(f"smtpbench import pcap: error: {err}", file=sys.stderr)
        return exitcodes.RESULTS_NOT_WRITTEN
    left_out = sum(1 for problem in result.problems if ": left out: " in problem)
    print(
        f"{len(sessions)} sessions from {result.packets} packets written to {out}"
        + (f"; {left_out} connections left out (above)" if left_out else "")
    )
    return exitcodes.OK
