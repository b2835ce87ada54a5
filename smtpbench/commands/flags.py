"""Flags that several subcommands take alike (``run``, ``capacity``), defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

from smtpbench.scenario.loader import EXAMPLES_DIR


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


__all__ = ["add_output_arguments", "add_scenario_argument", "add_tls_arguments"]
