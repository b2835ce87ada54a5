"""The ``smtpbench`` command: argument parsing and wiring, nothing else."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from smtpbench import __version__, exitcodes


class _Version(argparse.Action):
    """``--version``: the version and how the engine runs (compiled or interpreted), looked
    up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from smtpbench.build_info import engine_build

        sys.stdout.write(f"smtpbench {__version__} (engine {engine_build()})\n")
        parser.exit()


def _run_arguments(run: argparse.ArgumentParser) -> None:
    from smtpbench.commands.flags import (
        add_cluster_arguments,
        add_output_arguments,
        add_scenario_argument,
        add_tls_arguments,
        add_workers_argument,
    )
    from smtpbench.scenario.sources import add_source_argument
    from smtpbench.transit.cli import add_through_arguments

    add_scenario_argument(run)
    run.add_argument(
        "--target", metavar="HOST:PORT", help="the server to load (port 25 if omitted)"
    )
    add_source_argument(run)
    load = run.add_mutually_exclusive_group()
    load.add_argument("--rate", metavar="R", help="sessions per second, e.g. 300 or 1200/m")
    load.add_argument("--concurrency", metavar="N", type=int, help="sessions kept in flight")
    run.add_argument("--duration", metavar="D", help="how long to schedule sessions, e.g. 30s, 5m")
    run.add_argument("--sessions", metavar="N", type=int, help="how many sessions to start")
    run.add_argument(
        "--max-concurrency", metavar="N", type=int, help="cap on sessions in flight (rate mode)"
    )
    run.add_argument("--seed", type=int, help="makes generated content and arrivals reproducible")
    add_output_arguments(
        run, headless_help="no dashboard: live lines, then the summary", progress_default="2s"
    )
    run.add_argument(
        "--threshold",
        metavar="EXPR",
        action="append",
        default=[],
        help='a pass/fail criterion such as "p99(DATA end) < 250ms" or "rate(4xx) < 1%%" '
        "(repeatable; added to the scenario's [thresholds]). DATA end is the message's "
        "acceptance (final dot to reply); DATA is only the DATA command's 354 go-ahead",
    )
    run.add_argument(
        "--record-sessions",
        action="store_true",
        help="also write every session's record (steps, times, codes, outcome) to "
        "sessions.ndjson in the results folder",
    )
    run.add_argument(
        "--abort-on-fail",
        action="store_true",
        help="stop the run as soon as a threshold fails for good (exit code 5)",
    )
    add_tls_arguments(run)
    run.add_argument(
        "--abort-grace",
        metavar="D",
        help="time from the start before a failing threshold may stop the run (default 10s)",
    )
    run.add_argument(
        "--keep-going",
        action="store_true",
        help="run on when no session can connect (otherwise the run stops once a few "
        "connects failed and none succeeded, exit code 4)",
    )
    add_workers_argument(run)
    add_cluster_arguments(run)
    add_through_arguments(run)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.report import add_report_arguments

    add_report_arguments(parser)


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.report import add_compare_arguments

    add_compare_arguments(parser)


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.report import add_merge_arguments

    add_merge_arguments(parser)


def _send_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.send.options import add_send_arguments

    add_send_arguments(parser)


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.probe import add_probe_arguments

    add_probe_arguments(parser)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.replay import add_replay_arguments

    add_replay_arguments(parser)


def _scenarios_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.scenarios import add_scenarios_arguments

    add_scenarios_arguments(parser)


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.record import add_record_arguments

    add_record_arguments(parser)


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.import_capture import add_import_arguments

    add_import_arguments(parser)


def _shell_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.shell import add_shell_arguments

    add_shell_arguments(parser)


def _capacity_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.capacity import add_capacity_arguments

    add_capacity_arguments(parser)


def _sink_arguments(parser: argparse.ArgumentParser) -> None:
    from smtpbench.commands.sink import add_sink_arguments

    add_sink_arguments(parser)


# Each command: its one-line help, its description, what adds its arguments. Only the
# command being run gets its arguments (and imports what they need): the rest of the
# package stays unread, which keeps a short run's start short.
_COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": (
        "run a load scenario (against the embedded sink unless a target is given)",
        "Run a load scenario and write a results folder.",
        _run_arguments,
    ),
    "report": (
        "print the summary of a results folder, check thresholds, export, plot",
        "Print the summary of a finished run from its results folder, offline; check "
        "thresholds on it; export it (JSON, CSV, Markdown, HdrHistogram log); draw it.",
        _report_arguments,
    ),
    "compare": (
        "compare runs side by side, with regression rules",
        "Compare results folders side by side against the first (the baseline): per "
        "command and percentile, reply codes, and --fail-if rules.",
        _compare_arguments,
    ),
    "merge": (
        "add the results folders of several machines or processes into one",
        "Add results folders of runs that split one load (several machines or processes) "
        "into one results folder, exactly: histograms, counts and series add up.",
        _merge_arguments,
    ),
    "send": (
        "send one message and show every line said, timed and explained",
        "One message, one transaction, and a transcript a person reads: each line sent and "
        "received, when each reply came, what its codes mean, the TLS details. Exit 0 "
        "accepted, 4 unreachable, 8 refused, 9 TLS failed, 10 AUTH failed, 11 the "
        "conversation broke off.",
        _send_arguments,
    ),
    "probe": (
        "check a mail server by hand, automated: banner, EHLO, TLS, relay, VRFY, DSN",
        "The SMTP health check an admin does in a telnet session, automated and explained. "
        "Exit code 1 when a check fails (an open relay, a bad certificate).",
        _probe_arguments,
    ),
    "replay": (
        "play recorded SMTP traffic back, at any speed, as a run",
        "Replay recordings (several merge by timestamp) against a server or the embedded "
        "sink: each session's commands, pipelined groups and content, at the recorded times "
        "divided by --speed or at a fixed --rate. Writes a results folder like any run, "
        "with per-command divergence from the recorded replies.",
        _replay_arguments,
    ),
    "scenarios": (
        "list the scenarios run finds by name (the examples ship with smtpbench)",
        "List the scenarios `smtpbench run NAME` finds: ./scenarios, then the examples "
        "that ship with smtpbench.",
        _scenarios_arguments,
    ),
    "record": (
        "record real SMTP traffic through a relaying proxy",
        "A recording proxy: clients connect to --listen, every connection is relayed to "
        "--upstream unchanged, and what was said is written to --out.",
        _record_arguments,
    ),
    "import": (
        "turn a capture into a recording (import pcap FILE)",
        "Turn captured SMTP traffic into a recording.",
        _import_arguments,
    ),
    "shell": (
        "an interactive SMTP session: the telnet session done right",
        "Type SMTP commands and read each reply decoded, with completion, history, "
        "STARTTLS, AUTH helpers, a message composer and a lax mode; save the session as a "
        "recording or replay it as a load run. Needs a terminal.",
        _shell_arguments,
    ),
    "capacity": (
        "find the highest rate a server sustains: steps of rising rate, each judged",
        "Raise the rate step by step in one run (then bisect, with --refine), hold each "
        "step, judge its steady part against criteria, and report the highest rate that "
        "held, the first that did not and what broke it, and whether the server or this "
        "machine was the limit.",
        _capacity_arguments,
    ),
    "sink": (
        "an SMTP server that accepts and discards mail, with optional faults",
        "An SMTP sink: accepts and discards mail; injects faults on request.",
        _sink_arguments,
    ),
}


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a command's name), only that command gets
    its arguments: the others are listed, as ``--help`` shows them, without theirs."""
    parser = argparse.ArgumentParser(
        prog="smtpbench",
        description="SMTP load tester and traffic replayer.",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, description, add_arguments) in _COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=description)
        if only is None or name == only:
            add_arguments(command)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first word that is not an option (the top level
    has only ``--help`` and ``--version``, which take no value), when it is one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in _COMMANDS else None
    return None


def _report(args: argparse.Namespace) -> int:
    from smtpbench.commands.report import run_report

    return run_report(args)


def negative_values_joined(argv: Sequence[str]) -> list[str]:
    """``--duration -5s`` as ``--duration=-5s``: argparse takes ``-5s`` for an option and
    says "expected one argument"; joined, the flag's own check says what is wrong."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-\d", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    words = negative_values_joined(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(_command_named(words) or "")
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return exitcodes.OK
    if args.command == "run":
        from smtpbench.commands.run import run_command

        return run_command(args)
    if args.command == "report":
        return _report(args)
    if args.command == "compare":
        from smtpbench.commands.report import run_compare

        return run_compare(args)
    if args.command == "merge":
        from smtpbench.commands.report import run_merge

        return run_merge(args)
    if args.command == "send":
        from smtpbench.commands.send import run_send

        return run_send(args)
    if args.command == "probe":
        from smtpbench.commands.probe import run_probe

        return run_probe(args)
    if args.command == "replay":
        from smtpbench.commands.replay import run_replay

        return run_replay(args)
    if args.command == "scenarios":
        from smtpbench.commands.scenarios import run_scenarios

        return run_scenarios(args)
    if args.command == "record":
        from smtpbench.commands.record import run_record

        return run_record(args)
    if args.command == "import":
        from smtpbench.commands.import_capture import run_import

        return run_import(args)
    if args.command == "shell":
        from smtpbench.commands.shell import run_shell

        return run_shell(args)
    if args.command == "capacity":
        from smtpbench.commands.capacity import run_capacity

        return run_capacity(args)
    if args.command == "sink":
        from smtpbench.commands.sink import run_sink

        return run_sink(args)
    parser.error(f"unknown command {args.command}")
    return exitcodes.BAD_CONFIGURATION
