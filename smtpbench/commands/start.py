"""What ``run`` and ``replay`` (and ``capacity``) do once the command line is read: the
flags applied to the scenario, the machine's limits and the output folder checked,
then the run under the dashboard or headless; errors said in one line."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from rich.console import Console

from smtpbench import exitcodes
from smtpbench.commands.flags import CORES

if TYPE_CHECKING:
    from smtpbench.run.options import RunOptions
    from smtpbench.scenario import Scenario


def usage_error(message: str) -> int:
    """Says what is wrong on one line; the exit code of a bad command line or scenario."""
    from rich.markup import escape

    # Messages quote TOML tables ("in [load]"), which rich would take for markup.
    # One line however long: a wrapped error is harder to read and to grep.
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    return exitcodes.BAD_CONFIGURATION


def note(message: str) -> None:
    from rich.markup import escape

    Console(stderr=True).print(f"[yellow]note:[/] {escape(message)}", highlight=False)


def check_limits(scenario: Scenario, workers: int, ignore: bool) -> str | None:
    """Why the run cannot run on this machine (``--ignore-limits`` runs it anyway), or
    None; lifts the soft open files limit as far as the run needs and the hard one allows."""
    from smtpbench.limits import check_run, open_files_needed, raise_open_files, this_machine

    embedded = scenario.target.host is None
    raise_open_files(open_files_needed(scenario.load, workers, embedded))
    problems = check_run(scenario.load, workers, embedded, this_machine())
    if not problems or ignore:
        return None
    return "; ".join(problems) + " (--ignore-limits runs it anyway)"


def default_workers(scenario: Scenario) -> int:
    """Every core; the embedded sink runs on this machine too, so it keeps one (measured:
    on two cores, a second worker takes the sink's CPU and lowers throughput)."""
    return max(1, CORES - 1) if scenario.target.host is None else CORES


def start_run(options: RunOptions, args: argparse.Namespace) -> int:
    """What ``run`` and ``replay`` do once their options are built: the machine's limits
    and the output folder checked before the first session, then the run, with the
    dashboard on a terminal (or ``--tui``), headless otherwise."""
    if options.cluster is None:
        refused = check_limits(options.scenario, options.worker_count, args.ignore_limits)
    elif options.scenario.target.host is None:
        # The engines run on the cluster's hosts, which check their own limits before the
        # start; here runs the embedded sink, which serves every session.
        refused = check_limits(options.scenario, 1, args.ignore_limits)
    else:
        refused = None
    if refused is not None:
        return usage_error(refused)
    from smtpbench.files import OutputError, check_output_folder

    try:
        check_output_folder(args.out)
    except OutputError as err:
        return usage_error(f"--out {err}")
    if args.tui or (options.terminal and not args.headless):
        from smtpbench.run.dashboard import run_dashboard

        return run_dashboard(options)
    from smtpbench.run.headless import run_headless

    return run_headless(options)


def with_threshold_flags(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the command line's thresholds added; errors name the flag."""
    from smtpbench.thresholds import ThresholdError, parse_threshold
    from smtpbench.units import parse_duration

    extra = []
    for text in args.threshold:
        try:
            extra.append(parse_threshold(text))
        except ThresholdError as err:
            raise ValueError(f"--threshold {err}") from None
    settings = scenario.thresholds.with_checks(extra)
    if args.abort_on_fail:
        settings = dataclasses.replace(settings, abort_on_fail=True)
    if args.abort_grace is not None:
        try:
            grace = parse_duration(args.abort_grace)
        except ValueError as err:
            raise ValueError(f"--abort-grace: {err}") from None
        settings = dataclasses.replace(settings, abort_grace=grace)
    return dataclasses.replace(scenario, thresholds=settings)


def with_tls_flags(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with --tls and --insecure applied; ValueError naming the flag."""
    tls = scenario.tls
    if args.tls is not None:
        tls = dataclasses.replace(tls, mode=args.tls)
    if args.insecure:
        if not tls.enabled:
            raise ValueError("--insecure: the scenario uses no TLS (set tls.mode or --tls)")
        tls = dataclasses.replace(tls, verify=False)
    try:
        return dataclasses.replace(scenario, tls=tls)
    except ValueError as err:
        raise ValueError(f"--tls: {err}") from None


__all__ = [
    "check_limits",
    "default_workers",
    "note",
    "start_run",
    "usage_error",
    "with_threshold_flags",
    "with_tls_flags",
]
