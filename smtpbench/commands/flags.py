"""Flags that several subcommands take alike (``run``, ``replay``, ``capacity``, ``send``
...), and the values they parse, defined once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from smtpbench.scenario.loader import EXAMPLES_DIR

if TYPE_CHECKING:
    from smtpbench.engine.cluster import ClusterSettings


def add_scenario_argument(parser: argparse.ArgumentParser, help_more: str = "") -> None:
    """The scenario: a file, or the name of one in ./scenarios or of an example."""
    names = ", ".join(sorted(path.stem for path in EXAMPLES_DIR.glob("*.toml")))
    parser.add_argument(
        "scenario",
        nargs="?",
        default="default",
        help="a scenario file, or the name of one in ./scenarios or of an example that "
        f"ships with smtpbench: {names} (`smtpbench scenarios` lists them; default: "
        f"default){help_more}",
    )


def add_output_arguments(
    parser: argparse.ArgumentParser, *, headless_help: str, progress_default: str
) -> None:
    """Where results go, and how the run is shown: the dashboard or live lines."""
    parser.add_argument(
        "--out", metavar="DIR", type=Path, default=Path("results"), help="where results go"
    )
    display = parser.add_mutually_exclusive_group()
    display.add_argument("--headless", action="store_true", help=headless_help)
    display.add_argument(
        "--tui", action="store_true", help="the live dashboard even when not on a terminal"
    )
    parser.add_argument(
        "--progress-interval",
        metavar="D",
        default=progress_default,
        help=f"seconds between live lines when headless (default {progress_default})",
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS for every session, instead of the scenario's."""
    parser.add_argument(
        "--tls",
        choices=("none", "starttls", "implicit"),
        help="TLS for every session (instead of the scenario's tls.mode)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's TLS certificate (tls.verify = false)",
    )


def add_server_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The server of a command that talks to one by hand (probe, shell): HOST[:PORT]
    after the command, or ``--target HOST[:PORT]`` as run, replay and capacity take it."""
    parser.add_argument("target", nargs="?", metavar="HOST[:PORT]", help=help)
    parser.add_argument(
        "--target",
        dest="target_flag",
        metavar="HOST[:PORT]",
        help="the same server, given as run, replay and capacity take it",
    )


def server_argument(args: argparse.Namespace) -> str:
    """The server ``add_server_argument`` took; ``ValueError`` when there is none, or
    two that differ."""
    given = [text for text in (args.target, args.target_flag) if text is not None]
    if not given:
        raise ValueError("no server given: HOST[:PORT] after the command, or --target HOST[:PORT]")
    if len(given) == 2 and given[0] != given[1]:
        raise ValueError(f"two servers given: {given[0]} and --target {given[1]}; give one")
    return given[0]


def parse_host_port(text: str, default_port: int = 25) -> tuple[str, int]:
    """``host``, ``host:port``, ``[::1]:port`` or ``::1``; raises ValueError saying why."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"expected [ADDRESS]:PORT, got {text!r}: the ] is missing")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected [ADDRESS]:PORT, got {text!r}")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


CORES = os.cpu_count() or 1


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def flag_duration(flag: str, text: str) -> float:
    """A duration given to ``flag``; ValueError naming the flag."""
    from smtpbench.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        metavar="N",
        type=positive_int,
        help=f"engine processes sharing the load (default: the number of cores, {CORES} "
        "here, one fewer when the embedded sink runs here too); never more than the "
        "sessions allowed in flight",
    )
    parser.add_argument(
        "--ignore-limits",
        action="store_true",
        help="run even when the load asks more of this machine than it has (open files "
        "for --concurrency, cores and memory for --workers)",
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("across machines (a Dask cluster)")
    group.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on the workers of this Dask scheduler (e.g. tcp://10.0.0.5:8786): one "
        "engine on each, sharing one schedule; --workers N uses N engines instead",
    )
    group.add_argument(
        "--per-host",
        metavar="N",
        type=positive_int,
        help="with --cluster: N engines on each host that has Dask workers",
    )
    group.add_argument(
        "--on-host-loss",
        choices=("stop", "continue"),
        default="stop",
        help="with --cluster: when a host dies mid-run, stop the others (default) or let "
        "them go on; either way the results are marked partial and name the host",
    )
    group.add_argument(
        "--max-clock-offset",
        metavar="DURATION",
        default="50ms",
        help="with --cluster: warn about a host whose clock is further than this from "
        "this machine's (default 50ms)",
    )


def cluster_options(args: argparse.Namespace) -> ClusterSettings | None:
    """``--cluster`` and its companions; ValueError naming the flag."""
    from smtpbench.engine.cluster import ClusterSettings
    from smtpbench.units import parse_duration

    if args.cluster is None:
        if args.per_host is not None:
            raise ValueError("--per-host: only with --cluster")
        return None
    if args.per_host is not None and args.workers is not None:
        raise ValueError("--per-host: give it or --workers, not both")
    try:
        offset = parse_duration(args.max_clock_offset)
    except ValueError as err:
        raise ValueError(f"--max-clock-offset: {err}") from None
    address = args.cluster if "://" in args.cluster else f"tcp://{args.cluster}"
    return ClusterSettings(
        address=address,
        workers=args.workers,
        per_host=args.per_host,
        on_host_loss=args.on_host_loss,
        max_clock_offset=offset,
    )


__all__ = [
    "CORES",
    "add_cluster_arguments",
    "add_output_arguments",
    "add_scenario_argument",
    "add_tls_arguments",
    "add_workers_argument",
    "cluster_options",
    "flag_duration",
    "parse_host_port",
    "positive_int",
]
