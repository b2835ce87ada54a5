"""``smtpbench replay``: recorded traffic played back as an ordinary run (same live display,
results folder and report), or with ``--dry-run`` only described."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from smtpbench import exitcodes
from smtpbench.commands.start import usage_error
from smtpbench.engine.replay_plan import DryRun, dry_run
from smtpbench.scenario.model import AUTH_MECHANISMS, DEFAULT_PASSWORD_ENV, Auth
from smtpbench.scenario.sources import add_source_argument, source_option
from smtpbench.units import format_duration, parse_duration, parse_rate

PROBLEMS_SHOWN = 20


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recordings",
        nargs="+",
        metavar="RECORDING",
        help="recording files (several merge by timestamp)",
    )
    parser.add_argument(
        "--target", metavar="HOST:PORT", help="the server to replay to (default: the embedded sink)"
    )
    add_source_argument(parser)
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--speed",
        metavar="X",
        type=float,
        default=1.0,
        help="play X times as fast: recorded times divided by X (default 1)",
    )
    timing.add_argument(
        "--rate",
        metavar="R",
        help="start sessions at this fixed rate instead of the recorded times (300, 1200/m)",
    )
    parser.add_argument(
        "--loop", metavar="N", type=int, default=1, help="play the recording N times (default 1)"
    )
    parser.add_argument(
        "--max-gap",
        metavar="D",
        help="cap every pause (between sessions and within them) at D, e.g. 2s",
    )
    parser.add_argument(
        "--unique",
        action="store_true",
        help="new envelope addresses and Message-IDs on every pass (servers that drop "
        "duplicates count every message)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print sessions, command mix, expected duration and anything out of order; "
        "send nothing",
    )
    parser.add_argument("--seed", type=int, help="makes the --unique tags reproducible")
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="log in as NAME where the recording left the credentials out (AUTH with the "
        f"recorded mechanism); the password from ${DEFAULT_PASSWORD_ENV}, the prompt or "
        "--password-from-flag",
    )
    parser.add_argument(
        "--password-from-flag",
        metavar="PASSWORD",
        dest="password",
        help="the password on the command line, seen by anyone who lists processes: prefer "
        f"${DEFAULT_PASSWORD_ENV} or the prompt",
    )
    parser.add_argument(
        "--max-concurrency", metavar="N", type=int, help="cap on sessions in flight (default 1000)"
    )
    parser.add_argument(
        "--grace",
        metavar="D",
        help="once the last session has started, how long those still in flight get to "
        "finish before they are cut (default 10s)",
    )
    parser.add_argument(
        "--out", metavar="DIR", type=Path, default=Path("results"), help="where results go"
    )
    display = parser.add_mutually_exclusive_group()
    display.add_argument("--headless", action="store_true", help="no dashboard")
    display.add_argument("--tui", action="store_true", help="the dashboard even off a terminal")
    parser.add_argument(
        "--progress-interval",
        metavar="D",
        default="2s",
        help="seconds between live lines when not on a terminal (default 2s)",
    )
    parser.add_argument(
        "--threshold",
        metavar="EXPR",
        action="append",
        default=[],
        help='a pass/fail criterion such as "p99(DATA end) < 250ms" (repeatable; DATA end is '
        "the message's acceptance, DATA only the 354 go-ahead)",
    )
    parser.add_argument(
        "--abort-on-fail", action="store_true", help="stop as soon as a threshold fails for good"
    )
    parser.add_argument("--abort-grace", metavar="D", help=argparse.SUPPRESS)
    from smtpbench.commands.flags import add_cluster_arguments, add_workers_argument

    add_workers_argument(parser)
    add_cluster_arguments(parser)


def dry_run_table(report: DryRun, left_out: Counter[str] | None = None) -> Table:
    table = Table(title="Replay plan (nothing sent)", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    passes = f" x {report.passes} passes" if report.passes > 1 else ""
    table.add_row("sessions", f"{report.sessions:,}{passes} = {report.scheduled:,} scheduled")
    table.add_row("messages", f"{report.messages:,} ({report.content_bytes:,} bytes of content)")
    mix = ", ".join(f"{verb} {count:,}" for verb, count in report.commands.most_common())
    table.add_row("commands", mix or "none")
    table.add_row("last session starts", f"after {format_duration(report.schedule_span)}")
    table.add_row("expected duration", format_duration(report.expected_duration))
    if left_out:
        names = ", ".join(f"{name} {count:,}" for name, count in left_out.most_common())
        table.add_row(
            "credentials left out",
            f"{sum(left_out.values()):,} sessions (AUTH {names}): log in with --user",
        )
    table.add_row("out of order", f"{len(report.problems):,}" if report.problems else "nothing")
    return table


def login(
    args: argparse.Namespace,
    left_out: Counter[str],
    recordings: tuple[str, ...],
    prompt: Callable[[str], str] | None = None,
) -> Auth | None:
    """The credentials to log in with where the recordings left them out (``--user``),
    or None; a warning on stderr when they leave some out and none are given, or when a
    mechanism cannot be done live. ``ValueError`` for a user without a password."""
    sessions = sum(left_out.values())
    names = ", ".join(f"{name} ({count:,})" for name, count in left_out.most_common())
    where = ", ".join(recordings)
    if args.user is None:
        if args.password is not None:
            raise ValueError("--password-from-flag needs --user NAME")
        if sessions:
            warn(
                f"{where}: {sessions:,} sessions log in with credentials the recording left "
                f"out (AUTH {names}); without --user NAME and ${DEFAULT_PASSWORD_ENV} their "
                "AUTH goes out bare and fails"
            )
        return None
    if not args.user or any(c.isspace() for c in args.user):
        raise ValueError(f"--user: a user name, one word, got {args.user!r}")
    usable = [name for name in left_out if name in AUTH_MECHANISMS]
    if not sessions:
        warn(f"{where}: no AUTH with its credentials left out: --user is not used")
        return None
    unusable = sorted(set(left_out) - set(usable))
    if unusable:
        warn(
            f"{where}: AUTH {', '.join(unusable)} cannot be done with --user (only "
            f"{', '.join(AUTH_MECHANISMS)}): those sessions' AUTH goes out as recorded"
        )
    password = args.password if args.password is not None else os.environ.get(DEFAULT_PASSWORD_ENV)
    if not password:
        if prompt is None and not sys.stdin.isatty():
            raise ValueError(
                f"--user: no password: set ${DEFAULT_PASSWORD_ENV} (no terminal to prompt on)"
            )
        password = (prompt or getpass.getpass)(f"Password for {args.user}: ")
        if not password:
            raise ValueError("--user: an empty password")
    return Auth(mechanism=usable[0] if usable else "PLAIN", username=args.user, password=password)


def warn(text: str) -> None:
    """A warning before the run; ``text`` may name files, which rich must not read as
    markup."""
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


def run_replay(args: argparse.Namespace) -> int:
    from smtpbench.commands.flags import cluster_options, flag_duration, parse_host_port
    from smtpbench.commands.start import default_workers, with_threshold_flags
    from smtpbench.engine.replay import (
        PreparedReplay,
        ReplayJob,
        logins_left_out,
        replay_scenario,
    )
    from smtpbench.recording import RecordingError
    from smtpbench.run.headless import stdout_is_terminal
    from smtpbench.run.options import RunOptions

    try:
        rate = parse_rate(args.rate) if args.rate is not None else None
        max_gap = parse_duration(args.max_gap) if args.max_gap is not None else None
        grace = flag_duration("--grace", args.grace) if args.grace is not None else None
        interval = parse_duration(args.progress_interval)
        job = ReplayJob(
            tuple(str(path) for path in args.recordings),
            speed=args.speed,
            rate=rate,
            loop=args.loop,
            max_gap=max_gap,
            unique=args.unique,
        )
        host = port = None
        if args.target:
            host, port = parse_host_port(args.target)
        cluster = cluster_options(args)
    except ValueError as err:
        return usage_error(str(err))
    try:
        recordings = job.read()
    except RecordingError as err:
        return usage_error(str(err))
    if not any(recording.sessions for recording in recordings):
        return usage_error(f"{', '.join(job.recordings)}: no sessions to replay")
    if args.dry_run:
        report = dry_run(recordings, speed=job.speed, rate=rate, loop=job.loop, max_gap=max_gap)
        console = Console()
        console.print(dry_run_table(report, logins_left_out(job.timeline(recordings))))
        for line in report.problems[:PROBLEMS_SHOWN]:
            console.print(f"  [yellow]{line}[/]", highlight=False)
        if len(report.problems) > PROBLEMS_SHOWN:
            console.print(f"  ... and {len(report.problems) - PROBLEMS_SHOWN} more")
        return exitcodes.OK
    timeline = job.timeline(recordings)
    try:
        auth = login(args, logins_left_out(timeline), job.recordings)
    except ValueError as err:
        return usage_error(str(err))
    try:
        scenario = replay_scenario(
            job,
            timeline,
            host=host,
            port=port or 25,
            source=source_option(args.source) or (),
            seed=args.seed,
            auth=auth,
            **({"max_concurrency": args.max_concurrency} if args.max_concurrency else {}),
            **({"grace": grace} if grace is not None else {}),
        )
        scenario = with_threshold_flags(scenario, args)
        from smtpbench.transit.run import check_transit_thresholds

        check_transit_thresholds(scenario.thresholds.checks, through=False)
    except ValueError as err:
        return usage_error(str(err))
    options = RunOptions(
        scenario=scenario,
        results_base=args.out,
        progress_interval=max(0.1, interval),
        terminal=stdout_is_terminal(),
        replay=PreparedReplay(job, timeline),  # read and merged once, here
        workers=args.workers or default_workers(scenario),
        cluster=cluster,
    )
    from smtpbench.commands.start import start_run

    return start_run(options, args)
