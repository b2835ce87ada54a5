"""The flags of ``run --through`` and what they become."""

from __future__ import annotations

import argparse

from smtpbench.transit.run import DEFAULT_DRAIN, TransitOptions


def add_through_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--through",
        metavar="HOST:PORT",
        help="measure transit through the target: a receiving sink listens here, the "
        "target relays the test domain to it, and each message's arrival is matched to "
        "its send (queue delay, not arrived, duplicates, altered); see docs/transit.md",
    )
    parser.add_argument(
        "--through-drain",
        metavar="D",
        help=f"with --through: how long to wait for messages still on their way once "
        f"sending ends (default {DEFAULT_DRAIN:g}s)",
    )


def through_options(args: argparse.Namespace) -> TransitOptions | None:
    """``--through`` and ``--through-drain`` checked; ValueError naming the flag."""
    from smtpbench.commands.flags import flag_duration, parse_host_port

    if args.through is None:
        if args.through_drain is not None:
            raise ValueError("--through-drain: only with --through")
        return None
    if not args.target:
        raise ValueError(
            "--through: needs --target, the server under test that relays to it (the "
            "embedded sink relays nothing)"
        )
    try:
        host, port = parse_host_port(args.through, default_port=25)
    except ValueError as err:
        raise ValueError(f"--through: {err}") from None
    drain = DEFAULT_DRAIN
    if args.through_drain is not None:
        drain = flag_duration("--through-drain", args.through_drain)
    return TransitOptions(host, port, drain)
