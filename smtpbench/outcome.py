"""The end of a run, the same whatever showed it: the results folder (with thresholds
and session records), the exit code, and what is printed after it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from smtpbench import exitcodes
from smtpbench.files import OutputError
from smtpbench.metrics.hosts import Hosts, hosts_table, write_hosts
from smtpbench.metrics.results import new_results_folder, write_results
from smtpbench.metrics.sessions import SESSIONS_FILE
from smtpbench.metrics.snapshot import RunState, Snapshot
from smtpbench.report.output import print_whole
from smtpbench.report.reachability import every_session_failed, unreachable
from smtpbench.report.summary import summary
from smtpbench.report.thresholds import (
    ThresholdResult,
    all_passed,
    evaluate,
    thresholds_table,
    write_threshold_results,
)
from smtpbench.scenario import Scenario, scenario_to_toml
from smtpbench.transit.matching import TransitFigures
from smtpbench.transit.report import transit_table


@dataclass(frozen=True, slots=True)
class RunOutcome:
    snapshot: Snapshot
    folder: Path
    exit_code: int
    thresholds: tuple[ThresholdResult, ...] = ()
    aborted_by: ThresholdResult | None = None  # the threshold that stopped the run early
    unwritten: str | None = None  # what could not be written, and why (a full disk)
    verdict: str | None = None  # why the run failed when no threshold says so
    transit: TransitFigures | None = None  # run --through: transit through the server
    hosts: Hosts | None = None  # run --cluster: each engine's host and figures


def run_started(snapshot: Snapshot) -> datetime:
    """When the run started: results folders are named by it, not by when they were written."""
    try:
        return datetime.fromisoformat(snapshot.info.started_at)
    except ValueError:
        return datetime.now()


def finish_run(
    results_base: Path,
    scenario: Scenario,
    final: Snapshot,
    *,
    aborted_by: ThresholdResult | None = None,
    sessions_log: Path | None = None,
    keep_going: bool = False,
) -> RunOutcome:
    """Writes the results folder of a finished run and decides the exit code.

    ``scenario`` is the resolved one (with the seed used), so that its
    ``scenario.toml`` runs the same load again. A run that never connected ends with
    "target unusable" unless ``keep_going``; one where every session failed never
    exits 0.
    """
    results = tuple(evaluate(scenario.thresholds.checks, final))
    folder = results_base
    unwritten = None
    try:
        folder = new_results_folder(results_base, run_started(final), scenario.name)
        write_results(folder, final, scenario_to_toml(scenario))
        if sessions_log is not None and sessions_log.exists():
            sessions_log.replace(folder / SESSIONS_FILE)
        if results:
            write_threshold_results(folder, results, aborted_by)
    except OutputError as err:
        unwritten = str(err)
    except OSError as err:
        unwritten = f"{err.filename or folder}: could not be written: {err.strerror or err}"
    verdict = None
    if unwritten is not None:
        code = exitcodes.RESULTS_NOT_WRITTEN
    elif not keep_going and (reason := unreachable(final, least=1)) is not None:
        code = exitcodes.TARGET_UNUSABLE
        verdict = f"{reason}: no session ever connected"
    elif aborted_by is not None:
        code = exitcodes.ABORTED_BY_THRESHOLD
    elif final.state is RunState.INTERRUPTED:
        code = exitcodes.INTERRUPTED
    elif not all_passed(results):
        code = exitcodes.THRESHOLDS_FAILED
    elif every_session_failed(final):
        code = exitcodes.THRESHOLDS_FAILED
        verdict = f"every session failed ({final.server_failed:,} of {final.server_completed:,})"
    else:
        code = exitcodes.OK
    return RunOutcome(final, folder, code, results, aborted_by, unwritten, verdict)


def with_hosts(outcome: RunOutcome, hosts: Hosts) -> RunOutcome:
    """The outcome with a cluster run's breakdown per host, written beside its results."""
    unwritten = outcome.unwritten
    if unwritten is None:
        try:
            write_hosts(outcome.folder, hosts)
        except OutputError as err:
            unwritten = str(err)
    code = exitcodes.RESULTS_NOT_WRITTEN if unwritten is not None else outcome.exit_code
    return dataclasses.replace(outcome, hosts=hosts, unwritten=unwritten, exit_code=code)


def print_outcome(console: Console, outcome: RunOutcome) -> None:
    print_whole(console, summary(outcome.snapshot))
    if outcome.hosts is not None:
        print_whole(console, hosts_table(outcome.hosts))
        for warning in outcome.hosts.warnings:
            console.print(f"[yellow]{escape(warning)}[/]", highlight=False)
    if outcome.thresholds:
        print_whole(console, thresholds_table(outcome.thresholds))
    if outcome.transit is not None:
        print_whole(console, transit_table(outcome.transit))
    if outcome.aborted_by is not None:
        console.print(
            f"[bold red]stopped early: {outcome.aborted_by.threshold} failed (measured "
            f"{outcome.aborted_by.measured_text} when it stopped the run)[/]",
            highlight=False,
        )
    if outcome.verdict is not None:
        console.print(f"[bold red]{escape(outcome.verdict)}[/]", highlight=False)
    if outcome.unwritten is not None:
        console.print(
            f"\n[bold red]results not written whole: {outcome.unwritten}[/]; "
            "the summary above is the run's",
            highlight=False,
        )
        return
    console.print(f"\nresults written to [bold]{outcome.folder}[/]", highlight=False)
